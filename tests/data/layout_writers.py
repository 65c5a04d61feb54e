"""Writers of tiny datasets in the real on-disk formats, shared by the layout tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (8, 6)) -> Path:
    """A small real image file (format from the suffix); `size` is (W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, (3 * value) % 256)).save(path)
    return path


def utm_name(east: float, north: float, note: str = "") -> str:
    """A file name of the UTM folder layout: @east@north@zone@letter@lat@lon@...@.jpg."""
    return f"@{east:.2f}@{north:.2f}@17@T@40.44@-79.99@pano{note}@@@@@@@{note}@.jpg"


def write_utm_split(
    root: Path, split: str, database_east_north: list[tuple[float, float]], query_east_north: list[tuple[float, float]]
) -> Path:
    """`<root>/images/<split>/{database,queries}/@e@n@...@.jpg`; returns the split folder."""
    folder = root / "images" / split
    for i, (east, north) in enumerate(database_east_north):
        write_image(folder / "database" / utm_name(east, north, f"d{i}"))
    for i, (east, north) in enumerate(query_east_north):
        write_image(folder / "queries" / utm_name(east, north, f"q{i}"))
    return folder


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """A csv with an unnamed leading index column, as pandas writes the MSLS files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", *header])
        for index, row in enumerate(rows):
            writer.writerow([index, *row])


def write_msls_side(side_folder: Path, entries: list[dict]) -> None:
    """One city's query or database folder: images + raw.csv, postprocessed.csv, subtask_index.csv.

    entries: dicts with key, east, north, pano (bool), all (bool: in the official subtask).
    """
    for entry in entries:
        write_image(side_folder / "images" / f"{entry['key']}.jpg")
    write_csv(
        side_folder / "raw.csv",
        ["key", "lon", "lat", "ca", "captured_at", "pano"],
        [[e["key"], 12.5, 55.6, 90.0, 1500000000000, e["pano"]] for e in entries],
    )
    write_csv(
        side_folder / "postprocessed.csv",
        [
            "key",
            "lon",
            "lat",
            "ca",
            "captured_at",
            "easting",
            "northing",
            "night",
            "control_panel",
            "view_direction",
            "unique_cluster",
        ],
        [
            [e["key"], 12.5, 55.6, 90.0, 1500000000000, e["east"], e["north"], False, False, "Forward", 0]
            for e in entries
        ],
    )
    write_csv(
        side_folder / "subtask_index.csv",
        ["key", "all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d"],
        [[e["key"], e["all"], False, False, False, False, False, False] for e in entries],
    )
    write_csv(
        side_folder / "seq_info.csv",
        ["key", "sequence_key", "frame_number"],
        [[e["key"], "seq0", i] for i, e in enumerate(entries)],
    )


def cell_array(names: list[str]) -> np.ndarray:
    """A MATLAB cell column of strings, as in the Pittsburgh dbStruct."""
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = name
    return cells


def write_pitts(
    root: Path,
    stem: str,
    database: list[tuple[str, float, float]],
    queries: list[tuple[str, float, float]],
    in_datasets_folder: bool = False,
    pos_dist_thr: float = 25.0,
) -> Path:
    """Images under `root` (database) and `root/queries_real`, plus a .mat dbStruct; returns the .mat."""
    for name, _, _ in database:
        write_image(root / name)
    for name, _, _ in queries:
        write_image(root / "queries_real" / name)
    mat_path = (root / "datasets" if in_datasets_folder else root) / f"{stem}.mat"
    mat_path.parent.mkdir(parents=True, exist_ok=True)
    db_struct = {
        "whichSet": stem.split("_")[1],
        "dataset": stem.split("_")[0],
        "dbImage": cell_array([n for n, _, _ in database]),
        "utmDb": np.array([[e for _, e, _ in database], [n for _, _, n in database]]),
        "qImage": cell_array([n for n, _, _ in queries]),
        "utmQ": np.array([[e for _, e, _ in queries], [n for _, _, n in queries]]),
        "numDb": len(database),
        "numQ": len(queries),
        "posDistThr": pos_dist_thr,
        "posDistSqThr": pos_dist_thr**2,
        "nonTrivPosDistSqThr": 100.0,
    }
    scipy.io.savemat(mat_path, {"dbStruct": db_struct})
    return mat_path


def write_gt_folders(
    root: Path, num_queries: int, num_database: int, query_folder: str = "query", database_folder: str = "ref"
) -> None:
    """`query/0000000.jpg`... and `ref/0000000.jpg`..., as in VPR-Bench datasets."""
    for i in range(num_queries):
        write_image(root / query_folder / f"{i:07d}.jpg", value=i)
    for i in range(num_database):
        write_image(root / database_folder / f"{i:07d}.jpg", value=200 - i)


def vpr_bench_ground_truth(rows: list[tuple[int, list[int]]]) -> np.ndarray:
    """Object array [N, 2] of rows [query_index, [positive indices]], as VPR-Bench stores it."""
    array = np.empty((len(rows), 2), dtype=object)
    for i, (query_index, positives) in enumerate(rows):
        array[i, 0] = query_index
        array[i, 1] = list(positives)
    return array


GSV_COLUMNS = ["place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid"]


def gsv_place_image(place_seed: int, image_seed: int, size: int = 64) -> Image.Image:
    """A place's own layout of coloured blocks, with per-image brightness, shift and noise
    (places are told apart by layout and colour; no two images of a place are identical)."""
    base = np.random.default_rng(place_seed).integers(0, 256, (4, 4, 3)).astype(np.float64)
    pattern = np.kron(base, np.ones((size // 4, size // 4, 1)))
    rng = np.random.default_rng(10_000 + image_seed)
    pattern = np.roll(pattern, int(rng.integers(-size // 16, size // 16 + 1)), axis=1) * rng.uniform(0.7, 1.1)
    pattern += rng.normal(0, 20, pattern.shape)
    return Image.fromarray(np.clip(pattern, 0, 255).astype(np.uint8))


def write_gsv_city(
    root: Path,
    city: str,
    city_id: str,
    places: dict[int, list[tuple[int, int]]],
    origin: tuple[float, float],
    suffix: str = ".jpg",
    seed: int = 0,
) -> list[Path]:
    """GSV-Cities as it ships: `Dataframes/<city>.csv` (columns GSV_COLUMNS) and
    `Images/<city>/<city_id>_<place_id:07d>_<year>_<month:02d>_<northdeg:03d>_<lat>_<lon>_<panoid><suffix>`.

    places: place_id -> [(year, month), ...] one entry per image; place p lies 150 m * p north of
    `origin` (lat, lon). Returns the image paths in csv order.
    """
    rows, paths = [], []
    for place_id, dates in places.items():
        for view, (year, month) in enumerate(dates):
            lat = round(origin[0] + place_id * 150.0 / 111_195.0 + view * 1e-5, 6)
            lon = round(origin[1] + view * 1e-5, 6)
            northdeg = (37 * view + 5) % 360
            panoid = f"pano{city_id}{place_id}x{view}_-Q"
            rows.append([place_id, year, month, northdeg, city_id, lat, lon, panoid])
            name = f"{city_id}_{place_id:07d}_{year:04d}_{month:02d}_{northdeg:03d}_{lat}_{lon}_{panoid}{suffix}"
            path = root / "Images" / city / name
            path.parent.mkdir(parents=True, exist_ok=True)
            gsv_place_image(seed * 1000 + place_id, seed * 1000 + place_id * 50 + view).save(path, format="JPEG")
            paths.append(path)
    (root / "Dataframes").mkdir(parents=True, exist_ok=True)
    with open(root / "Dataframes" / f"{city}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GSV_COLUMNS)
        writer.writerows(rows)
    return paths
