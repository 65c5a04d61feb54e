"""MSLS native layout: `<root>/train_val/<city>/{query,database}/images/<key>.jpg` + csv metadata.

Splits (the name says which queries are used):
- `val-740`: the official image-to-image validation set. As in mapillary_sls (`MSLS(mode='val',
  task='im2im', subtask='all')` used by its evaluate.py): cities cph + sf; queries and database
  images whose `all` flag is set in `subtask_index.csv`, minus panoramas (`pano` in raw.csv).
  The official count, 740 (cph 498 + sf 242), is the number of those queries with a database
  image within 25 m; the others stay in the dataset and evaluation leaves them out and counts them.
- `val-all`: cph + sf, every non-panorama query and database image (no subtask filter).
- `train`: the 22 training cities, every non-panorama image.
- `test`: the 6 test cities under `<root>/test/`, images listed by subtask_index.csv, no labels.
Coordinates come from `postprocessed.csv` (easting, northing). Cities use different UTM zones,
so each city's easting is shifted by city_index x 1e7 m: positives never cross cities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from structvpr.data.layouts._common import (
    ReadOptions,
    parse_bool,
    parse_float,
    path_inside,
    printable_path,
    read_csv_rows,
    require_existing,
    require_folder,
    require_nonempty,
)
from structvpr.data.place_dataset import DatasetError, PlaceDataset

DEFAULT_CITIES = {
    "train": (
        "trondheim",
        "london",
        "boston",
        "melbourne",
        "amsterdam",
        "helsinki",
        "tokyo",
        "toronto",
        "saopaulo",
        "moscow",
        "zurich",
        "paris",
        "bangkok",
        "budapest",
        "austin",
        "berlin",
        "ottawa",
        "phoenix",
        "goa",
        "amman",
        "nairobi",
        "manila",
    ),
    "val": ("cph", "sf"),
    "test": ("miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala"),
}
SPLITS = ("val-740", "val-all", "train", "test")
QUERY_CHOICE_TO_SPLIT = {"official": "val-740", "all": "val-all"}
CITY_EAST_OFFSET_M = 1.0e7
DEFAULT_THRESHOLD_M = 25.0


def has_msls_layout(root: Path) -> bool:
    """True when `root` holds `train_val/<city>/query` or `test/<city>/query` folders."""
    for top in ("train_val", "test"):
        folder = root / top
        if folder.is_dir() and any((city / "query").is_dir() for city in folder.iterdir()):
            return True
    return False


def resolve_split(split: str | None, msls_queries: str | None) -> str:
    """The MSLS split from `split` ('val' means the official 740) and/or `msls_queries`."""
    if msls_queries is not None and msls_queries not in QUERY_CHOICE_TO_SPLIT:
        raise ValueError(f"msls_queries must be 'official' or 'all', got {msls_queries!r}")
    if split in (None, "val"):
        return QUERY_CHOICE_TO_SPLIT[msls_queries or "official"]
    if split not in SPLITS:
        raise DatasetError(f"unknown MSLS split {split!r}; choose one of {SPLITS}")
    if msls_queries is not None and split.startswith("val") and QUERY_CHOICE_TO_SPLIT[msls_queries] != split:
        raise ValueError(f"split {split!r} contradicts msls_queries={msls_queries!r}")
    return split


def _keys_with_flag(path: Path, column: str) -> set[str]:
    """Keys whose boolean `column` is true in a csv with a `key` column."""
    rows = read_csv_rows(path, ["key", column])
    return {row["key"] for row in rows if parse_bool(row[column], path, column)}


def _read_side(
    root: Path, side_folder: Path, subtask_filter: bool, labelled: bool
) -> tuple[list[Path], np.ndarray | None]:
    """Images and UTM coordinates of one city's query or database folder, in postprocessed order."""
    images = require_folder(side_folder / "images", "images")
    if not labelled:
        subtask_csv = side_folder / "subtask_index.csv"
        keys = [
            row["key"]
            for row in read_csv_rows(subtask_csv, ["key", "all"])
            if parse_bool(row["all"], subtask_csv, "all")
        ]
        paths = [path_inside(root, str((images / f"{key}.jpg").relative_to(root)), subtask_csv) for key in keys]
        return paths, None
    post_csv, raw_csv = side_folder / "postprocessed.csv", side_folder / "raw.csv"
    post_rows = read_csv_rows(post_csv, ["key", "easting", "northing"])
    raw_rows = read_csv_rows(raw_csv, ["key", "pano"])
    pano = {row["key"]: parse_bool(row["pano"], raw_csv, "pano") for row in raw_rows}
    wanted = _keys_with_flag(side_folder / "subtask_index.csv", "all") if subtask_filter else None
    paths, coords, seen = [], [], set()
    for row in post_rows:
        key = row["key"]
        if key in seen:
            raise DatasetError(f"{printable_path(post_csv)}: duplicate key {key!r}")
        seen.add(key)
        if key not in pano:
            raise DatasetError(f"{printable_path(raw_csv)}: no row for key {key!r} of {printable_path(post_csv)}")
        if pano[key] or (wanted is not None and key not in wanted):
            continue
        paths.append(path_inside(root, str((images / f"{key}.jpg").relative_to(root)), post_csv))
        coords.append(
            (parse_float(row["easting"], post_csv, "easting"), parse_float(row["northing"], post_csv, "northing"))
        )
    require_existing(paths, post_csv)
    return paths, np.asarray(coords, dtype=np.float64).reshape(-1, 2)


def read_msls(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read an MSLS split (default `val-740`) into a PlaceDataset; threshold 25 m unless overridden."""
    root = Path(root)
    split = resolve_split(split, options.msls_queries)
    group = split.split("-")[0]
    top = require_folder(root / ("test" if group == "test" else "train_val"), "MSLS")
    cities = list(options.cities or DEFAULT_CITIES[group])
    labelled = group != "test"
    database_paths: list[Path] = []
    query_paths: list[Path] = []
    database_coords, query_coords, city_of_query = [], [], []
    for city in cities:  # all missing-city errors before any csv is read
        require_folder(top / city, f"MSLS city {city!r}")
    for city_index, city in enumerate(cities):
        city_folder = top / city
        subtask_filter = split == "val-740"
        queries, q_coords = _read_side(root, city_folder / "query", subtask_filter, labelled)
        database, db_coords = _read_side(root, city_folder / "database", subtask_filter, labelled)
        query_paths += queries
        database_paths += database
        city_of_query += [city] * len(queries)
        if labelled:
            shift = np.array([city_index * CITY_EAST_OFFSET_M, 0.0])
            query_coords.append(q_coords + shift)
            database_coords.append(db_coords + shift)
    require_nonempty(database_paths, "database", top)
    require_nonempty(query_paths, "query", top)
    return PlaceDataset(
        name=options.name or "msls",
        split=split,
        root=root,
        database_paths=database_paths,
        query_paths=query_paths,
        database_coords=np.concatenate(database_coords) if labelled else None,
        query_coords=np.concatenate(query_coords) if labelled else None,
        threshold_m=float(options.threshold_m or DEFAULT_THRESHOLD_M),
        extra={
            "layout": "msls",
            "cities": cities,
            "city_of_query": city_of_query,
            "city_east_offset_m": CITY_EAST_OFFSET_M,
        },
    )
