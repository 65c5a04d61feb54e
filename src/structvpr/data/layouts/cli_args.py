"""The dataset flags every command shares, and opening a dataset from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from structvpr.data.place_dataset import PlaceDataset


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --layout, --split, --threshold, folder, ground-truth, MSLS and bad-input flags."""
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "utm", "msls", "pitts", "gt_list", "sequence", "folder"],
        help="dataset layout on disk (default: detect it)",
    )
    group.add_argument(
        "--split",
        default=None,
        help="split: utm train/val/test, msls val-740/val-all/train/test, pitts .mat "
        "stem (pitts30k_test), or a name for gt_list/sequence datasets",
    )
    group.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="METRES",
        help="positive distance threshold (default: the dataset's own, else 25 m)",
    )
    group.add_argument("--database-folder", default=None, help="database folder name under the root")
    group.add_argument("--query-folder", default=None, help="query folder name under the root")
    group.add_argument(
        "--frame-tolerance",
        type=int,
        default=None,
        metavar="T",
        help="sequence layout: a query matches database frames within +/- T (default 10)",
    )
    group.add_argument("--ground-truth", default=None, help="gt_list layout: ground-truth .npy/.npz file")
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load ground-truth .npy object arrays (unpickling: trusted files only)",
    )
    group.add_argument(
        "--msls-queries",
        choices=["official", "all"],
        default=None,
        help="MSLS val queries: official 740 (default) or all non-panorama queries",
    )
    group.add_argument(
        "--on-bad-name",
        choices=["error", "skip"],
        default="error",
        help="files whose names carry no coordinates or are not UTF-8: fail or skip",
    )
    group.add_argument(
        "--on-bad-image",
        choices=["error", "skip"],
        default="error",
        help="'skip' decodes every image once and leaves out unreadable ones",
    )


def dataset_from_args(path: str | Path, args: argparse.Namespace) -> PlaceDataset:
    """open_dataset(path, ...) with the flags added by add_dataset_arguments."""
    from structvpr.data.layouts import open_dataset

    return open_dataset(
        path,
        layout=getattr(args, "layout", "auto"),
        split=getattr(args, "split", None),
        threshold_m=getattr(args, "threshold", None),
        database_folder=getattr(args, "database_folder", None),
        query_folder=getattr(args, "query_folder", None),
        frame_tolerance=getattr(args, "frame_tolerance", None),
        ground_truth=getattr(args, "ground_truth", None),
        allow_pickle=bool(getattr(args, "allow_pickle", False)),
        msls_queries=getattr(args, "msls_queries", None),
        on_bad_name=getattr(args, "on_bad_name", "error"),
        on_bad_image=getattr(args, "on_bad_image", "error"),
    )
