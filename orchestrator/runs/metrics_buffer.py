"""Per-iteration metrics that survive a tracking-server outage.

While the MLflow server is unreachable, each iteration's metrics are appended to
`<run folder>/metrics_unsent.jsonl` (step, timestamp, values) and training goes on; once the
server answers again they are sent in order with their original steps and timestamps, each
line removed from the file as soon as it has arrived (so a line is never sent twice, and a
crash keeps what is unsent for `--resume` to send). A line torn by a crash is set aside
(`orchestrator.runs.torn_files`) and the complete ones are sent. During an outage calls fail
fast instead of blocking the loop in MLflow's HTTP retries (7 retries with exponential backoff, about two
minutes per call by default).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.runs.torn_files import read_json_lines
from orchestrator.runs.tracking import log_metrics_safe

UNSENT_FILE = "metrics_unsent.jsonl"
# A refused connection fails at once either way; the timeout bounds a hung server. Sending kept
# metrics gets longer: a server writing to SQLite on a busy machine took ~20 s for 900 metrics.
_FAIL_FAST_TIMEOUT_S = 5
_SEND_KEPT_TIMEOUT_S = 60
_METRICS_PER_REQUEST = 300


@contextmanager
def fail_fast_tracking(timeout_s: float = _FAIL_FAST_TIMEOUT_S) -> Iterator[None]:
    """MLflow HTTP calls inside are not retried and time out after ``timeout_s`` (MLflow reads
    these settings on every request); the previous settings come back afterwards."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _is_entry(record: dict) -> bool:
    """A whole kept line: a step, a timestamp and a mapping of metric values."""
    metrics = record.get("metrics")
    return (isinstance(record.get("step"), int) and isinstance(record.get("timestamp"), int) and isinstance(metrics, dict)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()))


def _ends_torn(path: Path) -> bool:
    """Whether ``path`` exists and its last byte is not a newline (an append cut short)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


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
        return len(self._read())

    def _read(self) -> list[dict]:
        return read_json_lines(self.path, complete=_is_entry)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Send now (after anything kept from before), or keep for later; never raises for the server."""
        if self.path.is_file() and time.monotonic() - self._last_try >= self.retry_every_s:
            # A few requests per iteration, so catching up after a long outage does not stall training.
            self.send_waiting(max_requests=4)
        if not self.path.is_file():
            try:
                with fail_fast_tracking():
                    log_metrics_safe(metrics, step=step)
                return
            except Exception as exc:  # noqa: BLE001 - MLflow raises several types for an unreachable server
                self._note_outage(exc)
        self._keep(metrics, step)

    def send_waiting(self, timeout_s: float = 0.0, max_requests: int | None = None) -> bool:
        """Send the kept metrics in order, whole lines, up to `_METRICS_PER_REQUEST` per request.
        Gives up after ``timeout_s`` without progress (or after ``max_requests``). True if none is left.

        Each line is removed once its request succeeded. A request that timed out but reached the
        server is sent again; MLflow stores a point with the same key, step, timestamp and value
        once, so that does not duplicate it."""
        import mlflow
        from mlflow.entities import Metric

        deadline = time.monotonic() + timeout_s
        requests = 0
        while True:
            self._last_try = time.monotonic()
            lines = self._read()
            if not lines:
                break
            if max_requests is not None and requests >= max_requests:
                return False
            items: list = []
            taken = 0
            while taken < len(lines):
                entry = lines[taken]
                more = [Metric(k, float(v), entry["timestamp"], entry["step"]) for k, v in entry["metrics"].items()]
                if items and len(items) + len(more) > _METRICS_PER_REQUEST:
                    break
                items += more
                taken += 1
            try:
                run_id = mlflow.active_run().info.run_id
                with fail_fast_tracking(_SEND_KEPT_TIMEOUT_S):
                    client = mlflow.MlflowClient()
                    for start in range(0, len(items), 900):  # a single line may pass the request size
                        client.log_batch(run_id, metrics=items[start:start + 900])
            except Exception as exc:  # noqa: BLE001
                self._note_outage(exc)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                continue
            requests += 1
            self._rewrite([json.dumps(entry) for entry in lines[taken:]])
            deadline = time.monotonic() + timeout_s  # progress: the patience starts again
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
        if _ends_torn(self.path):  # a torn tail left by a crash would swallow this line: set it aside first
            self._read()
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
