"""Every shipped config and every documented command, run the way a user runs them: `mto` in a fresh
process, from a directory laid out like the repository root, with the documentation's relative paths.

The documentation is the README and every page of the site (`docs/**/*.md`, with the files the pages
include through `--8<--` snippets, such as k8s/README.md). The default suite checks that each command
line of each page's ```bash blocks has a rule here: run, or the reason it is not (so a new command
cannot go untested); `-m slow` runs every shipped config with small `--set` budgets and each page's
runnable commands in order."""

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
DOC_PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]

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

# Documented command lines -> how the tests treat them. Every line of every ```bash block must match one.
K8S_CLUSTER = "needs a Kubernetes cluster (none here): tests/test_k8s.py renders every overlay offline and validates it"
DOCKER = "needs a Docker daemon (none here): tests/test_k8s.py checks the Dockerfile's copies and the image tags"
README_RULES: list[tuple[str, str]] = [
    (r"^python3\.11 -m venv \.venv$", "install: .ci/run does it on a clean clone"),
    (r"^\. \.venv/bin/activate$", "install: .ci/run does it on a clean clone"),
    (r"^pip install -e '\.\[[a-z,]+\]'$", "install: .ci/run does it on a clean clone"),
    (r"^python -m pytest -q$", "this suite"),
    (r"^ray job submit --address http://HEAD:8265 ", "needs a cluster: tests/test_ray_job_submit.py submits to one on loopback"),
    (r"^mlflow ui --backend-store-uri sqlite:///runs/mlflow\.db$", "run"),
    (r"^mto (train|collect|report|eval|check) ", "run"),
    (r"^python -m tasks\.supervised ", "run"),
    (r"^mkdocs serve$", "a web server: tests/test_docs.py builds the same site with `mkdocs build --strict`"),
    (r"^python -m benchmarks\.figures$", "tests/test_docs.py draws figures with it from copies of the JSON"),
    # The Kubernetes guide (k8s/README.md, included by docs/kubernetes.md).
    (r"^(docker|kind|minikube) ", DOCKER),
    (r"^kubectl kustomize k8s/overlays/", "tests/test_k8s.py renders every overlay with it (when kubectl is installed)"),
    (r"^(kubectl|helm) ", K8S_CLUSTER),
    (r"^(REGISTRY|CLUSTER)=", "sets a shell variable for the cluster commands that follow it"),
    (r"^export RAY_AUTH_(MODE|TOKEN)=", "sets the Ray token for the cluster commands that follow it"),
    (r"^export MLFLOW_TRACKING_(URI|USERNAME|PASSWORD)=",
     "points mto at the cluster's MLflow through its port-forward, with the login from its Secret"),
    (r"^ray job (submit|list|logs|stop) --address http://localhost:8265( |$)",
     "needs the cluster's port-forward: tests/test_ray_job_submit.py submits to a local head on loopback"),
    (r"^\.venv/bin/pytest tests/test_k8s\.py -q( -m slow)?$", "this suite (tests/test_k8s.py; its slow part under -m slow)"),
]


def page_text(path: Path) -> str:
    """A page as mkdocs renders it: `--8<-- "file"` snippet lines replaced by the file (a `:start:end`
    line range or a `:section` between `--8<-- [start:section]` / `[end:section]` markers)."""

    def include(match: re.Match) -> str:
        name, _, selector = match.group(1).partition(":")
        text = (REPO / name).read_text()
        if not selector:
            return text
        if re.fullmatch(r"\d+:\d+", selector):
            start, end = (int(n) for n in selector.split(":"))
            return "\n".join(text.splitlines()[start - 1:end])
        inner = re.search(rf"--8<-- \[start:{re.escape(selector)}\][^\n]*\n(.*?)\n[^\n]*--8<-- \[end:{re.escape(selector)}\]",
                          text, flags=re.S)
        assert inner, f"{path}: snippet section {selector!r} not found in {name}"
        return inner.group(1)

    return re.sub(r'^--8<-- "([^"]+)"$', include, path.read_text(), flags=re.M)


def readme_command_lines(text: str) -> list[str]:
    """Each command of a page's ```bash blocks (comments dropped, `\\` continuations joined, `;` and
    `&&` chains split)."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\s*\\\n\s*", " ", block)
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


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_documented_command_has_a_rule(page):
    commands = readme_command_lines(page_text(page))
    missing = [c for c in commands if rule_for(c) is None]
    assert not missing, f"{page.relative_to(REPO)}: commands no test runs or explains: {missing}"


def test_the_pages_hold_the_commands_users_look_for():
    """The parser reads the site: the quick start, the offline section and the included k8s guide."""
    assert len(DOC_PAGES) >= 15
    by_page = {p.relative_to(REPO).as_posix(): readme_command_lines(page_text(p)) for p in DOC_PAGES}
    assert "python -m pytest -q" in by_page["README.md"] and "mto train configs/quickstart.yaml" in by_page["README.md"]
    assert "mto collect configs/offline_cds.yaml" in by_page["docs/concepts/offline.md"]
    assert "mto train configs/offline_all.yaml" in by_page["docs/concepts/offline.md"]
    assert any(c.startswith("helm install kuberay-operator kuberay/kuberay-operator --version") and
               "--create-namespace" in c for c in by_page["docs/kubernetes.md"])  # a `\\` continuation, joined
    assert sum(len(c) for c in by_page.values()) > 0 and len([c for cs in by_page.values() for c in cs]) >= 60


def test_the_readme_install_and_test_lines_are_what_ci_runs():
    """`.ci/run` runs the README's quick-start install line and test command, character for character."""
    ci = (REPO / ".ci/run").read_text()
    commands = readme_command_lines(README.read_text())
    install = next(c for c in commands if c.startswith("pip install -e "))
    assert f"\n{install}\n" in ci and "\npython -m pytest -q\n" in ci
    assert "python -m pytest -q" in commands


def test_readme_command_parser_splits_chains_and_drops_comments():
    text = "x\n```bash\n# a comment\na --b 'c d' && e   # note\nf; g\nh \\\n  --i j\n```\n```yaml\nnot: this\n```\n"
    assert readme_command_lines(text) == ["a --b 'c d'", "e", "f", "g", "h --i j"]


def test_snippet_includes_are_expanded_as_mkdocs_does(tmp_path):
    assert "helm install kuberay-operator" in page_text(REPO / "docs/kubernetes.md")
    assert "| **Curricula** |" in page_text(REPO / "docs/index.md")
    assert "## Quick start" not in page_text(REPO / "docs/index.md")  # the features section only


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
    if re.search(r"<run[^>]*>", command) and not last_run:  # a page that reads a run it did not train
        done = run_mto(["train", "configs/smoke.yaml", *small_budget(["mto", "train", "configs/smoke.yaml"])], root,
                       timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        last_run.append(sorted((root / "runs").glob("smoke-*-*"), key=lambda p: p.stat().st_mtime)[-1].name)
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


RUNNABLE_PAGES = [p for p in DOC_PAGES if any(rule_for(c) == "run" for c in readme_command_lines(page_text(p)))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_commands_run_from_a_checkout(tmp_path, page):
    """A page's command blocks in order, from a checkout: each `mto train|collect CONFIG` gets the
    shipped-config table's budget overrides (seconds, not hours), `<run ...>` is the last run trained
    (the smoke config, trained first, on a page that trains none before it); MNIST is not on this
    machine, so the dataset command writes the synthetic digits."""
    root = user_checkout(tmp_path)
    shutil.copy(README, root / "README.md")
    last_run: list[str] = []
    for command in readme_command_lines(page_text(page)):
        if rule_for(command) != "run":
            continue
        done = _readme_as_run(command, root, last_run)
        assert done is None or done.returncode == 0, f"{command}:\n{done.stderr[-3000:]}"
