"""Dataset layouts on disk -> PlaceDataset: one reader per layout, `open_dataset` picks one.

Layouts: `utm` (images/<split>/{database,queries} with @east@north@ names), `msls` (MSLS native),
`pitts` (Pittsburgh .mat dbStruct), `gt_list` (query/ref folders + ground-truth .npy/.npz, or
Patch-NetVLAD's lists), `sequence` (two frame-aligned folders, Nordland), `gsv_cities`
(GSV-Cities dataframes + images), `folder` (unlabelled images, retrieval only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from structvpr.data.images import find_bad_images
from structvpr.data.layout_names import COMMON_OPTIONS, LAYOUT_OPTIONS, PNV_NAMES
from structvpr.data.layouts._common import ReadOptions, SkipLog, printable_path
from structvpr.data.layouts.folder import read_folder
from structvpr.data.layouts.gsv_cities import has_gsv_cities_layout, read_gsv_cities
from structvpr.data.layouts.gt_lists import (
    convert_ground_truth_npy,
    has_gt_list_layout,
    read_gt_list,
)
from structvpr.data.layouts.msls import has_msls_layout, read_msls
from structvpr.data.layouts.pitts import mat_files, read_pitts
from structvpr.data.layouts.sequences import has_sequence_layout, read_sequence
from structvpr.data.layouts.utm import has_utm_layout, read_utm
from structvpr.data.place_dataset import DatasetError, PlaceDataset

__all__ = [
    "LAYOUTS",
    "LAYOUT_OPTIONS",
    "PNV_NAMES",
    "ReadOptions",
    "check_layout_options",
    "convert_ground_truth_npy",
    "detect_layout",
    "drop_bad_images",
    "open_dataset",
    "skipped_summary",
]

Reader = Callable[[Path, "str | None", ReadOptions], PlaceDataset]
LAYOUTS: dict[str, Reader] = {
    "utm": read_utm,
    "msls": read_msls,
    "pitts": read_pitts,
    "gt_list": read_gt_list,
    "sequence": read_sequence,
    "gsv_cities": read_gsv_cities,
    "folder": read_folder,
}


def check_layout_options(layout: str, options: Mapping[str, object]) -> None:
    """ValueError naming an option that `layout` ('auto': any layout) does not read.

    Options left at their default (None, False, 'error') are accepted for every layout.
    """
    known = {field.name for field in dataclasses.fields(ReadOptions)}
    defaults = {field.name: field.default for field in dataclasses.fields(ReadOptions)}
    for option, value in options.items():
        if option not in known:
            raise ValueError(f"unknown dataset option {option!r}; known: {sorted(known)}")
        if layout == "auto" or option in COMMON_OPTIONS or value == defaults[option]:
            continue
        if layout in LAYOUT_OPTIONS and option not in LAYOUT_OPTIONS[layout]:
            usable = sorted([*COMMON_OPTIONS, *LAYOUT_OPTIONS[layout]])
            raise ValueError(f"dataset option {option!r} does not apply to layout {layout!r} (its options: {usable})")


def detect_layout(path: str | Path) -> str:
    """Name of the layout of the dataset at `path` (see LAYOUTS); checks the most specific first."""
    root = Path(path)
    if root.is_file():
        if root.suffix == ".mat":
            return "pitts"
        raise DatasetError(f"{printable_path(root)}: a dataset is a folder (or a Pittsburgh .mat file)")
    if not root.is_dir():
        raise DatasetError(f"{printable_path(root)}: dataset folder does not exist")
    if mat_files(root):
        return "pitts"
    if has_msls_layout(root):
        return "msls"
    if has_utm_layout(root):
        return "utm"
    if has_gsv_cities_layout(root):
        return "gsv_cities"
    if has_gt_list_layout(root):
        return "gt_list"
    if has_sequence_layout(root):
        return "sequence"
    return "folder"


def _remap_ground_truth(
    ground_truth: list[np.ndarray], keep_database: np.ndarray, keep_queries: np.ndarray
) -> list[np.ndarray]:
    """Positives of the kept queries, as indices into the kept database images."""
    new_index = np.cumsum(keep_database) - 1
    rows = []
    for row, kept in zip(ground_truth, keep_queries, strict=True):
        if kept:
            row = np.asarray(row, dtype=np.int64)
            rows.append(new_index[row[keep_database[row]]])
    return rows


def drop_bad_images(dataset: PlaceDataset) -> PlaceDataset:
    """Decode every image once and leave out those that fail, remapping coordinates and positives.

    The count lands in `dataset.extra['skipped']['bad_image']`. Cost: one decode per image.
    """
    skips = SkipLog()
    skips.counts.update(dataset.extra.get("skipped", {}))
    skips.examples.update({k: list(v) for k, v in dataset.extra.get("skipped_examples", {}).items()})
    bad = set()
    for error in find_bad_images(dataset.database_paths + dataset.query_paths):
        bad.add(error.path)
        skips.add("bad_image", error.path)
    keep_db = np.array([p not in bad for p in dataset.database_paths], dtype=bool)
    keep_q = np.array([p not in bad for p in dataset.query_paths], dtype=bool)
    extra = {**dataset.extra, **skips.as_extra()}
    for key, keep in (("city_of_query", keep_q), ("query_places", keep_q), ("database_places", keep_db)):
        if key in extra:  # one entry per query (MSLS, GSV-Cities) or per database image (GSV-Cities)
            extra[key] = [value for value, kept in zip(extra[key], keep, strict=True) if kept]
    if not keep_db.any() or (len(keep_q) and not keep_q.any()):
        raise DatasetError(
            f"{printable_path(dataset.root)}: no readable database or query images "
            f"left after skipping {len(bad)} unreadable ones, "
            f"e.g. {skips.examples['bad_image'][0]}"
        )
    return dataclasses.replace(
        dataset,
        database_paths=[p for p, k in zip(dataset.database_paths, keep_db, strict=True) if k],
        query_paths=[p for p, k in zip(dataset.query_paths, keep_q, strict=True) if k],
        database_coords=None if dataset.database_coords is None else dataset.database_coords[keep_db],
        query_coords=None if dataset.query_coords is None else dataset.query_coords[keep_q],
        ground_truth=None
        if dataset.ground_truth is None
        else _remap_ground_truth(dataset.ground_truth, keep_db, keep_q),
        extra=extra,
    )


def skipped_summary(dataset: PlaceDataset) -> str:
    """'' or e.g. 'skipped 3 files: 2 bad_name, 1 bad_image' for printing beside `summary()`."""
    counts = dataset.extra.get("skipped", {})
    total = sum(counts.values())
    if not total:
        return ""
    return f"skipped {total} files: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def open_dataset(path: str | Path, layout: str = "auto", split: str | None = None, **options: object) -> PlaceDataset:
    """Open the dataset at `path` in `layout` ('auto' detects it) and return a PlaceDataset.

    Options (all optional): threshold_m (m), database_folder, query_folder, frame_tolerance (frames),
    ground_truth (file), pnv_name (Patch-NetVLAD lists: one of PNV_NAMES), allow_pickle (trusted
    .npy object arrays), msls_queries ('official'|'all'), cities (MSLS, GSV-Cities), on_bad_name
    ('error'|'skip'), on_bad_image ('error'|'skip': decode every image and leave out those that
    fail), name. Paths (folders, ground_truth) are relative to the working folder; a relative one
    that is not there is looked up under the dataset root. An option the layout does not read is a
    ValueError (LAYOUT_OPTIONS). Errors are DatasetError naming the file and the problem.
    """
    check_layout_options("auto", options)
    read_options = ReadOptions(**options)  # type: ignore[arg-type]
    if layout == "auto":
        layout = detect_layout(path)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)} or 'auto'")
    check_layout_options(layout, options)
    dataset = LAYOUTS[layout](Path(path), split, read_options)
    if read_options.on_bad_image == "skip":
        dataset = drop_bad_images(dataset)
    return dataset
