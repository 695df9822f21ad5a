"""``python -m common.data.prepare DATASET --raw DIR --out DIR [--size H W] [--seed N] [--fold K]``."""

from __future__ import annotations

import argparse
import logging
import sys

from common.data.prepare.core import DATASETS, TASKS, RawLayoutError, prepare


def main(argv: list[str] | None = None) -> int:
    """Prepares one dataset.

    Args:
        argv: the command line (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 1 with the problems printed (one line per file).
    """
    parser = argparse.ArgumentParser(
        prog="python -m common.data.prepare",
        description="Prepares a public dataset, unpacked as distributed, into the datalist the bundles read "
        "(the raw layout is checked first: one line per missing or unreadable file, nothing written).",
        epilog="Tasks (prepare each of a task's datasets into the same --out): "
        + "; ".join(f"{task}: {' + '.join(d for d, s in DATASETS.items() if s.task == task)}" for task in TASKS),
    )
    parser.add_argument("dataset", choices=sorted(DATASETS), help="the dataset to prepare")
    parser.add_argument("--raw", required=True, help="the dataset as downloaded (unpacked)")
    parser.add_argument("--out", required=True, help="the output folder (one per task: both centres of a task go here)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize 2D images (bilinear) and masks (nearest), or volumes in-plane (their slices kept), to H x W; "
        "0 0 keeps them (default: the dataset's, e.g. 256 x 256)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random splits (where a dataset has them)")
    parser.add_argument("--fold", type=int, default=None, help="lits, chaos_liver: the held-out fold, 0-4 (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    options = {"seed": args.seed}
    if args.size is not None:
        options["size"] = tuple(args.size)
    if args.fold is not None:
        options["fold"] = args.fold
    try:
        written = prepare(args.dataset, args.raw, args.out, **options)
    except (RawLayoutError, ValueError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
