"""The documentation site builds with `mkdocs build --strict` (a broken link, a missing page or a bad
snippet fails it), and its generated references say what the code says: every config key of the
schema, every `mto` subcommand and flag of the parser, the Python API's functions. The README stays
the short front door; the figures the pages show are the ones `benchmarks/figures.py` draws."""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.fail("mkdocs is not installed: `pip install -e '.[docs]'` (the dev extra includes it)")
    out = tmp_path_factory.mktemp("site")
    # From the repository root: the pages' snippets (`--8<--`) name files relative to it.
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


def page(site: Path, path: str) -> str:
    """A built page's visible text (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / path / "index.html").read_text()))


def test_site_builds_strict_with_every_page_of_the_nav(site):
    import yaml

    def pages(nav):
        for item in nav:
            for value in item.values() if isinstance(item, dict) else [item]:
                yield from pages(value) if isinstance(value, list) else [value]

    nav = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)["nav"]
    listed = sorted(pages(nav))
    on_disk = sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))
    assert listed == on_disk, "every page in the nav, and every nav entry a page"
    for name in listed:
        stem = name.removesuffix(".md")
        built = site / (stem.removesuffix("index") if stem.endswith("index") else stem + "/") / "index.html"
        assert built.is_file(), name


def test_config_reference_is_generated_from_the_schema(site):
    from orchestrator.config_docs import config_reference_markdown

    text = page(site, "reference/config")
    keys = re.findall(r"^\| `([^`]+)` \|", config_reference_markdown(), flags=re.M)
    assert len(keys) > 100 and "curriculum.params" in keys and "offline.percentile" in keys
    missing = [k for k in keys if k not in text]
    assert not missing, f"config keys missing from the built reference: {missing}"
    assert "mto:config-reference" not in text  # the marker was replaced


def test_cli_reference_is_generated_from_the_parser(site):
    import argparse

    from orchestrator.cli import build_parser

    text = page(site, "reference/cli")
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert f"mto {name}" in text, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in text, f"mto {name} {flag}"
    assert "mto:cli-reference" not in text


def test_python_api_reference_comes_from_the_docstrings(site):
    import orchestrator

    text = page(site, "reference/api")
    for name in ("train", "evaluate", "report"):
        assert f"orchestrator.{name}" in text
        first_line = getattr(orchestrator, name).__doc__.strip().splitlines()[0]
        assert first_line.split(",")[0] in text, name
    assert "ConfigError" in text and "TrainingSummary" in text


def test_kubernetes_page_includes_the_k8s_guide(site):
    text = page(site, "kubernetes")
    assert "helm install kuberay-operator" in text and "port-forward svc/mlflow" in text


def test_readme_is_the_short_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).is_file(), f"README links to missing {target}"


def test_every_figure_is_drawn_by_the_script_and_shown_on_a_page():
    from benchmarks.figures import FIGURES

    figures = REPO / "docs/assets/figures"
    drawn = sorted(p.stem for p in figures.glob("*.png"))
    assert drawn == sorted(FIGURES), "run: python -m benchmarks.figures"
    pages = "".join(p.read_text() for p in (REPO / "docs").rglob("*.md"))
    for name in drawn:
        assert f"assets/figures/{name}.png" in pages, f"{name}.png is on no page"


def test_figures_script_draws_every_figure_from_the_json(tmp_path):
    """The script draws each figure from the JSON files alone (here copied elsewhere): no hidden inputs."""
    import shutil

    from benchmarks.figures import main

    results = tmp_path / "results"
    shutil.copytree(REPO / "benchmarks/results", results, ignore=shutil.ignore_patterns("*.png", "*_parts"))
    written = main(["--results", str(results), "--out", str(tmp_path / "out"), "--only", "curriculum_sim", "fault_matrix"])
    assert [p.name for p in written] == ["curriculum_sim.png", "fault_matrix.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
