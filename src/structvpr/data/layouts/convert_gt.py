"""`python -m structvpr.data.layouts.convert_gt IN.npy OUT.npz`: make a trusted VPR-Bench
ground-truth object array pickle-free, once, so that it never needs --allow-pickle again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from structvpr.data.layouts.gt_lists import convert_ground_truth_npy
from structvpr.data.place_dataset import DatasetError


def main(argv: list[str] | None = None) -> int:
    """Convert IN.npy (unpickled: trusted files only) to OUT.npz; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m structvpr.data.layouts.convert_gt", description=__doc__.splitlines()[0]
    )
    parser.add_argument("npy", type=Path, help="trusted VPR-Bench ground_truth .npy (object array)")
    parser.add_argument("npz", type=Path, help="pickle-free .npz to write (positives_indptr, positives_indices)")
    args = parser.parse_args(argv)
    try:
        count = convert_ground_truth_npy(args.npy, args.npz)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.npz}: positives of {count} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
