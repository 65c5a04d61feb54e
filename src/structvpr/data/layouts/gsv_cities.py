"""GSV-Cities (the training set of MixVPR, BoQ, SALAD, OpenVPRLab, CricaVPR), read as it ships.

`<root>/Dataframes/<City>.csv` has one row per image with the columns `place_id, year, month,
northdeg, city_id, lat, lon, panoid`; the image is
`<root>/Images/<City>/<city_id>_<place_id, 7 digits>_<year, 4>_<month, 2>_<northdeg, 3>_<lat>_<lon>_<panoid>.jpg`
(`.JPG` also found). Place ids are unique within a city, so a place is `<City>/<place_id>`.

For training every image counts (`PlaceTrainingSet` takes the places from `extra`); for evaluation
the newest image (year, month) of each place with two or more images is its query and the other
images are the database; a query's positives are the database images of its place. Coordinates
are metres on a local equirectangular projection per city, cities 1e7 m apart (never positives).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structvpr.data.layouts._common import (
    ReadOptions,
    SkipLog,
    require_folder,
    require_nonempty,
)
from structvpr.data.place_dataset import DatasetError, PlaceDataset, printable_path

COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
IMAGE_SUFFIXES = (".jpg", ".JPG", ".jpeg", ".JPEG")
EARTH_RADIUS_M = 6_371_000.0
CITY_SPACING_M = 1e7
DATAFRAMES, IMAGES = "Dataframes", "Images"


@dataclass(frozen=True)
class GsvImage:
    """One row of a city dataframe, with the image it names."""

    city: str
    place_id: int
    year: int
    month: int
    lat: float
    lon: float
    path: Path
    source: str  # "<csv> line <n>", for messages

    @property
    def place(self) -> str:
        """Place key unique over all cities: '<City>/<place_id>'."""
        return f"{self.city}/{self.place_id}"


def has_gsv_cities_layout(root: Path) -> bool:
    """True when `root` has `Dataframes/*.csv` and an `Images/` folder."""
    return (root / IMAGES).is_dir() and any((root / DATAFRAMES).glob("*.csv"))


def available_cities(root: Path) -> list[str]:
    """City names (dataframe stems) under `root/Dataframes`, sorted."""
    return sorted(path.stem for path in (root / DATAFRAMES).glob("*.csv"))


def _integer(text: str, column: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{where}: column {column!r} holds {text!r}, not an integer") from None


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"{where}: column {column!r} holds {text!r}, not a finite number")
    return value


def image_stem(row: dict[str, str], where: str) -> tuple[str, int, int, int, float, float]:
    """(file stem, place_id, year, month, lat, lon) of one dataframe row, as GSV-Cities names files.

    The stem is `<city_id>_<place_id:07d>_<year:04d>_<month:02d>_<northdeg:03d>_<lat>_<lon>_<panoid>`
    with lat/lon written as Python writes the float (the way the dataframes are read upstream).
    """
    place_id = _integer(row["place_id"], "place_id", where)
    year = _integer(row["year"], "year", where)
    month = _integer(row["month"], "month", where)
    northdeg_text = row["northdeg"]
    try:
        northdeg = str(int(northdeg_text)).zfill(3)
    except ValueError:
        northdeg = str(_number(northdeg_text, "northdeg", where)).zfill(3)
    lat = _number(row["lat"], "lat", where)
    lon = _number(row["lon"], "lon", where)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise DatasetError(f"{where}: lat/lon ({lat}, {lon}) are not degrees on Earth")
    for column in ("city_id", "panoid"):
        if not row[column]:
            raise DatasetError(f"{where}: column {column!r} is empty")
    stem = (
        f"{row['city_id']}_{str(place_id).zfill(7)}_{str(year).zfill(4)}_{str(month).zfill(2)}_"
        f"{northdeg}_{lat}_{lon}_{row['panoid']}"
    )
    return stem, place_id, year, month, lat, lon


def _files_by_stem(folder: Path) -> dict[str, str]:
    """{stem: file name} of the JPEGs in one city folder (one listing instead of a stat per row)."""
    found: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix in IMAGE_SUFFIXES:
                found.setdefault(stem, entry.name)
    return found


def read_city(root: Path, city: str, skips: SkipLog, skip_missing: bool) -> list[GsvImage]:
    """Rows of `Dataframes/<city>.csv` whose images exist; DatasetError naming the file and line of
    the first malformed row or (unless `skip_missing`) of the first listed image that is missing."""
    csv_path = root / DATAFRAMES / f"{city}.csv"
    folder = require_folder(root / IMAGES / city, f"GSV-Cities images of {city!r}")
    on_disk = _files_by_stem(folder)
    images: list[GsvImage] = []
    missing: list[tuple[str, Path]] = []
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            absent = [name for name in COLUMNS if name not in header]
            if absent:
                raise DatasetError(f"{printable_path(csv_path)}: missing column(s) {absent}; found {header}")
            for fields in reader:
                where = f"{printable_path(csv_path)} line {reader.line_num}"
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise DatasetError(f"{where}: {len(fields)} fields, the header has {len(header)}")
                row = {name: value.strip() for name, value in zip(header, fields, strict=True)}
                stem, place_id, year, month, lat, lon = image_stem(row, where)
                name = on_disk.get(stem)
                if name is None:
                    missing.append((where, folder / f"{stem}.jpg"))
                    continue
                images.append(GsvImage(city, place_id, year, month, lat, lon, folder / name, where))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{printable_path(csv_path)}: not a readable CSV file ({error})") from error
    if missing and not skip_missing:
        where, path = missing[0]
        raise DatasetError(
            f"{where}: image {printable_path(path)} does not exist ({len(missing)} of "
            f"{len(missing) + len(images)} listed images missing; --on-bad-image skip leaves them out)"
        )
    for _, path in missing:
        skips.add("missing_image", path)
    return images


def _project(images: list[GsvImage], city_index: int) -> np.ndarray:
    """Metres [N, 2] on an equirectangular projection about the city's mean position."""
    if not images:
        return np.zeros((0, 2))
    lat = np.radians([image.lat for image in images])
    lon = np.radians([image.lon for image in images])
    east = EARTH_RADIUS_M * (lon - lon.mean()) * math.cos(float(lat.mean())) + city_index * CITY_SPACING_M
    north = EARTH_RADIUS_M * (lat - lat.mean())
    return np.stack([east, north], axis=1)


def _query_positions(images: list[GsvImage]) -> set[int]:
    """Index of the newest image (year, month, then path) of every place with two or more images."""
    by_place: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        by_place.setdefault(image.place, []).append(index)
    newest = set()
    for members in by_place.values():
        if len(members) >= 2:
            newest.add(max(members, key=lambda i: (images[i].year, images[i].month, str(images[i].path))))
    return newest


def read_gsv_cities(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read the chosen cities (`options.cities`, default all) of a GSV-Cities tree into a PlaceDataset."""
    root = require_folder(Path(root), "dataset")
    cities = list(options.cities or available_cities(root))
    if not cities:
        raise DatasetError(f"{printable_path(root / DATAFRAMES)}: no <City>.csv dataframes")
    unknown = [city for city in cities if not (root / DATAFRAMES / f"{city}.csv").is_file()]
    if unknown:
        raise DatasetError(
            f"{printable_path(root / DATAFRAMES)}: no dataframe for {unknown} (cities: {available_cities(root)})"
        )
    skips = SkipLog()
    images: list[GsvImage] = []
    coords = []
    for city_index, city in enumerate(cities):
        city_images = read_city(root, city, skips, skip_missing=options.on_bad_image == "skip")
        images += city_images
        coords.append(_project(city_images, city_index))
    seen: set[Path] = set()
    for image in images:
        if image.path in seen:
            raise DatasetError(f"{image.source}: image {printable_path(image.path)} is listed twice")
        seen.add(image.path)
    paths = [image.path for image in images]
    all_coords = np.concatenate(coords)
    queries = _query_positions(images)
    database_index = [i for i in range(len(images)) if i not in queries]
    query_index = sorted(queries)
    require_nonempty([paths[i] for i in database_index], "database", root / IMAGES)
    database_position = {images[i].place: [] for i in database_index}
    for position, i in enumerate(database_index):
        database_position[images[i].place].append(position)
    ground_truth = [np.asarray(database_position[images[i].place], dtype=np.int64) for i in query_index]
    label = split or (",".join(cities) if len(cities) <= 3 else f"{len(cities)} cities")
    return PlaceDataset(
        name=options.name or root.name,
        split=label,
        root=root,
        database_paths=[paths[i] for i in database_index],
        query_paths=[paths[i] for i in query_index],
        database_coords=all_coords[database_index],
        query_coords=all_coords[query_index],
        threshold_m=float(options.threshold_m or 25.0),
        ground_truth=ground_truth,
        extra={
            "layout": "gsv_cities",
            "positives": "positives: same place",
            "cities": cities,
            "database_places": [images[i].place for i in database_index],
            "query_places": [images[i].place for i in query_index],
            **skips.as_extra(),
        },
    )
