"""Soak: a long `mto train` run with the resident memory (RSS) of every process sampled each minute.

Starts a local Ray head (owned by this process), runs `mto train CONFIG` attached to it, and every
`--every` seconds reads the RSS (``/proc/PID/status`` VmRSS) of the driver, the CurriculumActor and
each EnvRunner, found through Ray's state API. After `--minutes` it stops the run with SIGTERM
(which also exercises the final checkpoint) and prints, per process, RSS after warm-up, at the
end, growth in percent and growth per hour (least-squares slope after warm-up).

    python -m benchmarks.soak_rss --minutes 20 --set rl.num_env_runners=1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fault_matrix import MTO, REPO, Cluster


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def processes(cluster: Cluster, driver: int) -> dict[str, int]:
    """{role: pid} for the driver, the CurriculumActor and each EnvRunner."""
    found = {"driver": driver}
    for actor in cluster.actors("CurriculumActor"):
        found["CurriculumActor"] = actor.pid
    for i, actor in enumerate(sorted(cluster.actors("EnvRunner"), key=lambda a: a.actor_id)):
        found[f"EnvRunner {i}"] = actor.pid
    return found


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minutes, MiB) in MiB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 60.0 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def summarize(samples: list[dict], warmup_min: float) -> list[dict]:
    roles = sorted({role for s in samples for role in s["rss_mib"]})
    out = []
    for role in roles:
        pts = [(s["minute"], s["rss_mib"][role]) for s in samples if role in s["rss_mib"] and s["minute"] >= warmup_min]
        if not pts:
            continue
        start, end = pts[0][1], pts[-1][1]
        # RSS swings by one training batch depending on the moment it is read; the lowest value in
        # the first and in the last `window` minutes (the floor) shows growth through that swing.
        window = 5.0
        first = min(y for x, y in pts if x <= pts[0][0] + window)
        last = min(y for x, y in pts if x >= pts[-1][0] - window)
        out.append({"process": role, "rss_after_warmup_mib": round(start, 1), "rss_end_mib": round(end, 1),
                    "growth_pct": round(100 * (end - start) / start, 1),
                    "floor_growth_pct": round(100 * (last - first) / first, 1),
                    "growth_mib_per_hour": round(slope_per_hour(pts), 1),
                    "pids": sorted({s["pids"][role] for s in samples if role in s["pids"]})})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| process | RSS after warm-up (MiB) | RSS at end (MiB) | growth | growth of the 5-min floor | growth per hour (fit) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in summary:
        lines.append(f"| {row['process']} | {row['rss_after_warmup_mib']} | {row['rss_end_mib']} | {row['growth_pct']}% "
                     f"| {row['floor_growth_pct']}% | {row['growth_mib_per_hour']} MiB/h |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=3.0, help="minutes before growth is measured")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "soak_rss.json"))
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mto-soak-"))
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1; `mto` below inherits it
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}
    env.pop("RAY_ADDRESS", None)
    sets = [x for o in args.overrides for x in ("--set", o)]
    samples: list[dict] = []
    with Cluster() as cluster, open(root / "train.log", "w") as log:
        # Enough iterations that the run is still going when the soak ends.
        proc = subprocess.Popen([MTO, "train", args.config, "--set", f"run_dir={root / 'runs'}", "--set",
                                 "training.iterations=100000", *sets, "--address", cluster.address, "--no-live"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.minutes * 60 and proc.poll() is None:
                time.sleep(max(0.0, args.every - (time.monotonic() - started) % args.every))
                pids = processes(cluster, proc.pid)
                sample = {"minute": round((time.monotonic() - started) / 60, 2), "pids": pids,
                          "rss_mib": {role: r for role, pid in pids.items() if (r := rss_mib(pid)) is not None}}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(300)
    summary = summarize(samples, args.warmup)
    print(table(summary))
    tail = (root / "train.log").read_text().splitlines()[-5:]
    out = {"command": "python -m benchmarks.soak_rss " + " ".join(argv if argv is not None else sys.argv[1:]),
           "exit_code": rc, "minutes": args.minutes, "warmup_minutes": args.warmup, "summary": summary,
           "samples": samples, "log_tail": tail, "folder": str(root)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"run folder and log under {root}; exit code {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
