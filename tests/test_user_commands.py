"""Every shipped config and every README command, run the way a user runs them: `mto` in a fresh
process, from a directory laid out like the repository root, with the README's relative paths.

The default suite checks that each README command line has a rule here (so a new command cannot go
untested) and runs the quick ones; `-m slow` runs every shipped config with small `--set` budgets and
the README's command blocks as written."""

from __future__ import annotations

import os
import re
import shlex
import signal
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_public_bug_replays import run_mto, user_checkout

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

SMALL_PPO = ["--set", "training.iterations=1", "--set", "rl.num_envs_per_env_runner=32",
             "--set", "rl.train_batch_size=1024", "--set", "rl.minibatch_size=512",
             "--set", "training.eval_episodes_per_task=2", "--no-live"]
SMALL_OFFLINE_TRAIN = ["--set", "offline.gradient_steps=40", "--set", "offline.eval_every=40",
                       "--set", "offline.eval_episodes_per_task=2", "--set", "offline.log_every=20", "--no-live"]
SMALL_COLLECT = ["--set", "offline.behaviour=[{policy: scripted, skill: 0.9, tasks: [wooden_pickaxe, cobblestone], "
                 "transitions: 1500}, {policy: random, tasks: [log, planks, stick, crafting_table], transitions: 1500}]"]
SMALL_CONFLICT_COLLECT = ["--set", "offline.behaviour=[{policy: scripted, skill: 0.9, tasks: [dirt, sand, red_flower], "
                          "transitions: 300}, {policy: scripted, skill: 0.9, tasks: [log], transitions: 900}]"]
SMALL_SAC = ["--set", "training.iterations=1", "--set", "task.horizon=50", "--set", "sac.env_steps_per_iteration=500",
             "--set", "sac.learning_starts=200", "--set", "sac.train_batch_size=64", "--set", "model.hidden=[32,32]",
             "--set", "training.eval_episodes_per_task=1", "--no-live"]

# Each shipped config -> the commands a user runs with it, shrunk to seconds (None: why it is only checked).
SHIPPED_CONFIG_COMMANDS: dict[str, list[list[str]] | str] = {
    "smoke.yaml": [["train", "configs/smoke.yaml", "--set", "training.iterations=1", "--no-live"]],
    "quickstart.yaml": [["train", "configs/quickstart.yaml", *SMALL_PPO]],
    "simon_says_lp.yaml": [["train", "configs/simon_says_lp.yaml", *SMALL_PPO]],
    "simon_says_uniform.yaml": [["train", "configs/simon_says_uniform.yaml", *SMALL_PPO]],
    "simon_says_gpu.yaml": "puts the learner on a GPU (rl.num_gpus_per_learner: 1): `mto check` only, in the default suite",
    "simon_says_tag.yaml": [["tune-groups", "configs/simon_says_tag.yaml", "--set", "training.iterations=1",
                             "--set", "rl.num_envs_per_env_runner=16", "--set", "rl.train_batch_size=256",
                             "--set", "rl.minibatch_size=128", "--set", "tune.top_k=1",
                             "--set", "training.eval_episodes_per_task=2"]],
    "simon_says_tune.yaml": [["tune", "configs/simon_says_tune.yaml", "--set", "tune.num_samples=1",
                              "--set", "tune.budget_iterations=1", "--set", "tune.grace_period=1",
                              "--set", "tune.search_space={rl.lr: {loguniform: [0.0001, 0.003]}}",
                              "--set", "rl.num_envs_per_env_runner=32", "--set", "rl.train_batch_size=1024",
                              "--set", "rl.minibatch_size=512", "--set", "training.eval_episodes_per_task=2"]],
    "grouped_regression_tag.yaml": [["tune-groups", "configs/grouped_regression_tag.yaml", "--set", "supervised.epochs=2",
                                     "--set", "tune.budget_epochs=2", "--set", "tune.top_k=1"]],
    "multi_digit_pcgrad.yaml": [["train", "configs/multi_digit_pcgrad.yaml", "--set", "supervised.epochs=1", "--no-live"]],
    "pareto_toy.yaml": [["pareto", "configs/pareto_toy.yaml", "--set", "tune.num_preferences=2",
                         "--set", "tune.pareto_steps=20"]],
    "mt10_sac.yaml": [["train", "configs/mt10_sac.yaml", *SMALL_SAC]],
    "mt10_sac_pcgrad.yaml": [["train", "configs/mt10_sac_pcgrad.yaml", *SMALL_SAC]],
    "mt10_sac_soft_modular.yaml": [["train", "configs/mt10_sac_soft_modular.yaml", *SMALL_SAC]],
    "mt10_sac_care.yaml": [["train", "configs/mt10_sac_care.yaml", *SMALL_SAC]],
    "offline_cds.yaml": [["collect", "configs/offline_cds.yaml", *SMALL_COLLECT],
                         ["train", "configs/offline_cds.yaml", *SMALL_OFFLINE_TRAIN]],
    "offline_all.yaml": [["collect", "configs/offline_all.yaml", *SMALL_COLLECT, "--overwrite"],
                         ["train", "configs/offline_all.yaml", *SMALL_OFFLINE_TRAIN]],
    "offline_none.yaml": [["collect", "configs/offline_none.yaml", *SMALL_COLLECT, "--overwrite"],
                          ["train", "configs/offline_none.yaml", *SMALL_OFFLINE_TRAIN]],
    "offline_conflict_cds.yaml": [["collect", "configs/offline_conflict_cds.yaml", *SMALL_CONFLICT_COLLECT],
                                  ["train", "configs/offline_conflict_cds.yaml", *SMALL_OFFLINE_TRAIN]],
    "offline_conflict_all.yaml": [["collect", "configs/offline_conflict_all.yaml", *SMALL_CONFLICT_COLLECT, "--overwrite"],
                                  ["train", "configs/offline_conflict_all.yaml", *SMALL_OFFLINE_TRAIN]],
    "offline_conflict_none.yaml": [["collect", "configs/offline_conflict_none.yaml", *SMALL_CONFLICT_COLLECT, "--overwrite"],
                                   ["train", "configs/offline_conflict_none.yaml", *SMALL_OFFLINE_TRAIN]],
}

# README command lines -> how the tests treat them. Every line of every ```bash block must match one.
README_RULES: list[tuple[str, str]] = [
    (r"^python3\.11 -m venv \.venv$", "install: .ci/run does it on a clean clone"),
    (r"^\. \.venv/bin/activate$", "install: .ci/run does it on a clean clone"),
    (r"^pip install -e '\.\[[a-z,]+\]'$", "install: .ci/run does it on a clean clone"),
    (r"^python -m pytest -q$", "this suite"),
    (r"^ray job submit --address http://HEAD:8265 ", "needs a cluster: tests/test_ray_job_submit.py submits to one on loopback"),
    (r"^mlflow ui --backend-store-uri sqlite:///runs/mlflow\.db$", "run"),
    (r"^mto (train|collect|report|eval) ", "run"),
    (r"^python -m tasks\.supervised ", "run"),
]


def readme_command_lines(text: str) -> list[str]:
    """Each command of the README's ```bash blocks (comments dropped, `;` and `&&` chains split)."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            commands.extend(part.strip() for part in re.split(r"\s*(?:;|&&)\s*", line) if part.strip())
    return commands


def rule_for(command: str) -> str | None:
    return next((what for pattern, what in README_RULES if re.search(pattern, command)), None)


def test_every_shipped_config_has_a_user_run():
    shipped = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert sorted(SHIPPED_CONFIG_COMMANDS) == shipped, "add the new config's commands to SHIPPED_CONFIG_COMMANDS"


def test_every_readme_command_has_a_rule():
    commands = readme_command_lines(README.read_text())
    assert len(commands) >= 10
    missing = [c for c in commands if rule_for(c) is None]
    assert not missing, f"README commands no test runs or explains: {missing}"
    assert "mto collect configs/offline_cds.yaml" in commands
    assert "mto train configs/offline_all.yaml" in commands


def test_readme_command_parser_splits_chains_and_drops_comments():
    text = "x\n```bash\n# a comment\na --b 'c d' && e   # note\nf; g\n```\n```yaml\nnot: this\n```\n"
    assert readme_command_lines(text) == ["a --b 'c d'", "e", "f", "g"]


# --------------------------------------------------------------------------- slow: run them
@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(SHIPPED_CONFIG_COMMANDS))
def test_shipped_config_runs_from_the_repository_root(tmp_path, config):
    commands = SHIPPED_CONFIG_COMMANDS[config]
    if isinstance(commands, str):
        pytest.skip(commands)
    root = user_checkout(tmp_path)
    for args in commands:
        done = run_mto(args, root, timeout=900)
        assert done.returncode == 0, f"mto {' '.join(args)}:\n{done.stderr[-3000:]}"
    assert (root / "runs").is_dir()  # relative run_dir: under the directory the user ran from


def small_budget(argv: list[str]) -> list[str]:
    """The `--set` budget overrides the shipped-config table gives the same `mto train|collect CONFIG`."""
    if len(argv) < 3 or argv[1] not in ("train", "collect") or not argv[2].startswith("configs/"):
        return []
    commands = SHIPPED_CONFIG_COMMANDS.get(Path(argv[2]).name)
    if isinstance(commands, str) or not commands:
        return []
    same = [c for c in commands if c[:2] == argv[1:3]]
    extra, given = [], {a.split("=", 1)[0] for a in argv}
    rest = iter(same[0][2:] if same else [])
    for arg in rest:
        if arg == "--set":
            value = next(rest)
            if value.split("=", 1)[0] not in given:
                extra += [arg, value]
        elif arg not in given:
            extra.append(arg)
    return extra


def _readme_as_run(command: str, root: Path, last_run: list[str]) -> subprocess.CompletedProcess | None:
    command = re.sub(r"<run[^>]*>", lambda _: shlex.quote(last_run[-1]), command)
    argv = shlex.split(command)
    if argv[:2] == ["mlflow", "ui"]:
        port = 15000 + int(time.time()) % 1000
        server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), *argv[1:], "--port", str(port)],
                                  cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # its own group: `mlflow ui` runs a server child
        try:
            deadline = time.monotonic() + 180  # its server workers import all of MLflow: slow on a busy machine
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                        assert reply.status == 200
                        return None
                except OSError:
                    time.sleep(1)
            raise AssertionError("mlflow ui did not answer within 3 minutes")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
    if argv[0] == "python":  # python -m tasks.supervised ...: our module, with its data from the machine
        argv = [sys.executable, *argv[1:]]
        argv = [a for a in argv if not a.startswith("mnist_path=")]
        if "--param" in argv and argv[-1] == "--param":
            argv = argv[:-1]
        return subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=900)
    assert argv[0] == "mto"
    done = run_mto([*argv[1:], *small_budget(argv)], root, timeout=1800)
    if argv[1] == "train":
        names = sorted((root / "runs").glob("*-*-*"), key=lambda p: p.stat().st_mtime)
        last_run.append(names[-1].name)
    return done


@pytest.mark.slow
def test_readme_commands_run_from_a_checkout(tmp_path):
    """The README's command blocks in order, from a checkout: each `mto train|collect CONFIG` gets the
    shipped-config table's budget overrides (seconds, not hours), `<run ...>` is the last run trained;
    MNIST is not on this machine, so the dataset command writes the synthetic digits."""
    root = user_checkout(tmp_path)
    shutil.copy(README, root / "README.md")
    last_run: list[str] = []
    for command in readme_command_lines(README.read_text()):
        if rule_for(command) != "run":
            continue
        done = _readme_as_run(command, root, last_run)
        assert done is None or done.returncode == 0, f"{command}:\n{done.stderr[-3000:]}"
