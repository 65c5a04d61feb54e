"""The dataset flags of `evaluate` and `segment`, and opening a dataset from them.

Every path flag is typed relative to the working folder (see `structvpr.data.layouts.open_dataset`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from structvpr.data.layout_names import LAYOUT_NAMES, PNV_NAMES

if TYPE_CHECKING:
    from structvpr.data.place_dataset import PlaceDataset


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --layout, --split, --threshold, folder, ground-truth, city, MSLS and bad-input flags."""
    group = parser.add_argument_group("dataset")
    group.add_argument(
        "--layout",
        default="auto",
        choices=["auto", *LAYOUT_NAMES],
        help="dataset layout on disk (default: detect it)",
    )
    group.add_argument(
        "--split",
        default=None,
        help="split: utm train/val/test, msls val-740/val-all/train/test, pitts .mat "
        "stem (pitts30k_test), or a name for gt_list/sequence/gsv_cities datasets",
    )
    group.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="METRES",
        help="positive distance threshold (default: the dataset's own, else 25 m)",
    )
    group.add_argument(
        "--database-folder", default=None, help="database folder (a name under the dataset root, or a path)"
    )
    group.add_argument("--query-folder", default=None, help="query folder (a name under the dataset root, or a path)")
    group.add_argument(
        "--frame-tolerance",
        type=int,
        default=None,
        metavar="T",
        help="sequence layout: a query matches database frames within +/- T (default 10)",
    )
    group.add_argument(
        "--ground-truth",
        default=None,
        metavar="FILE",
        help="gt_list layout: ground-truth .npy/.npz file, relative to the working folder",
    )
    group.add_argument(
        "--pnv-name",
        default=None,
        metavar="NAME",
        help="gt_list layout: read Patch-NetVLAD's dataset_imagenames/NAME_imageNames_{index,query}.txt "
        f"and dataset_gt_files/ under their shipped names; NAME is one of {', '.join(PNV_NAMES)}",
    )
    group.add_argument(
        "--cities",
        default=None,
        metavar="A,B",
        help="msls and gsv_cities layouts: comma-separated cities to read (default: the split's)",
    )
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
        layout=args.layout,
        split=args.split,
        threshold_m=args.threshold,
        database_folder=args.database_folder,
        query_folder=args.query_folder,
        frame_tolerance=args.frame_tolerance,
        ground_truth=args.ground_truth,
        pnv_name=args.pnv_name,
        cities=args.cities,
        allow_pickle=bool(args.allow_pickle),
        msls_queries=args.msls_queries,
        on_bad_name=args.on_bad_name,
        on_bad_image=args.on_bad_image,
    )
