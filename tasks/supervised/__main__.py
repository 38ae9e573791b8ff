"""Conversion command: ``python -m tasks.supervised NAME OUT_DIR [--seed S] [--param key=value ...]``.

Example: ``python -m tasks.supervised multi_digit data/ --param mnist_path=~/mnist``.
"""

from __future__ import annotations

import argparse
import json

from tasks.supervised import DATASETS, read_dataset, write_dataset


def _value(text: str) -> object:
    # Numbers and booleans as JSON, everything else (paths) as a string.
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.supervised", description=__doc__)
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item!r} must look like key=value")
        params[key] = _value(value)
    path = write_dataset(args.name, args.out_dir, seed=args.seed, **params)
    data = read_dataset(path, name=args.name)
    sizes = {s: len(a) for s, a in data.splits.items()}
    print(f"wrote {path}: tasks={list(data.task_space.names)} input_shape={data.input_shape} rows={sizes}")


if __name__ == "__main__":
    main()
