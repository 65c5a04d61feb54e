"""PlaceDataset: the one structure every dataset layout reader returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors


class DatasetError(ValueError):
    """A dataset on disk is missing, empty or malformed; the message names the file and problem."""


def printable_path(path: str | Path) -> str:
    """A path as text that can always be printed or written as UTF-8 (undecodable bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


@dataclass
class PlaceDataset:
    """Database and query images of one dataset split, with what is needed to find positives.

    Coordinates are UTM east/north in metres, float64 [N, 2]; frame-aligned sequences use the
    pseudo-UTM east = 0, north = frame * 25 / 10.5. When `ground_truth` is given (lists of
    positive database indices per query) it defines the positives and coordinates may be None.
    """

    name: str
    split: str
    root: Path
    database_paths: list[Path]
    query_paths: list[Path]
    database_coords: np.ndarray | None = None
    query_coords: np.ndarray | None = None
    threshold_m: float = 25.0
    ground_truth: list[np.ndarray] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.database_coords is not None:
            self.database_coords = np.asarray(self.database_coords, dtype=np.float64).reshape(-1, 2)
            if len(self.database_coords) != len(self.database_paths):
                raise DatasetError(
                    f"{self.root}: {len(self.database_paths)} database images but "
                    f"{len(self.database_coords)} database coordinates"
                )
        if self.query_coords is not None:
            self.query_coords = np.asarray(self.query_coords, dtype=np.float64).reshape(-1, 2)
            if len(self.query_coords) != len(self.query_paths):
                raise DatasetError(
                    f"{self.root}: {len(self.query_paths)} queries but {len(self.query_coords)} query coordinates"
                )
        if self.ground_truth is not None and len(self.ground_truth) != len(self.query_paths):
            raise DatasetError(
                f"{self.root}: ground truth has {len(self.ground_truth)} rows for {len(self.query_paths)} queries"
            )

    @property
    def num_database(self) -> int:
        """Number of database images."""
        return len(self.database_paths)

    @property
    def num_queries(self) -> int:
        """Number of query images."""
        return len(self.query_paths)

    @property
    def is_labelled(self) -> bool:
        """True when positives can be computed (coordinates or explicit ground truth)."""
        return self.ground_truth is not None or (self.database_coords is not None and self.query_coords is not None)

    def positives_per_query(self, threshold_m: float | None = None) -> list[np.ndarray]:
        """Sorted int64 database indices within `threshold_m` (default: the split's) of each query."""
        if self.ground_truth is not None:
            return [np.unique(np.asarray(row, dtype=np.int64)) for row in self.ground_truth]
        if not self.is_labelled:
            raise DatasetError(
                f"{printable_path(self.root)}: dataset {self.name} has no coordinates or ground truth; it can be "
                "searched but not evaluated. To evaluate, give positives: UTM file names (@east@north@...), "
                "a ground-truth file (--layout gt_list --ground-truth FILE), or two frame-aligned folders "
                "(--layout sequence); see docs/datasets.md"
            )
        radius = self.threshold_m if threshold_m is None else threshold_m
        if self.num_database == 0 or self.num_queries == 0:
            return [np.zeros(0, dtype=np.int64) for _ in range(self.num_queries)]
        finder = NearestNeighbors(n_jobs=1).fit(self.database_coords)
        _, indices = finder.radius_neighbors(self.query_coords, radius=radius, sort_results=True)
        return [np.sort(np.asarray(row, dtype=np.int64)) for row in indices]

    def summary(self) -> str:
        """One line naming dataset, split, counts and threshold."""
        if self.ground_truth is not None:
            threshold = self.extra.get("positives", "explicit ground truth")
        elif "frame_tolerance" in self.extra:
            threshold = f"threshold +/- {self.extra['frame_tolerance']} frames"
        else:
            threshold = f"threshold {self.threshold_m:g} m"
        return f"{self.name} {self.split}: {self.num_queries} queries, {self.num_database} database, {threshold}"
