"""Per-iteration metrics that survive a tracking-server outage.

While the MLflow server is unreachable, each iteration's metrics are appended to
`<run folder>/metrics_unsent.jsonl` (step, timestamp, values) and training goes on; once the
server answers again they are sent in order with their original steps and timestamps, each
line removed from the file as soon as it has arrived (so a line is never sent twice, and a
crash keeps what is unsent for `--resume` to send). During an outage calls fail fast instead
of blocking the loop in MLflow's HTTP retries (7 retries with exponential backoff, about two
minutes per call by default).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.runs.tracking import log_metrics_safe

UNSENT_FILE = "metrics_unsent.jsonl"
_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@contextmanager
def fail_fast_tracking() -> Iterator[None]:
    """MLflow HTTP calls inside fail at once when the server is down (MLflow reads these
    settings on every request); the previous settings come back afterwards."""
    previous = {key: os.environ.get(key) for key in _FAIL_FAST}
    os.environ.update(_FAIL_FAST)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class MetricsSpool:
    """Logs metrics to the active MLflow run, keeping what cannot be sent in the run folder.

    Args:
        run_path: the run folder (the unsent file lives there).
        retry_every_s: while metrics are waiting, try the server again at most this often.
    """

    def __init__(self, run_path: Path, retry_every_s: float = 10.0) -> None:
        self.path = Path(run_path) / UNSENT_FILE
        self.retry_every_s = retry_every_s
        self._last_try = 0.0
        self.outage_started: float | None = None

    @property
    def waiting(self) -> int:
        """How many iterations' metrics are kept, not yet sent."""
        if not self.path.is_file():
            return 0
        return sum(1 for line in self.path.read_text().splitlines() if line.strip())

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Send now (after anything kept from before), or keep for later; never raises for the server."""
        if self.path.is_file() and time.monotonic() - self._last_try >= self.retry_every_s:
            self.send_waiting()
        if not self.path.is_file():
            try:
                with fail_fast_tracking():
                    log_metrics_safe(metrics, step=step)
                return
            except Exception as exc:  # noqa: BLE001 - MLflow raises several types for an unreachable server
                self._note_outage(exc)
        self._keep(metrics, step)

    def send_waiting(self, timeout_s: float = 0.0) -> bool:
        """Send the kept metrics in order; with ``timeout_s``, keep trying that long. True if none is left."""
        import mlflow
        from mlflow.entities import Metric

        deadline = time.monotonic() + timeout_s
        while True:
            self._last_try = time.monotonic()
            lines = self.path.read_text().splitlines() if self.path.is_file() else []
            lines = [line for line in lines if line.strip()]
            try:
                client = mlflow.MlflowClient()
                run_id = mlflow.active_run().info.run_id
                with fail_fast_tracking():
                    while lines:
                        # Whole lines, up to MLflow's 1000 metrics per request (one request per
                        # line took ~1 s each on a busy machine: minutes for a long outage).
                        items, taken = [], 0
                        while taken < len(lines):
                            entry = json.loads(lines[taken])
                            more = [Metric(k, float(v), entry["timestamp"], entry["step"])
                                    for k, v in entry["metrics"].items()]
                            if items and len(items) + len(more) > 900:
                                break
                            items += more
                            taken += 1
                        for start in range(0, len(items), 900):  # a single line may be longer
                            client.log_batch(run_id, metrics=items[start:start + 900])
                        lines = lines[taken:]
                        self._rewrite(lines)
            except Exception as exc:  # noqa: BLE001
                self._note_outage(exc)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                continue
            if self.outage_started is not None:
                from orchestrator.runs.progress import console

                console.print(f"[green]tracking server back[/] after {time.monotonic() - self.outage_started:.0f} s; "
                              "kept metrics sent")
                self.outage_started = None
            return True

    def _keep(self, metrics: dict[str, float], step: int) -> None:
        import math

        values = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        entry = {"step": int(step), "timestamp": int(time.time() * 1000), "metrics": values}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _rewrite(self, lines: list[str]) -> None:
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.path)  # a crash leaves the old list or the new one, never half

    def _note_outage(self, exc: Exception) -> None:
        if self.outage_started is None:
            from orchestrator.runs.progress import console

            self.outage_started = time.monotonic()
            console.print(f"[yellow]tracking server unreachable[/] ({type(exc).__name__}); metrics are kept in "
                          f"{self.path} and sent when it is back")
