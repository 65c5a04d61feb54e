"""Place-labelled training images for metric learning (optionally with their label maps).

Places: a layout that knows them (GSV-Cities: `extra['database_places']` / `['query_places']`),
else a `metadata.csv` with a `place_id` column (the synthetic town writes one) defines them;
otherwise images are grouped from their coordinates on a square grid whose cells have side
radius / sqrt(2), so any two images of a place are at most `radius` (10 m) apart, i.e. true
training positives. Neighbouring cells are different places although they may be closer than the
non-negative radius; the batch sampler keeps such places out of the same batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from structvpr.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    find_bad_images,
    image_transform,
    load_rgb,
)
from structvpr.data.label_maps import load_label_map
from structvpr.data.layouts._common import printable_path, read_csv_rows
from structvpr.data.place_dataset import DatasetError, PlaceDataset

TRAINING_POSITIVE_RADIUS_M = 10.0
METADATA_FILE = "metadata.csv"
PATH_COLUMNS = ("path", "image_path", "relative_path", "file", "image", "filename")


def places_from_coordinates(coords: np.ndarray, radius_m: float = TRAINING_POSITIVE_RADIUS_M) -> np.ndarray:
    """Place label per image: int64 [N], contiguous from 0, from UTM coords float [N, 2] (metres).

    Images share a label when they fall in the same grid cell of side radius / sqrt(2): every pair
    inside a cell is at most `radius_m` apart.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(coords).all():
        raise ValueError("coordinates hold NaN or infinite values")
    cell = radius_m / math.sqrt(2.0)
    cells = np.floor(coords / cell).astype(np.int64)
    _, labels = np.unique(cells, axis=0, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


def place_centres(coords: np.ndarray, places: np.ndarray) -> np.ndarray:
    """Mean coordinate of each place: float64 [P, 2] for labels 0..P-1."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    count = int(places.max()) + 1 if len(places) else 0
    sums = np.zeros((count, 2))
    np.add.at(sums, places, coords)
    return sums / np.bincount(places, minlength=count)[:, None]


def read_place_metadata(csv_path: Path) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """`metadata.csv` -> ({relative path: place_id}, {relative path: (east, north)} if present)."""
    rows = read_csv_rows(csv_path, ["place_id"])
    if not rows:
        raise DatasetError(f"{printable_path(csv_path)}: no rows")
    path_column = next((c for c in PATH_COLUMNS if c in rows[0]), None)
    if path_column is None:
        raise DatasetError(f"{printable_path(csv_path)}: no image path column (one of {PATH_COLUMNS})")
    place_of, coords_of = {}, {}
    has_coords = "east" in rows[0] and "north" in rows[0]
    for row in rows:
        relative = Path(row[path_column].replace("\\", "/")).as_posix()
        if relative in place_of:
            raise DatasetError(f"{printable_path(csv_path)}: image {relative!r} listed twice")
        place_of[relative] = row["place_id"]
        if has_coords and row["east"] and row["north"]:
            coords_of[relative] = (float(row["east"]), float(row["north"]))
    return place_of, coords_of


class PlaceTrainingSet(Dataset):
    """Images with integer place labels; item = {'image', 'place', 'index'} (+ 'label_map').

    image: float32 [3, H, W] (the transform's output); place: int in [0, num_places);
    index: position in this set; label_map (with_labels=True): uint8 [H, W] trainIds.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        places: Sequence[int],
        *,
        image_size: Sequence[int] = (240, 320),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        with_labels: bool = False,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        centres: np.ndarray | None = None,
        on_bad_image: str = "error",
        max_side: int | None = None,
    ) -> None:
        """`paths` with one integer place label each (any ids; stored as 0..P-1 in `places`).

        centres: optional float [max id + 1, 2] metres, indexed by the given ids (for the sampler's
        place separation). on_bad_image='skip' decodes every image once and drops unreadable ones
        (listed in `skipped_bad_images`). max_side bounds decoding of large JPEGs (see load_rgb).
        """
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        paths = [Path(p) for p in paths]
        places = np.asarray(places, dtype=np.int64).reshape(-1)
        if len(paths) != len(places):
            raise ValueError(f"{len(paths)} paths but {len(places)} place labels")
        self.skipped_bad_images: list[str] = []
        if on_bad_image == "skip":
            bad = {error.path for error in find_bad_images(paths)}
            self.skipped_bad_images = [printable_path(p) for p in paths if p in bad]
            keep = np.array([p not in bad for p in paths], dtype=bool)
            paths, places = [p for p, k in zip(paths, keep, strict=False) if k], places[keep]
        if not paths:
            raise DatasetError("training set has no images")
        # Contiguous labels 0..P-1 so that losses with a class count work; keep the old ids.
        self.place_ids, self.places = np.unique(places, return_inverse=True)
        self.places = self.places.reshape(-1).astype(np.int64)
        self.paths = paths
        self.centres = None if centres is None else np.asarray(centres, np.float64)[self.place_ids]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.transform = transform or image_transform(self.image_size, mean, std)
        self.with_labels = with_labels
        self.max_side = max_side

    @property
    def num_places(self) -> int:
        """Number of distinct places."""
        return len(self.place_ids)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        item = {
            "image": self.transform(load_rgb(path, max_side=self.max_side)),
            "place": int(self.places[index]),
            "index": int(index),
        }
        if self.with_labels:
            item["label_map"] = load_label_map(path, self.image_size)
        return item

    @classmethod
    def from_coordinates(
        cls,
        paths: Sequence[str | Path],
        coords: np.ndarray,
        positive_radius_m: float = TRAINING_POSITIVE_RADIUS_M,
        **kwargs,
    ) -> PlaceTrainingSet:
        """Places from UTM coords float [N, 2] (m) on the radius/sqrt(2) grid; kwargs go to __init__."""
        places = places_from_coordinates(coords, positive_radius_m)
        return cls(paths, places, centres=place_centres(coords, places), **kwargs)

    @classmethod
    def from_place_dataset(
        cls,
        dataset: PlaceDataset,
        *,
        include_queries: bool = True,
        positive_radius_m: float = TRAINING_POSITIVE_RADIUS_M,
        metadata_csv: str | Path | None = None,
        **kwargs,
    ) -> PlaceTrainingSet:
        """Database (+ query) images of `dataset`, places from the layout (GSV-Cities), else
        `<root>/metadata.csv`, else coordinates."""
        paths = list(dataset.database_paths) + (list(dataset.query_paths) if include_queries else [])
        csv_path = Path(metadata_csv) if metadata_csv else dataset.root / METADATA_FILE
        if "database_places" in dataset.extra and metadata_csv is None:
            return cls._from_layout_places(dataset, paths, include_queries, **kwargs)
        if csv_path.is_file():
            return cls._from_metadata(paths, csv_path, dataset.root, **kwargs)
        if dataset.database_coords is None or (include_queries and dataset.query_coords is None):
            raise DatasetError(
                f"{printable_path(dataset.root)}: dataset {dataset.name} has no coordinates "
                f"and no {METADATA_FILE} with place_id: cannot form training places"
            )
        coords = [dataset.database_coords] + ([dataset.query_coords] if include_queries else [])
        return cls.from_coordinates(paths, np.concatenate(coords), positive_radius_m, **kwargs)

    @classmethod
    def _from_layout_places(
        cls, dataset: PlaceDataset, paths: list[Path], include_queries: bool, **kwargs
    ) -> PlaceTrainingSet:
        """Places named by the layout, one per image; centres from the coordinates when present."""
        names = list(dataset.extra["database_places"]) + (
            list(dataset.extra["query_places"]) if include_queries else []
        )
        _, places = np.unique(np.asarray(names), return_inverse=True)
        places = places.reshape(-1)
        coords = [dataset.database_coords] + ([dataset.query_coords] if include_queries else [])
        centres = None
        if all(part is not None for part in coords):
            centres = place_centres(np.concatenate([np.asarray(part) for part in coords]), places)
        return cls(paths, places, centres=centres, **kwargs)

    @classmethod
    def _from_metadata(cls, paths: list[Path], csv_path: Path, root: Path, **kwargs) -> PlaceTrainingSet:
        place_of, coords_of = read_place_metadata(csv_path)
        place_ids, coords = [], []
        for path in paths:
            relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            if relative not in place_of:
                raise DatasetError(f"{printable_path(csv_path)}: no place_id for image {printable_path(path)}")
            place_ids.append(place_of[relative])
            coords.append(coords_of.get(relative, (np.nan, np.nan)))
        _, places = np.unique(np.asarray(place_ids), return_inverse=True)
        places = places.reshape(-1)
        coords_array = np.asarray(coords, dtype=np.float64)
        centres = place_centres(coords_array, places) if np.isfinite(coords_array).all() else None
        return cls(paths, places, centres=centres, **kwargs)
