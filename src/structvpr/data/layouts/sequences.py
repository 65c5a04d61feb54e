"""Frame-aligned sequences (Nordland): two folders with the same file names, one per traversal.

Frame i of the database is the i-th file name in sorted order; a query is the database frame with
the same file name (queries may be a subset, as in the VPR-Bench Nordland split). A query matches
the database frames within +/- T frames. Coordinates are pseudo-UTM: east = 0,
north = frame x 25 / 10.5 m, and the threshold is (T + 0.5) frame spacings, so that distance
positives are exactly the frames within +/- T.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from structvpr.data.layouts._common import (
    ReadOptions,
    printable_path,
    require_folder,
    require_nonempty,
    resolve_user_path,
)
from structvpr.data.listing import IMAGE_SUFFIXES, is_label_folder, list_images
from structvpr.data.place_dataset import DatasetError, PlaceDataset

FRAME_SPACING_M = 25.0 / 10.5
DEFAULT_FRAME_TOLERANCE = 10
# When neither folder is named by the user, the first of these names present is the database.
DATABASE_PREFERENCE = ("database", "db", "reference", "ref", "summer", "day", "fall", "spring")


def _image_folders(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not is_label_folder(p.name) and any(c.suffix.lower() in IMAGE_SUFFIXES for c in p.iterdir())
    )


def has_sequence_layout(root: Path) -> bool:
    """True when `root` has exactly two image folders that share most of their file names."""
    folders = _image_folders(root)
    if len(folders) != 2:
        return False
    names = [{p.name for p in folder.iterdir()} for folder in folders]
    smaller = min(len(names[0]), len(names[1]))
    return smaller > 0 and len(names[0] & names[1]) == smaller


def frame_threshold_m(frame_tolerance: int) -> float:
    """Distance threshold (m) whose positives are exactly the frames within +/- `frame_tolerance`."""
    return (frame_tolerance + 0.5) * FRAME_SPACING_M


def _choose_folders(root: Path, options: ReadOptions) -> tuple[Path, Path]:
    chosen_database = options.database_folder and require_folder(
        resolve_user_path(options.database_folder, root), "database"
    )
    chosen_query = options.query_folder and require_folder(resolve_user_path(options.query_folder, root), "query")
    if chosen_database and chosen_query:
        return chosen_database, chosen_query
    folders = _image_folders(root)
    if len(folders) != 2:
        raise DatasetError(
            f"{printable_path(root)}: a sequence dataset needs two image folders, found "
            f"{[f.name for f in folders]} (name them with --database-folder/--query-folder)"
        )
    chosen = chosen_database or chosen_query
    if chosen:
        other = next(f for f in folders if f.resolve() != chosen.resolve())
        return (chosen, other) if chosen_database else (other, chosen)
    by_name = {folder.name: folder for folder in folders}
    for name in DATABASE_PREFERENCE:
        if name in by_name:
            return by_name[name], next(f for f in folders if f.name != name)
    return folders[0], folders[1]


def read_sequence(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read two frame-aligned folders into a PlaceDataset with pseudo-UTM coordinates."""
    root = require_folder(Path(root), "dataset")
    database_folder, query_folder = _choose_folders(root, options)
    # Frame positions are positions in the sorted names: every file counts, none is skipped.
    database_paths = list_images(database_folder, "database", recursive=False)
    query_paths = list_images(query_folder, "query", recursive=False)
    require_nonempty(database_paths, "database", database_folder)
    require_nonempty(query_paths, "query", query_folder)
    frame_of_name = {path.name: frame for frame, path in enumerate(database_paths)}
    missing = [path for path in query_paths if path.name not in frame_of_name]
    if missing:
        raise DatasetError(
            f"{printable_path(missing[0])}: no database frame with this file name in "
            f"{printable_path(database_folder)} ({len(missing)} query names unmatched)"
        )
    database_frames = np.arange(len(database_paths), dtype=np.float64)
    query_frames = np.array([frame_of_name[path.name] for path in query_paths], dtype=np.float64)
    if options.frame_tolerance is not None:
        tolerance = int(options.frame_tolerance)
    elif options.threshold_m is not None:
        tolerance = math.floor(options.threshold_m / FRAME_SPACING_M)
    else:
        tolerance = DEFAULT_FRAME_TOLERANCE

    def pseudo_utm(frames: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros_like(frames), frames * FRAME_SPACING_M], axis=1)

    return PlaceDataset(
        name=options.name or root.name,
        split=split or f"{query_folder.name}->{database_folder.name}",
        root=root,
        database_paths=database_paths,
        query_paths=query_paths,
        database_coords=pseudo_utm(database_frames),
        query_coords=pseudo_utm(query_frames),
        threshold_m=frame_threshold_m(tolerance),
        extra={"layout": "sequence", "frame_tolerance": tolerance},
    )
