"""Generated YAML documents through `mto check` (issue 27): each is accepted (and then RLlib's own
validation passed too, which `mto check` runs) or refused with exit 2 naming a field it changed or
the file; never a traceback, never a file written.

The documents start from configs/smoke.yaml and change a few keys to generated values (non-finite
and extreme numbers, wrong types, empty and repeated lists), then sometimes write a key twice or
save the text in another encoding.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main

REPO = Path(__file__).resolve().parent.parent
SMOKE = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())

# Keys a user edits, as dotted paths (values generated below); a few free-form mappings too.
PATHS = [
    "seed", "name", "task.tasks", "task.horizon", "task.max_depth", "task.action_mask", "curriculum.kind",
    "curriculum.params.uniform_mix", "curriculum.params.temperature", "curriculum.refresh_every_seconds",
    "curriculum.report_every_episodes", "bonus.size", "bonus.threshold", "rl.lr", "rl.gamma", "rl.lambda",
    "rl.train_batch_size", "rl.minibatch_size", "rl.num_env_runners", "rl.num_envs_per_env_runner",
    "rl.rollout_fragment_length", "rl.entropy_coeff", "model.hidden", "model.architecture", "training.iterations",
    "training.mastery_threshold", "sac.tau", "tune.search_space.rl.lr", "curriculum.params.untried_weight",
    "curriculum.params.success_source", "bonus.mode", "model.combiner", "model.activation", "groups",
]
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300]),
    st.integers(-3, 5000), st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 2**80]),
)
values = st.one_of(
    numbers, st.none(), st.booleans(), st.sampled_from(["", "log", "inf", "nan", "1e3", "off", "PPO", "relu"]),
    st.lists(st.sampled_from(["log", "planks", "stick", "dirt"]), max_size=4),  # empty and repeated task lists
    st.lists(st.integers(-2, 64), max_size=3),  # layer sizes: empty, 0, negative, repeated
    st.lists(numbers, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["uniform", "quniform", "x"]), st.lists(numbers, max_size=3), max_size=1),
)


def _set(doc: dict, path: str, value) -> None:
    if path.startswith("tune.search_space."):  # a search-space key holds dots of its own
        doc.setdefault("tune", {}).setdefault("search_space", {})[path.split(".", 2)[2]] = value
        return
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value


@st.composite
def documents(draw) -> tuple[bytes, list[str], str]:
    """(file bytes, the paths changed, how the text was damaged: '', 'duplicate' or 'encoding')."""
    doc = yaml.safe_load(yaml.safe_dump(SMOKE))
    changed = draw(st.lists(st.sampled_from(PATHS), min_size=0, max_size=3, unique=True))
    for path in changed:
        _set(doc, path, draw(values))
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    damage = draw(st.sampled_from(["", "", "duplicate", "encoding"]))
    if damage == "duplicate":  # a section or a key written twice: YAML would keep the last one only
        section = draw(st.sampled_from(["rl", "model", "task", "training"]))
        text += draw(st.sampled_from([f"{section}:\n  lr: .inf\n", f"{section}: {{}}\n", "name: again\n"]))
    data = text.encode("utf-8")
    if damage == "encoding":
        data = draw(st.sampled_from([
            text.replace("name: smoke", "name: sm\u00f6ke").encode("latin-1", "replace"),
            text.encode("utf-16"), data[:10] + b"\xff\xfe" + data[10:], b"\x80" + data,
        ]))
    return data, changed, damage


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents())
def test_every_generated_document_is_accepted_or_refused_naming_a_field_or_the_file(tmp_path_factory, document):
    data, changed, damage = document
    folder = tmp_path_factory.mktemp("doc")
    path = folder / "generated.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)  # a relative run_dir or store would land here
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["check", str(path)])  # any exception fails the test with its traceback
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in folder.iterdir()) == ["generated.yaml"], "mto check wrote a file"
    message = err.getvalue()
    event(f"exit {code}")  # --hypothesis-show-statistics: how many were accepted
    if code == 0:
        assert f"{path}: ok" in out.getvalue() and damage != "duplicate"
        return
    assert code == 2, message
    assert "Traceback" not in message and str(path) in message
    if damage == "duplicate":
        assert "duplicate key" in message, message
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        assert f"{path}: not UTF-8 text" in message, message
        return
    named = [p for p in changed if any(f"{p.split('.')[0]}{sep}" in message for sep in ".:[")]
    assert named, f"refused {changed} without naming one of them: {message}"
