"""`structvpr convert-gt IN.npy OUT.npz`: make a trusted VPR-Bench ground-truth object array
pickle-free, once, so that it never needs --allow-pickle again."""

from __future__ import annotations

import argparse
from pathlib import Path

from structvpr.commands import add_common_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `convert-gt` subcommand."""
    parser = subparsers.add_parser(
        "convert-gt",
        help="rewrite a trusted VPR-Bench ground-truth .npy (object array) as a pickle-free .npz",
        description="Unpickle IN.npy (run it only on files you trust) and write OUT.npz with "
        "positives_indptr and positives_indices, which the gt_list layout reads without unpickling.",
    )
    parser.add_argument("npy", type=Path, help="trusted VPR-Bench ground_truth .npy (object array)")
    parser.add_argument("npz", type=Path, help="pickle-free .npz to write (positives_indptr, positives_indices)")
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert IN.npy to OUT.npz; returns 0 (a DatasetError names the file otherwise)."""
    from structvpr.data.layouts import convert_ground_truth_npy

    count = convert_ground_truth_npy(args.npy, args.npz)
    print(f"wrote {args.npz}: positives of {count} queries")
    return 0
