"""What a person watching a run sees in the terminal."""

from __future__ import annotations

import sys
from typing import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=False)


class TrainingProgress:
    """A live bar on a terminal; one plain line per iteration elsewhere (job logs, CI)."""

    def __init__(self, total_iterations: int, start_iteration: int = 0, live: bool | None = None, unit: str = "iter"):
        self.unit = unit
        self.live = sys.stdout.isatty() if live is None else live
        self._progress: Progress | None = None
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._task = self._progress.add_task("train", total=total_iterations, completed=start_iteration, status="")
        self.total = total_iterations

    def __enter__(self) -> "TrainingProgress":
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress:
            self._progress.stop()

    def update(self, iteration: int, env_steps: int, steps_per_second: float, mean_success: float, mastered: int, num_tasks: int) -> None:
        """An RL iteration's line: env steps, throughput, mean success, items mastered."""
        self.update_status(
            iteration,
            f"steps {env_steps:,} | {steps_per_second:,.0f} steps/s | "
            f"mean success {mean_success:.2f} | mastered {mastered}/{num_tasks}",
        )

    def update_status(self, iteration: int, status: str) -> None:
        """Advance to `iteration` and show `status`."""
        if self._progress:
            self._progress.update(self._task, completed=iteration, status=status)
        else:
            print(f"{self.unit} {iteration}/{self.total} | {status}", flush=True)


def task_table(title: str, rows: Sequence[tuple], columns: Sequence[str]) -> Table:
    """A rich table; numbers are formatted to two decimals."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    return table
