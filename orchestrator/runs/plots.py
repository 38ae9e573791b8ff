"""PNG plots of a run: per-task success curves and the curriculum's distribution over time."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: runs on cluster nodes and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (110 dpi, the size every run plot uses) and close ``fig``."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ordered(histories: dict[str, list[tuple[int, float]]], order: Sequence[str] | None) -> list[str]:
    names = [n for n in (order or sorted(histories)) if n in histories]
    return names


def plot_task_curves(
    histories: dict[str, list[tuple[int, float]]],
    path: str | Path,
    ylabel: str,
    title: str,
    xlabel: str = "iteration",
    order: Sequence[str] | None = None,
    max_lines: int = 40,
    ylim: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
) -> Path:
    """One line per task (the `max_lines` with the highest final value first)."""
    names = _ordered(histories, order)
    final = {n: histories[n][-1][1] if histories[n] else 0.0 for n in names}
    shown = sorted(names, key=lambda n: -final[n])[:max_lines]
    fig, ax = plt.subplots(figsize=(10, 6))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(shown):
        steps, values = zip(*histories[name]) if histories[name] else ((), ())
        ax.plot(steps, values, label=name, color=cmap(i % 20), linestyle="-" if i < 20 else "--")
    if reference is not None:
        ax.axhline(reference[0], color="black", linewidth=0.8, linestyle=":", label=reference[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(f"{title} ({len(shown)} of {len(names)} tasks)")
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, path)


def plot_success_curves(
    histories: dict[str, list[tuple[int, float]]],
    path: str | Path,
    order: Sequence[str] | None = None,
    mastery_threshold: float = 0.9,
    max_lines: int = 40,
) -> Path:
    """Success rate per task against training iteration; the best `max_lines` tasks are drawn."""
    return plot_task_curves(histories, path, ylabel="success rate", title="Per-task success, best first",
                            order=order, max_lines=max_lines, ylim=(-0.02, 1.02),
                            reference=(mastery_threshold, "mastered"))


def plot_distribution_heatmap(
    histories: dict[str, list[tuple[int, float]]],
    path: str | Path,
    order: Sequence[str] | None = None,
) -> Path:
    """Task x iteration heatmap of the curriculum's sampling probability."""
    names = _ordered(histories, order)
    steps = sorted({s for n in names for s, _ in histories[n]})
    col = {s: j for j, s in enumerate(steps)}
    grid = np.full((len(names), max(len(steps), 1)), np.nan)
    for i, name in enumerate(names):
        for s, v in histories[name]:
            grid[i, col[s]] = v
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.12 * len(names) + 1.5)))
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                   extent=(steps[0] - 0.5 if steps else 0, steps[-1] + 0.5 if steps else 1, len(names) - 0.5, -0.5))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=max(3, min(8, int(400 / max(len(names), 1)))))
    ax.set_xlabel("iteration")
    ax.set_title("Curriculum: probability of sampling each task")
    fig.colorbar(im, ax=ax, label="probability")
    return save_figure(fig, path)
