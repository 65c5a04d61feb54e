"""UTM folder layout: `<root>/images/<split>/{database,queries}/@east@north@...@.jpg`.

File names carry UTM coordinates: `name.split("@")[1:3]` are easting and northing in metres.
A `<folder>_images_paths.txt` beside a folder lists its images (paths relative to the folder)
so that huge folders need not be listed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from structvpr.data.layouts._common import (
    ReadOptions,
    SkipLog,
    filter_bad_names,
    path_inside,
    printable_path,
    require_existing,
    require_folder,
    require_nonempty,
    require_unique,
    resolve_user_path,
)
from structvpr.data.listing import list_images
from structvpr.data.place_dataset import DatasetError, PlaceDataset

DEFAULT_THRESHOLD_M = 25.0
SPLIT_PREFERENCE = ("test", "val", "train")


def utm_from_name(path: Path) -> tuple[float, float] | None:
    """(east, north) in metres from an `@east@north@...` file name, or None if it has none."""
    fields = path.name.split("@")
    if len(fields) < 3:
        return None
    try:
        east, north = float(fields[1]), float(fields[2])
    except ValueError:
        return None
    if not (np.isfinite(east) and np.isfinite(north)):
        return None
    return east, north


def find_split_folder(root: Path, split: str | None) -> tuple[Path, str]:
    """The folder holding `database/` and `queries/` for `split`, and the split's name.

    Accepts the dataset root (`<root>/images/<split>`), `<root>/<split>`, or the split folder itself.
    With no split given: test, then val, then train, whichever exists first.
    """
    if (root / "database").is_dir() and (root / "queries").is_dir() and split is None:
        return root, root.name
    images = root / "images" if (root / "images").is_dir() else root
    if split is not None:
        folder = images / split
        if not folder.is_dir():
            available = sorted(p.name for p in images.iterdir() if (p / "database").is_dir()) if images.is_dir() else []
            raise DatasetError(f"{printable_path(folder)}: split {split!r} does not exist (available: {available})")
        return folder, split
    for name in SPLIT_PREFERENCE:
        if (images / name / "database").is_dir():
            return images / name, name
    raise DatasetError(
        f"{printable_path(root)}: no images/<split>/database folder "
        "(expected the UTM layout <root>/images/{train,val,test}/{database,queries})"
    )


def has_utm_layout(root: Path) -> bool:
    """True for `<root>/images/<split>/{database,queries}`, or for `database/` + `queries/`
    folders whose first file names carry '@' coordinates (else they are an unlabelled folder)."""
    try:
        folder, _ = find_split_folder(root, None)
    except DatasetError:
        return False
    if not (folder / "queries").is_dir():
        return False
    if folder != root or folder.with_name("database_images_paths.txt").is_file():
        return True
    first_names = sorted(p.name for p in (folder / "database").iterdir())[:20]
    return any("@" in name for name in first_names)


def read_folder_paths(folder: Path, dataset_root: Path) -> tuple[list[Path], Path]:
    """Image paths of `folder` (from `<folder>_images_paths.txt` if present) and their source."""
    listing = folder.with_name(folder.name + "_images_paths.txt")
    if listing.is_file():
        lines = listing.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        paths = [
            path_inside(dataset_root, str(Path(folder.relative_to(dataset_root)) / line), listing)
            for line in lines
            if line.strip()
        ]
        require_unique(paths, listing)
        require_existing(paths, listing)
        return paths, listing
    return list_images(folder, folder.name), folder


def _coords_of(paths: list[Path], on_bad_name: str, skips: SkipLog, source: Path) -> tuple[list[Path], np.ndarray]:
    """Keep the paths whose names hold UTM coordinates; refuse or skip (counted) the others."""
    kept, coords = [], []
    for path in filter_bad_names(paths, on_bad_name, skips):
        utm = utm_from_name(path)
        if utm is None:
            if on_bad_name == "skip":
                skips.add("bad_name", path)
                continue
            raise DatasetError(
                f"{printable_path(path)}: file name has no '@east@north@' UTM fields "
                f"(in {printable_path(source)}; pass on_bad_name='skip' to leave it out)"
            )
        kept.append(path)
        coords.append(utm)
    return kept, np.asarray(coords, dtype=np.float64).reshape(-1, 2)


def _folder_of(typed: str | None, default_name: str, split_folder: Path) -> Path:
    """The folder the user typed (see resolve_user_path), else `split_folder/default_name`."""
    return resolve_user_path(typed, split_folder) if typed else split_folder / default_name


def _dataset_name(root: Path, split_folder: Path) -> str:
    """The dataset's folder name, also when `root` is the split folder `<name>/images/<split>`."""
    if split_folder != root or root.parent.name != "images":
        return root.name
    return root.parent.parent.name


def read_utm(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read a UTM folder layout split into a PlaceDataset (threshold 25 m unless overridden)."""
    root = Path(root)
    require_folder(root, "dataset")
    split_folder, split_name = find_split_folder(root, split)
    database_folder = require_folder(_folder_of(options.database_folder, "database", split_folder), "database")
    query_folder = require_folder(_folder_of(options.query_folder, "queries", split_folder), "query")
    skips = SkipLog()
    database_paths, database_source = read_folder_paths(database_folder, root)
    query_paths, query_source = read_folder_paths(query_folder, root)
    database_paths, database_coords = _coords_of(database_paths, options.on_bad_name, skips, database_source)
    query_paths, query_coords = _coords_of(query_paths, options.on_bad_name, skips, query_source)
    require_nonempty(database_paths, "database", database_source)
    require_nonempty(query_paths, "query", query_source)
    name = options.name or _dataset_name(root, split_folder)
    return PlaceDataset(
        name=name,
        split=split_name,
        root=root,
        database_paths=database_paths,
        query_paths=query_paths,
        database_coords=database_coords,
        query_coords=query_coords,
        threshold_m=float(options.threshold_m or DEFAULT_THRESHOLD_M),
        extra={"layout": "utm", **skips.as_extra()},
    )
