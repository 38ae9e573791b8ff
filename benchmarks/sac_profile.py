"""Where one multi-task SAC iteration's time goes: a py-spy profile grouped by part.

Record a profile of SAC training in one process (sampling in the driver, so the EnvRunner's
work is in the same profile), then group it:

    py-spy record -r 100 -f raw -o sac.txt -- python -m benchmarks.mt10 --env-steps 12000 \\
        --eval-episodes 1 --configs mt10_sac --set rl.num_env_runners=0 --set rl.overlap_sampling=false
    python -m benchmarks.sac_profile sac.txt [before.txt ...]

Only samples inside `Algorithm.step` (training iterations) count; each is given to the first
part whose frames it contains, in the order of `PARTS`.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

PARTS = [
    ("replay sampling (buffer -> batch)", ["EpisodeReplayBuffer.sample", "TransitionReplayBuffer.sample"]),
    ("learner connector (episodes -> batch)", ["_make_batch_if_necessary"]),
    ("forward passes", ["RLModule.forward_train"]),
    ("loss", ["compute_losses"]),
    ("backward passes", ["compute_gradients"]),
    ("optimizer steps", ["apply_gradients"]),
    ("target network update", ["after_gradient_based_update"]),
    ("replay add", ["EpisodeReplayBuffer.add", "TransitionReplayBuffer.add"]),
    ("env stepping (MuJoCo)", ["MetaWorldVectorEnv.step"]),
    ("sampling: connectors, policy, episodes", ["SingleAgentEnvRunner.sample", "SingleAgentEnvRunner._sample"]),
]
OTHER = "other (metrics, weight syncs, RLlib bookkeeping)"


def group(raw: Path) -> dict[str, float]:
    """Share of the training samples per part (py-spy ``-f raw``: one ``frames count`` line per stack)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "Algorithm.step" not in stack:
            continue
        total += int(n)
        part = next((name for name, keys in PARTS if any(k in stack for k in keys)), OTHER)
        counts[part] += int(n)
    return {name: counts[name] / max(total, 1) for name, _ in [*PARTS, (OTHER, None)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw profiles (-f raw)")
    parser.add_argument("--out", type=Path, help="write the shares as JSON here")
    args = parser.parse_args()
    shares = {str(p): group(p) for p in args.profiles}
    print("| part | " + " | ".join(p.name for p in args.profiles) + " |")
    print("| --- |" + " ---: |" * len(args.profiles))
    for name in shares[str(args.profiles[0])]:
        print(f"| {name} | " + " | ".join(f"{shares[str(p)][name]:.1%}" for p in args.profiles) + " |")
    if args.out:
        args.out.write_text(json.dumps(shares, indent=2))


if __name__ == "__main__":
    main()
