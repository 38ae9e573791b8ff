"""Draw the documentation's figures from the benchmark results (`benchmarks/results/*.json`).

    python -m benchmarks.figures [--results benchmarks/results] [--out docs/assets/figures]

One PNG per benchmark, drawn only from what its JSON holds (no numbers typed in here), so a rerun of a
benchmark followed by this script updates the site's pictures. The PNGs are checked in; the pages
show each one beside the table it draws (docs/performance.md, docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

REPO = Path(__file__).resolve().parent.parent
ARM_COLOURS = {"uniform": "#9e9e9e", "learning_progress": "#3f51b5", "lp": "#3f51b5", "lp+dynamic_bonus": "#e65100"}


def _load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def _save(fig, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curriculum_sim(results: Path, out: Path) -> Path:
    """Items mastered against episodes, per arm: mean over seeds, band from min to max."""
    data = _load(results, "curriculum_sim")
    x = [c / 1000 for c in data["checkpoints"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = {"uniform": "uniform", "learning_progress": "learning progress", "lp+dynamic_bonus": "LP + dynamic bonus"}
    for arm, stats in data["mastered"].items():
        colour = ARM_COLOURS.get(arm)
        ax.plot(x, stats["mean"], marker="o", color=colour, label=labels.get(arm, arm))
        ax.fill_between(x, stats["min"], stats["max"], color=colour, alpha=0.2)
    ax.set_xlabel("episodes (thousands)")
    ax.set_ylabel(f"items mastered (success >= {data['mastery_threshold']})")
    ax.set_title(f"Simulated learner, {data['num_tasks']} tech-tree items, seeds {data['seeds']} (band: min-max)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, out, "curriculum_sim")


def simon_says_learning(results: Path, out: Path) -> Path:
    """Items mastered per arm on the whole tech tree: mask on (bars = mean, dots = seeds), mask off."""
    data = _load(results, "simon_says_learning")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for ax, mask in zip(axes, ("on", "off")):
        rows = data["tables"][mask]
        names = [r["arm"].replace("+", " +\n") for r in rows]
        means = [r["mastered_mean"] if "mastered_mean" in r else sum(r["mastered"]) / len(r["mastered"]) for r in rows]
        colours = ["#3f51b5" if r["arm"].startswith("lp") else "#9e9e9e" for r in rows]
        ax.bar(range(len(rows)), means, color=colours, alpha=0.85)
        for i, r in enumerate(rows):
            seeds = r["mastered"] if isinstance(r["mastered"], list) else [r["mastered"]]
            ax.scatter([i] * len(seeds), seeds, color="black", s=14, zorder=3)
            ax.text(i, max(seeds) + 0.8, f"{means[i]:.1f}", ha="center", fontsize=8)
        ax.set_xticks(range(len(rows)), names, fontsize=8)
        top = max(max(r["mastered"]) if isinstance(r["mastered"], list) else r["mastered"] for r in rows)
        ax.set_ylim(0, top * 1.15 + 1)  # room for the labels above the highest seed
        ax.set_ylabel("items mastered of 189")
        steps = rows[0]["env_steps"]
        budget = (sum(steps) / len(steps)) if isinstance(steps, list) else steps
        seeds = len(rows[0]["mastered"]) if isinstance(rows[0]["mastered"], list) else 1
        ax.set_title(f"action mask {mask}: {seeds} seed(s), {budget / 1e6:.1f}M env steps", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("RLlib PPO on the whole tech tree: curriculum x exploration bonus (dots: seeds)")
    return _save(fig, out, "simon_says_learning")


def offline_sharing(results: Path, out: Path) -> Path:
    """Mean greedy success per sharing mode on the two datasets (whisker: min-max over seeds)."""
    data = _load(results, "offline_sharing")
    extra = _load(results, "offline_sharing_cds_basic") if (results / "offline_sharing_cds_basic.json").is_file() else None
    titles = {"help": "sharing helps (offline_cds)", "hurt": "sharing hurts (offline_conflict_cds)"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (key, dataset) in zip(axes, data["datasets"].items()):
        summary = dict(dataset["summary"])
        if extra is not None:
            summary.update(extra["datasets"][key]["summary"])
        modes = list(summary)
        means = [summary[m]["mean_success"] for m in modes]
        low = [summary[m]["mean_success"] - summary[m]["mean_success_min"] for m in modes]
        high = [summary[m]["mean_success_max"] - summary[m]["mean_success"] for m in modes]
        ax.bar(modes, means, yerr=[low, high], capsize=4,
               color=["#9e9e9e", "#90caf9", "#e65100", "#ffb74d"][: len(modes)])
        for i, m in enumerate(means):
            ax.text(i, 0.03, f"{m:.2f}", ha="center", color="white", fontsize=9, fontweight="bold")
        ax.set_title(titles.get(key, key), fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean greedy success")
    fig.suptitle(f"Offline CQL, {len(data['seeds'])} seeds, {data['gradient_steps']:,} gradient steps (whiskers: min-max)")
    return _save(fig, out, "offline_sharing")


def mt10(results: Path, out: Path) -> Path:
    """Meta-World MT10 with SAC: mean success and training throughput per config."""
    data = _load(results, "mt10")
    configs = data["configs"]
    names = [c["config"].replace("mt10_sac_", "").replace("mt10_sac", "mt_sac") for c in configs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].bar(names, [c["mean_success"] for c in configs], color="#3f51b5")
    axes[0].set_ylabel("mean success, 10 tasks")
    axes[0].set_ylim(0, 1)
    axes[0].set_title(f"after {data['env_steps_budget']:,} env steps", fontsize=10)
    axes[1].bar(names, [c["env_steps_per_second"] for c in configs], color="#e65100")
    axes[1].set_ylabel("SAC training env-steps/s")
    axes[1].set_title(f"bare MT10 stepping: {data['bare_env_steps_per_second']:,.0f} env-steps/s", fontsize=10)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Meta-World MT10 with RLlib SAC (2 shared CPU cores)")
    return _save(fig, out, "mt10")


def mt10_learning(results: Path, out: Path) -> Path:
    """Meta-World MT10 learning curves: mean training success against env steps per method."""
    from benchmarks.mt10_learning import plot

    path = out / "mt10_learning.png"
    plot(_load(results, "mt10_learning")["rows"], path)
    return path


def env_speed(results: Path, out: Path) -> Path:
    """Simon Says env steps per second against the number of environments stepped together."""
    data = _load(results, "env_speed")
    envs = sorted(int(k) for k in data["steps_per_second"])
    median = [data["steps_per_second"][str(n)]["median"] for n in envs]
    best = [data["steps_per_second"][str(n)]["best"] for n in envs]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(envs, median, marker="o", label="median", color="#3f51b5")
    ax.plot(envs, best, marker=".", linestyle="--", label="best", color="#9e9e9e")
    ax.axhline(2_000_000, color="#e65100", linestyle=":", label="target 2M at 4,096 envs")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("environments stepped together (one core)")
    ax.set_ylabel("env steps / s")
    ax.set_title("Simon Says techtree env, random actions")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out, "env_speed")


def rl_throughput(results: Path, out: Path) -> Path:
    """PPO training env-steps/s of the quickstart's forms against the minimal loop, one run."""
    data = _load(results, "rl_throughput")
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    names = [r["arm"].replace(": ", ":\n").replace(" (", "\n(") for r in rows]
    values = [r["train_env_steps_per_s"] for r in rows]
    colors = ["#9e9e9e" if "minimal" in r["arm"] else "#3f51b5" if "shipped" in r["arm"] else "#90caf9" for r in rows]
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    for i, r in enumerate(rows[::-1]):
        ax.text(r["train_env_steps_per_s"] * 1.01, i, f"{r['train_env_steps_per_s']:,.0f} ({r['ratio_to_minimal_loop']:.2f}x)",
                va="center", fontsize=8)
    minimal = rows[0]["train_env_steps_per_s"]
    ax.axvline(1.3 * minimal, color="#e65100", linestyle=":", label="target: 1.3x the minimal loop")
    ax.set_xlabel("PPO training env-steps/s (median)")
    ax.set_xlim(0, max(values + [1.3 * minimal]) * 1.35)
    ax.set_title(f"quickstart on {data['cpus']} cores, {data['rounds']} rounds of {data['block']} iterations per arm",
                 fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out, "rl_throughput")


def multi_digit(results: Path, out: Path) -> Path:
    """Mean test accuracy of each architecture x combiner on multi_digit."""
    data = _load(results, "multi_digit")
    rows = data["rows"]
    architectures = list(dict.fromkeys(r["architecture"] for r in rows))
    combiners = list(dict.fromkeys(r["combiner"] for r in rows if r["architecture"] != "independent"))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(len(combiners), 1)
    key = "test_accuracy_at_best_val/mean"
    for j, combiner in enumerate(combiners):
        xs, ys = [], []
        for i, arch in enumerate(architectures):
            match = [r for r in rows if r["architecture"] == arch and (r["combiner"] == combiner or arch == "independent")]
            if match and not (arch == "independent" and j > 0):
                xs.append(i + (j - (len(combiners) - 1) / 2) * width if arch != "independent" else i)
                ys.append(match[0][key])
        ax.bar(xs, ys, width=width, label=combiner)
    ax.set_xticks(range(len(architectures)), architectures)
    low = min(r[key] for r in rows)
    ax.set_ylim(math.floor(low * 20) / 20 - 0.05, 0.88)
    ax.set_ylabel("test accuracy, mean of 2 digits")
    ax.set_title(f"multi_digit, {data['settings']['epochs']} epochs, seed {data['settings']['seed']}", fontsize=10)
    ax.legend(title="combiner", ncol=4, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out, "multi_digit")


def fault_matrix(results: Path, out: Path) -> Path:
    """Time to recover from each injected fault (faults with no recovery time are listed at 0)."""
    data = _load(results, "fault_matrix")
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    names = [r["fault"].replace("`", "") for r in rows]
    times = [r["recover_s"] or 0.0 for r in rows]
    colours = ["#3f51b5" if r["survived"] else "#c62828" for r in rows]
    ax.barh(range(len(rows)), times, color=colours)
    for i, r in enumerate(rows):
        label = f"{r['recover_s']:.1f} s" if r["recover_s"] is not None else "no recovery step (survived)"
        ax.text(times[i] + 0.5, i, label, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time to recover (s)")
    ax.set_xlim(0, max(times) * 1.35)
    survived = sum(bool(r["survived"]) for r in rows)
    ax.set_title(f"Fault matrix: {survived} of {len(rows)} faults survived (smoke-sized run, real local Ray)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out, "fault_matrix")


def soak_rss(results: Path, out: Path) -> Path:
    """Resident memory of the driver, the CurriculumActor and the EnvRunner over each soak."""
    names = [n for n in ("soak_rss", "soak_rss_30min") if (results / f"{n}.json").is_file()]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        data = _load(results, name)
        minutes = [s["minute"] for s in data["samples"]]
        for process in data["samples"][0]["rss_mib"]:
            ax.plot(minutes, [s["rss_mib"].get(process, float("nan")) for s in data["samples"]], label=process)
        ax.axvline(data["warmup_minutes"], color="black", linestyle=":", linewidth=1)
        ax.set_xlabel("minute (dotted: end of warm-up)")
        ax.set_title(f"{data['minutes']:.0f}-minute soak of configs/quickstart.yaml", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("RSS (MiB)")
    axes[0][0].legend()
    return _save(fig, out, "soak_rss")


FIGURES: dict[str, Callable[[Path, Path], Path]] = {
    "curriculum_sim": curriculum_sim,
    "simon_says_learning": simon_says_learning,
    "offline_sharing": offline_sharing,
    "mt10": mt10,
    "mt10_learning": mt10_learning,
    "env_speed": env_speed,
    "rl_throughput": rl_throughput,
    "multi_digit": multi_digit,
    "fault_matrix": fault_matrix,
    "soak_rss": soak_rss,
}


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--out", type=Path, default=REPO / "docs/assets/figures")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="draw only these figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [FIGURES[name](args.results, args.out) for name in (args.only or FIGURES)]
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
