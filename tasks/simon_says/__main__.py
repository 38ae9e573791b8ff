"""``python -m tasks.simon_says [--backend techtree]``: print the Simon Says task set by depth."""

from __future__ import annotations

import argparse
from itertools import groupby

from tasks.simon_says.task_sets import BACKENDS, make_task_space


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, default="techtree")
    args = parser.parse_args(argv)
    space = make_task_space(backend=args.backend)
    print(f"{len(space)} Simon Says tasks ({args.backend} backend), by prerequisite depth:")
    for depth, group in groupby(zip(space.depth, space.names), key=lambda x: x[0]):
        print(f"  {depth:>2}: {', '.join(name for _, name in group)}")


if __name__ == "__main__":
    main()
