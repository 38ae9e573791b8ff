"""Mutation score of the fast unit tests, per package, with mutmut 3 (issue 29).

For each target below, mutmut makes one-token changes to the product's code
(operators, constants, comparisons, arguments, return values) and runs the unit
tests that reach the changed function; a mutant whose tests still pass
*survived*. The score is the share of mutants the tests kill.  Each target runs
in its own scratch copy of the repository (mutmut writes a `mutants/` tree and
reads its settings from the copy's pyproject.toml), with only the test files
that cover it, so one target fits in minutes on a loaded 2-core machine.

Survivors that are equivalent (no input can tell them from the original) are
listed in EQUIVALENT with the reason, and left out of the adjusted score.

Not part of `.ci/run`: a full run takes tens of minutes on 2 cores.  Run it
niced, by hand, after changing a covered package:

    pip install -e '.[dev,mutation]'
    nice -n 19 python -m benchmarks.mutation [--target curricula] [--label after]

Writes benchmarks/results/mutation.json (one entry per target and label, merged
into what the file already holds) and prints a table.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "mutation.json"
PACKAGES = ("curricula", "policies", "tasks", "orchestrator")  # copied whole so that imports resolve

# target -> (files mutmut may mutate, the unit-test files that cover them)
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "curricula": (
        ["curricula/*.py"],
        [
            "tests/test_curricula.py",
            "tests/test_exploration_bonus.py",
            "tests/test_affinity.py",
            "tests/test_affinity_planted_groups.py",
            "tests/test_data_sharing.py",
            "tests/test_grouping.py",
            "tests/test_curricula_edges.py",
            "tests/test_curricula_contracts.py",
        ],
    ),
    # The sampling rule and the bonus, in full (the package above is large enough to be sampled).
    "curricula/sampling.py": (["curricula/sampling.py"], ["tests/test_curricula.py", "tests/test_exploration_bonus.py",
                                                          "tests/test_curricula_edges.py"]),
    "curricula/learning_progress.py": (["curricula/learning_progress.py"],
                                       ["tests/test_curricula.py", "tests/test_exploration_bonus.py",
                                        "tests/test_curricula_edges.py"]),
    "curricula/exploration_bonus.py": (["curricula/exploration_bonus.py"],
                                       ["tests/test_curricula.py", "tests/test_exploration_bonus.py",
                                        "tests/test_curricula_edges.py"]),
    "policies/combiners": (
        ["policies/combiners/*.py"],
        ["tests/test_combiners.py", "tests/test_numerics.py", "tests/test_pcgrad_algorithm1.py",
         "tests/test_combiner_known_answers.py"],
    ),
    "policies/architectures": (
        ["policies/architectures/*.py"],
        ["tests/test_policies.py", "tests/test_care.py", "tests/test_numerics.py"],
    ),
    # The Gram matrix and weighted sum under every combiner: each mutant there runs every combiner
    # test (minutes each on a loaded 2-core machine), so it is scored on a sample (--sample).
    "policies/combiners/base.py": (
        ["policies/combiners/base.py"],
        ["tests/test_combiners.py", "tests/test_numerics.py", "tests/test_pcgrad_algorithm1.py",
         "tests/test_combiner_known_answers.py"],
    ),
    "orchestrator/rl/curriculum_wrapper.py": (
        ["orchestrator/rl/curriculum_wrapper.py"],
        ["tests/test_curriculum_wrapper.py"],
    ),
}

# Files a target leaves to a target of their own.
EXCLUDED: dict[str, list[str]] = {"policies/combiners": ["policies/combiners/base.py"]}

# Survivors no test can kill, by mutmut's name, with the reason.  Checked against each
# run: a name listed here that did not survive is reported as "stale".
_LPP = "curricula.sampling.x_learning_progress_probabilities__mutmut_"
EQUIVALENT: dict[str, str] = {
    _LPP + "44": "`reserved >= 1.0`: at exactly 1 the division by `reserved` divides by 1",
    _LPP + "79": "`centred[:] = 1.0`: every pool task gets the same value, so the same sigmoid weight; "
                 "the weights are normalised",
    _LPP + "81": "`std = 2.0`: it divides an all-zero `centred`",
    _LPP + "85": "`out=None`: numpy returns a new array with the same values instead of writing in place",
    _LPP + "88": "multiply without `out=`: same values, a new array",
    _LPP + "113": "`uniform_mix >= 0.0`: mixing with 0 gives (1 - 0) p + 0 = p",
    "curricula.learning_progress.x_learning_progress_setting_error__mutmut_1":
        "the default success_source is only compared with 'evaluation': any other string is 'online'",
    "curricula.learning_progress.x_learning_progress_setting_error__mutmut_2":
        "the default success_source is only compared with 'evaluation': any other string is 'online'",
    **{f"curricula.learning_progress.xǁLearningProgressCurriculumǁ__init____mutmut_{n}":
       "the default success_source read for the warning is only compared with 'evaluation': any other value "
       "(None, another string) means online" for n in (72, 74, 77, 78)},
    "curricula.learning_progress.xǁLearningProgressCurriculumǁ__init____mutmut_85":
        "the warning's stacklevel: mutmut's trampoline adds a stack frame, so no test run under it sees which "
        "line the warning names (outside mutmut it names the caller's line: checked by hand)",
    "curricula.learning_progress.xǁLearningProgressCurriculumǁ__init____mutmut_86":
        "the warning's stacklevel: mutmut's trampoline adds a stack frame, so no test run under it sees which "
        "line the warning names (outside mutmut it names the caller's line: checked by hand)",
    "curricula.learning_progress.xǁLearningProgressCurriculumǁreserve_weights__mutmut_3":
        "`by_product_weight >= 0`: with weight 0 the branch writes 0 into zeros",
    "curricula.learning_progress.xǁLearningProgressCurriculumǁreserve_weights__mutmut_6":
        "`frontier_weight >= 0`: with weight 0 the branch takes max(w, 0) of non-negative weights",
}

_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
           37: "caught by type check", -11: "segfault", -9: "segfault", 2: "interrupted"}
_DEAD = ("killed", "timeout", "caught by type check", "segfault")


TESTS_FROM: str | None = None  # a git ref whose tests/ to use (e.g. main, for a "before" score)


def _scratch_copy(target: str, dest: Path) -> list[str]:
    """The tracked files mutmut needs, and a pyproject.toml that says what to mutate and test;
    returns the test files used."""
    mutate, tests = TARGETS[target]
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    if TESTS_FROM:
        archive = subprocess.run(["git", "archive", TESTS_FROM, "tests"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    else:
        shutil.copytree(REPO / "tests", dest / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", dest / "configs")
    tests = [t for t in tests if (dest / t).exists()]
    settings = {
        "source_paths": list(PACKAGES),
        "only_mutate": mutate,
        "do_not_mutate": EXCLUDED.get(target, []),
        "also_copy": ["configs/"],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
        # torch starts thread pools: fork workers from a clean server, not from pytest's process
        "process_isolation": "forkserver",
        # a loaded machine slows every test; a slow test is not a killed mutant
        "timeout_multiplier": 30.0,
        "timeout_constant": 10.0,
        "use_git_change_detection": False,
    }
    text = (REPO / "pyproject.toml").read_text()
    text += "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (dest / "pyproject.toml").write_text(text)
    return tests


_EB = "curricula.exploration_bonus.xǁExplorationBonusǁbonus_items__mutmut_"
_F64 = ("the rates arrive as float arrays (float32 or float64); converting to float64 first is exact and "
        "changes no comparison with the threshold")
EQUIVALENT.update({_EB + "39": _F64, _EB + "41": _F64, _EB + "58": _F64, _EB + "60": _F64})

_SUM = "policies.combiners.sum.xǁSumCombinerǁcombine__mutmut_"
_FAST = ("on the CPU the masked general path returns the same sum, weights and dtypes: the fast path is only a "
         "cheaper screen (no mask when the plain sum is finite)")
_CPU = "a device argument: on the CPU (all this machine has) moving to the same device is a no-op"
_PC = "policies.combiners.pcgrad.xǁPCGradǁcombine__mutmut_"
EQUIVALENT.update({
    _SUM + "1": _FAST, _SUM + "2": _FAST, _SUM + "3": _FAST, _SUM + "7": _FAST, _SUM + "8": _FAST,
    _SUM + "10": _FAST, _SUM + "13": _FAST, _SUM + "14": _FAST, _SUM + "16": _FAST,
    _SUM + "38": _CPU, _SUM + "51": _CPU, _SUM + "54": _CPU,
    _SUM + "50": "a 0-dim float32 zero in torch.where does not change the result dtype (0-dim tensors do not "
                 "promote a same-kind operand)",
    _SUM + "53": "a 0-dim float32 zero in torch.where does not change the result dtype (0-dim tensors do not "
                 "promote a same-kind operand)",
    _PC + "22": "`gram[j, j] < 0` lets a zero row through, but its column of the Gram matrix is 0, so dot = 0 "
                "and `dot < 0` projects nothing",
    _PC + "26": "`dot <= 0`: at dot = 0 the projection subtracts 0; zero rows are already skipped",
})


_MG = "policies.combiners.mgda.xǁMGDAǁcombine__mutmut_"
_PA = "policies.combiners.pareto_mtl.xǁParetoMTLǁ"
_ZERO_ROW = "changes only the logged weight of an all-zero row, which adds 0 to the step whatever its weight"
EQUIVALENT.update({
    _MG + "45": "`norms >= 0`: a zero row's scale is then 1 / 1 = 1, the same as the else branch",
    _MG + "57": _ZERO_ROW, _MG + "58": _ZERO_ROW,
    _PA + "constraint_values__mutmut_21": "a preference with no weight on the present tasks is 0: 0 / 2 = 0 / 1",
    _PA + "constraint_values__mutmut_33": "losses are never empty here (combine returns before, with no usable row)",
    _PA + "constraint_values__mutmut_37": "losses are never empty here (combine returns before, with no usable row)",
    _PA + "constraint_values__mutmut_44": "F is normalised right after: (F * top) / |F * top| = F / |F| for top > 0",
    _PA + "combine__mutmut_64": "np.concatenate's default axis is 0",
    _PA + "__init____mutmut_11": "integer preferences become float64 in the normalisation right after (prefs / norm)",
    _PA + "__init____mutmut_13": "integer preferences become float64 in the normalisation right after (prefs / norm)",
    _PA + "combine__mutmut_77": "`total >= 1e-12`: differs only at a total of exactly 1e-12",
})


EQUIVALENT.update({
    "curricula.base.xǁCurriculumǁ__init____mutmut_186": "CurriculumDistribution's version defaults to 0",
    "curricula.base.xǁCurriculumǁload_state_dict__mutmut_33":
        "the stored successes are the int64 array state_dict wrote: np.array keeps int64",
    "curricula.base.xǁCurriculumǁupdate__mutmut_120": "bool.astype(None) is float64, what astype(np.float64) gives",
    "curricula.base.xǁCurriculumǁupdate__mutmut_19": "astype(bool, copy=None) copies only if needed, like copy=False",
    "curricula.success_estimates.xǁSuccessEstimatesǁabsorb__mutmut_15": "astype copies instead of viewing: same values",
    "curricula.success_estimates.xǁSuccessEstimatesǁ_grow_tables__mutmut_19":
        "np.errstate(divide=None) leaves the warning setting as it is: only a warning may differ, not a value",
    "curricula.success_estimates.xǁSuccessEstimatesǁ_grow_tables__mutmut_55":
        "`small >= 0`: log(0) is -inf, what the else branch gives",
    "curricula.affinity.xǁTaskAffinityǁload_state_dict__mutmut_31":
        "the stored scale is a float64 array already (state_dict writes it)",
    "curricula.data_sharing.xǁRunningThresholdǁload_state_dict__mutmut_42":
        "np.array of the stored int64 positions is int64 already",
})


_FUNCTIONS: dict[Path, dict[str, str]] = {}


def _mutant_diff(workdir: Path, name: str, env: dict[str, str]) -> str:
    """The changed lines of mutant ``name`` (``-`` original, ``+`` mutant), read from the
    mutated module's source: mutmut keeps each mutant as a function beside ``..._orig``."""
    module, _, function = name.rpartition("__mutmut_")[0].rpartition(".")
    path = workdir / "mutants" / (module.replace(".", "/") + ".py")
    if not path.exists():  # a package's __init__.py
        path = workdir / "mutants" / module.replace(".", "/") / "__init__.py"
    if path not in _FUNCTIONS:
        text = path.read_text()
        lines = text.splitlines()  # by line numbers: ast.get_source_segment re-splits the file per call
        _FUNCTIONS[path] = {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno])
                            for node in ast.walk(ast.parse(text)) if isinstance(node, ast.FunctionDef)}
    sources = _FUNCTIONS[path]
    suffix = name.rpartition(".")[2]
    original = sources.get(f"{function}__mutmut_orig", "").splitlines()
    mutant = sources.get(suffix, "").splitlines()
    original = [original[0].replace("__mutmut_orig", "")] + original[1:] if original else original
    mutant = [mutant[0].replace(suffix.rpartition("__mutmut_")[1] + suffix.rpartition("__mutmut_")[2], "")] + mutant[1:] \
        if mutant else mutant
    return "\n".join(line for line in difflib.unified_diff(original, mutant, lineterm="", n=0)
                     if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))


def _statuses(workdir: Path, target: str | None = None) -> dict[str, str]:
    status: dict[str, str] = {}
    excluded = [workdir / "mutants" / f"{path}.meta" for path in EXCLUDED.get(target or "", [])]
    for meta in (workdir / "mutants").rglob("*.py.meta"):
        if meta in excluded:
            continue
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            status[name] = "not checked" if code is None else _STATUS.get(code, "suspicious")
    return status


def _mutmut(workdir: Path, env: dict[str, str], max_children: int, names: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names],
                          cwd=workdir, env=env, capture_output=True, text=True)


def summarise(workdir: Path, env: dict[str, str], target: str, tests: list[str], status: dict[str, str],
              rerun: dict | None, population: int | None, seconds: float | None) -> dict:
    """Counts, score and survivors (with their diffs) from mutmut's statuses in ``workdir``.
    Mutants mutmut has not checked (an interrupted run) are counted apart, outside the score."""
    unchecked = sum(1 for s in status.values() if s == "not checked")
    status = {n: s for n, s in status.items() if s != "not checked"}
    counts: dict[str, int] = {}
    if rerun is not None:
        counts = {k: v for k, v in rerun["counts"].items() if k in _DEAD}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    alive = sorted(n for n, s in status.items() if s not in _DEAD)
    equivalent = {n: EQUIVALENT[n] for n in alive if n in EQUIVALENT}
    dead = sum(counts.get(s, 0) for s in _DEAD)
    total = sum(counts.values())
    survivors = [{"mutant": n, "status": status[n], "diff": _mutant_diff(workdir, n, env),
                  **({"equivalent": equivalent[n]} if n in equivalent else {})} for n in alive]
    prefix = target.replace("/", ".").removesuffix(".py")
    stale = sorted(n for n in EQUIVALENT if n.startswith(prefix) and n in status and n not in equivalent)
    score = dead / max(total, 1)
    result = {
        "mutants": total,
        "counts": counts,
        "killed": dead,
        "score": round(score, 4),
        "equivalent": len(equivalent),
        "score_without_equivalent": round(dead / max(total - len(equivalent), 1), 4),
        "seconds": None if seconds is None else round(seconds, 1),
        "tests": tests,
        "survivors": survivors,
        **({"stale_equivalent_names": stale} if stale else {}),
        **({"not_checked": unchecked} if unchecked else {}),
    }
    if population is not None and population != total:
        result.update(population=population, sampled=True, sample_seed=29,
                      score_95ci_halfwidth=round(1.96 * math.sqrt(score * (1 - score) / max(total, 1))
                                                 * math.sqrt(max(1 - total / population, 0.0)), 4))
    if rerun is not None:
        result["reran_survivors_of"] = rerun.get("label")
        for key in ("sampled", "sample_seed", "not_checked_before"):
            if key in rerun:
                result[key] = rerun[key]
        if "not_checked" in rerun:
            result["not_checked_before"] = rerun["not_checked"]
    return result


def apply_equivalents(result: dict) -> dict:
    """Mark the stored survivors listed in EQUIVALENT and recompute the adjusted score (after
    a survivor has been judged, without running anything again)."""
    marked = 0
    for survivor in result["survivors"]:
        survivor.pop("equivalent", None)
        if survivor["mutant"] in EQUIVALENT:
            survivor["equivalent"] = EQUIVALENT[survivor["mutant"]]
            marked += 1
    result["equivalent"] = marked
    result["score_without_equivalent"] = round(result["killed"] / max(result["mutants"] - marked, 1), 4)
    return result


def from_workdir(target: str, workdir: Path) -> dict:
    """The result of an earlier (possibly interrupted) run kept with --keep."""
    env = dict(os.environ, PYTHONPATH="")
    tests = [t for t in TARGETS[target][1] if (workdir / t).exists()]
    return summarise(workdir, env, target, tests, _statuses(workdir, target), None, None, None)


def run_target(target: str, max_children: int, keep: bool, sample: int | None = None,
               rerun: dict | None = None) -> dict:
    """Run mutmut on one target; return its counts, score and surviving mutants.

    ``sample``: test only that many mutants, drawn with a fixed seed from all of the target's
    (the score is then an estimate; its 95 % half-width is stored).  ``rerun``: an earlier
    result of this target: only its survivors are tested again and its killed ones are counted
    as killed (valid while the product code is unchanged and tests were only added or
    strengthened, which is how a round of killing survivors works).
    """
    workdir = Path(tempfile.mkdtemp(prefix="mto-mutation-"))
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONHASHSEED="0")
    try:
        tests = _scratch_copy(target, workdir)
        start = time.perf_counter()
        names: list[str] = []
        population = None
        if rerun is not None:
            names = [s["mutant"] for s in rerun["survivors"]]
            population = rerun.get("population", rerun["mutants"])
        elif sample is not None:
            _mutmut(workdir, env, max_children, ["__list_only__"])  # generates mutants and stats, tests none
            everything = sorted(_statuses(workdir, target))
            population = len(everything)
            names = sorted(random.Random(29).sample(everything, min(sample, population)))
        run = _mutmut(workdir, env, max_children, names) if (names or rerun is None) else None
        seconds = time.perf_counter() - start
        status = _statuses(workdir, target)
        if names:
            status = {n: status.get(n, "not checked") for n in names}
        if names and all(s == "not checked" for s in status.values()):
            raise RuntimeError(f"mutmut checked none of the {len(names)} mutants of {target} (a test failing on the "
                               f"unmutated code stops it):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        if rerun is not None:  # a survivor mutmut did not get to stays what it was
            before = {s["mutant"]: s["status"] for s in rerun["survivors"]}
            status = {n: (before[n] if s == "not checked" else s) for n, s in status.items()}
        if not status and rerun is None:
            raise RuntimeError(f"mutmut produced no results for {target}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return summarise(workdir, env, target, tests, status, rerun, population, seconds)
    finally:
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="package to mutate (repeatable; default: all)")
    parser.add_argument("--label", default="after", help="key under which the results are stored (e.g. before/after)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--sample", type=int, help="test a seeded random sample of this many mutants per target")
    parser.add_argument("--rerun-survivors-of", metavar="LABEL",
                        help="test only the survivors stored under LABEL (after adding tests); its kills count")
    parser.add_argument("--tests-from", metavar="GIT_REF",
                        help="use the tests/ of this commit (e.g. main, for the score before new tests)")
    parser.add_argument("--from-workdir", type=Path, metavar="DIR",
                        help="record the results of a run kept with --keep in DIR (one --target)")
    parser.add_argument("--refresh-equivalents", action="store_true",
                        help="only re-apply EQUIVALENT to the stored results (runs nothing)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (to inspect with `mutmut show`)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    global TESTS_FROM
    TESTS_FROM = args.tests_from
    if shutil.which("mutmut") is None and subprocess.run([sys.executable, "-m", "mutmut", "--version"],
                                                         capture_output=True).returncode != 0:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("tool", "mutmut")
    data["equivalent_mutants"] = EQUIVALENT
    runs = data.setdefault("runs", {})
    if args.refresh_equivalents:
        for labels in runs.values():
            for result in labels.values():
                apply_equivalents(result)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        for target, labels in runs.items():
            for label, r in labels.items():
                print(f"{target:40s} {label:8s} {r['mutants']:6d} killed {r['killed']:5d} {r['score']:7.1%} "
                      f"without {r['equivalent']} equivalent {r['score_without_equivalent']:7.1%}")
        return 0
    print(f"{'target':40s} {'label':8s} {'mutants':>8s} {'killed':>7s} {'score':>7s} {'adj.':>7s} {'left':>5s} {'s':>7s}")
    for target in args.target or list(TARGETS):
        rerun = None
        if args.rerun_survivors_of:
            rerun = dict(runs[target][args.rerun_survivors_of], label=args.rerun_survivors_of)
        if args.from_workdir:
            result = from_workdir(target, args.from_workdir)
        else:
            result = run_target(target, args.max_children, args.keep, args.sample, rerun)
        result.update(commit=_git_commit(), tests_from=args.tests_from or "work tree", host=platform.node(),
                      cpus=os.cpu_count(),
                      date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        runs.setdefault(target, {})[args.label] = result
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")  # after each target: a long run keeps its parts
        left = len(result["survivors"]) - result["equivalent"]
        print(f"{target:40s} {args.label:8s} {result['mutants']:8d} {result['killed']:7d} {result['score']:7.1%} "
              f"{result['score_without_equivalent']:7.1%} {left:5d} {result['seconds'] or 0:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
