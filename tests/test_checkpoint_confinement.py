"""Checkpoints are loaded only from inside the run folder a run owns, under the run directory the user
gave (issue 28). A checkpoint is pickled code: an MLflow tag or a `trainer_state.json` that points
elsewhere is refused with exit 2 before anything is unpickled; a folder given on the command line is
the user's choice and is loaded.

Every pickle of the planted checkpoints writes a marker file when unpickled, so "nothing was
unpickled" is checked, not assumed.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_fixtures import CHECKPOINT_FIXTURE, FIXTURE_CHECKPOINT, register_fixture_run
from orchestrator.cli import main
from orchestrator.rl.evaluate import MODULE_SUBDIR
from orchestrator.runs.run_folder import STATE_FILE
from orchestrator.runs.tracking import RUN_PATH_TAG, default_tracking_uri

REPO = Path(__file__).resolve().parents[1]


class _Planted:
    """Unpickling this writes ``marker``: the stand-in for an attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def plant_run_folder(folder: Path, marker: Path) -> Path:
    """A copy of a real run folder whose every pickle runs code; returns its checkpoint."""
    shutil.copytree(CHECKPOINT_FIXTURE, folder)
    checkpoint = folder / "checkpoints" / FIXTURE_CHECKPOINT
    payload = pickle.dumps(_Planted(marker))
    pickles = list(folder.rglob("*.pkl"))
    assert checkpoint / "curriculum.pkl" in pickles and checkpoint / MODULE_SUBDIR / "class_and_ctor_args.pkl" in pickles
    for path in pickles:
        path.write_bytes(payload)
    (checkpoint / "manifest.json").unlink(missing_ok=True)  # the attacker would rewrite it; here: none to check
    for state_file in (folder / STATE_FILE, checkpoint / STATE_FILE):
        state = json.loads(state_file.read_text())
        state["checkpoint"] = str(checkpoint)
        state_file.write_text(json.dumps(state))
    return checkpoint


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """A genuine run (the fixture's run folder) under run_dir in a fresh SQLite MLflow store, and a
    planted run folder outside run_dir (as in /tmp on a shared host)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir, marker = tmp_path / "runs", tmp_path / "MARKER"
    client, run_id, _ = register_fixture_run(run_dir, "genuine")
    planted = plant_run_folder(tmp_path / "elsewhere" / "planted", marker)
    return {"run_dir": run_dir, "run_path": run_dir / "genuine", "client": client, "run_id": run_id,
            "planted": planted, "marker": marker}


COMMANDS = {
    "eval": lambda run, run_dir: ["eval", run, "--run-dir", str(run_dir), "--episodes", "1"],
    "resume": lambda run, run_dir: ["train", "--resume", run, "--run-dir", str(run_dir), "--no-live"],
}


def test_the_planted_pickles_run_code_when_unpickled(stores):
    """The marker works: without the checks below, loading the planted checkpoint runs its code."""
    with open(stores["planted"] / "curriculum.pkl", "rb") as f:
        pickle.load(f)
    assert stores["marker"].read_text() == "unpickled"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("by", ["id", "name"])
def test_a_tag_pointing_outside_run_dir_is_refused(stores, capsys, command, by):
    """Only the `mto.run_path` tag is changed (anyone who can write to the tracking store can)."""
    planted_folder = stores["planted"].parent.parent
    stores["client"].set_tag(stores["run_id"], RUN_PATH_TAG, str(planted_folder))
    run = stores["run_id"] if by == "id" else "genuine"

    assert main(COMMANDS[command](run, stores["run_dir"])) == 2

    err = capsys.readouterr().err
    assert f"refusing to load {planted_folder}" in err and RUN_PATH_TAG in err and "--run-dir" in err, err
    assert not stores["marker"].exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_state_file_naming_a_checkpoint_elsewhere_is_refused(stores, capsys, command):
    """The genuine run folder, its state file changed to name the planted checkpoint."""
    state_file = stores["run_path"] / STATE_FILE
    state = json.loads(state_file.read_text())
    state["checkpoint"] = str(stores["planted"])
    state_file.write_text(json.dumps(state))

    assert main(COMMANDS[command](stores["run_id"], stores["run_dir"])) == 2

    err = capsys.readouterr().err
    assert f"refusing to load {stores['planted']}" in err and STATE_FILE in err, err
    assert not stores["marker"].exists()
    assert stores["planted"].is_dir()  # not renamed `.bad` either: nothing outside the run folder is touched


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_symlink_out_of_the_run_folder_is_refused(stores, capsys, command):
    """A checkpoint folder inside the run folder that is a link to the planted one."""
    link = stores["run_path"] / "checkpoints" / "iter_000009"
    link.symlink_to(stores["planted"], target_is_directory=True)
    state_file = stores["run_path"] / STATE_FILE
    state = json.loads(state_file.read_text())
    state["checkpoint"] = str(link)
    state_file.write_text(json.dumps(state))

    assert main(COMMANDS[command](stores["run_id"], stores["run_dir"])) == 2

    assert f"refusing to load {link}" in capsys.readouterr().err
    assert not stores["marker"].exists()


def test_a_run_dir_other_than_the_runs_is_refused(stores, capsys, tmp_path, monkeypatch):
    """The genuine run, looked up with a --run-dir that does not hold it (same store via MLFLOW_TRACKING_URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_tracking_uri(stores["run_dir"]))
    assert main(["eval", stores["run_id"], "--run-dir", str(tmp_path / "other")]) == 2
    assert f"refusing to load {stores['run_path']}" in capsys.readouterr().err


def test_a_checkpoint_folder_given_on_the_command_line_is_loaded(stores):
    """The user chose it: it is loaded, and loading a checkpoint runs the code in it (docs/security.md)."""
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "eval", str(stores["planted"]), "--episodes", "1"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert stores["marker"].read_text() == "unpickled", proc.stderr[-2000:]
