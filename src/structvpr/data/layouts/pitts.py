"""Pittsburgh `.mat` layout (pitts30k_{train,val,test}.mat, pitts250k_*.mat) read with scipy.io.

The file holds a `dbStruct` with whichSet, dbImage, utmDb [2, Nd], qImage, utmQ [2, Nq], numDb,
numQ, posDistThr, ... Database images are relative to the image root (000/ ... 010/), queries
relative to `<image root>/queries_real/`. The image root is the folder of the .mat or, for the
NetVLAD arrangement `<root>/datasets/*.mat`, its parent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from structvpr.data.layouts._common import (
    ReadOptions,
    path_inside,
    printable_path,
    require_existing,
    require_folder,
    require_nonempty,
    require_unique,
)
from structvpr.data.place_dataset import DatasetError, PlaceDataset

REQUIRED_FIELDS = ("dbImage", "utmDb", "qImage", "utmQ")
DEFAULT_THRESHOLD_M = 25.0
PREFERRED_SPLITS = ("pitts30k_test", "pitts250k_test", "pitts30k_val", "pitts250k_val")


def mat_files(root: Path) -> list[Path]:
    """The .mat files in `root` and `root/datasets`."""
    return sorted([*root.glob("*.mat"), *root.glob("datasets/*.mat")])


def find_mat_file(root: Path, split: str | None) -> Path:
    """The .mat file of `split` (its stem, e.g. 'pitts30k_test'), or the only/preferred one."""
    if root.is_file():
        return root
    candidates = mat_files(root)
    if split is not None:
        for path in candidates:
            if path.stem == split:
                return path
        raise DatasetError(f"{printable_path(root)}: no {split}.mat (found {[p.name for p in candidates]})")
    if len(candidates) == 1:
        return candidates[0]
    for preferred in PREFERRED_SPLITS:
        for path in candidates:
            if path.stem == preferred:
                return path
    raise DatasetError(f"{printable_path(root)}: choose a split among {[p.stem for p in candidates]} with --split")


def _names(value: object) -> list[str]:
    """A MATLAB cell array of strings (possibly squeezed to one string) -> list of str."""
    return [str(item).strip() for item in np.atleast_1d(np.asarray(value, dtype=object)).ravel()]


def _coords(value: object, count: int, mat_path: Path, field: str) -> np.ndarray:
    """utmDb/utmQ stored [2, N] (MATLAB convention) or [N, 2] -> float64 [N, 2]."""
    array = np.asarray(value, dtype=np.float64)
    if array.size != 2 * count:
        raise DatasetError(f"{printable_path(mat_path)}: dbStruct.{field} has {array.size} values for {count} images")
    if array.ndim == 2 and array.shape[0] == 2 and array.shape[1] == count:
        return array.T.copy()
    return array.reshape(count, 2)


def read_dbstruct(mat_path: Path) -> dict:
    """The `dbStruct` of a .mat file as a dict; DatasetError naming the file if absent or incomplete."""
    try:
        content = scipy.io.loadmat(mat_path, simplify_cells=True)
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DatasetError(
            f"{printable_path(mat_path)}: cannot read .mat file ({error}); MATLAB v7.3 "
            "files are HDF5 and need converting to v7"
        ) from error
    if "dbStruct" not in content or not isinstance(content["dbStruct"], dict):
        found = [key for key in content if not key.startswith("__")]
        raise DatasetError(f"{printable_path(mat_path)}: no dbStruct struct (variables: {found})")
    db_struct = content["dbStruct"]
    missing = [name for name in REQUIRED_FIELDS if name not in db_struct]
    if missing:
        raise DatasetError(f"{printable_path(mat_path)}: dbStruct lacks field(s) {missing}")
    return db_struct


def _image_root(mat_path: Path, first_database_image: str) -> Path:
    """The folder the dbImage paths are relative to: beside the .mat or one level up."""
    for folder in (mat_path.parent, mat_path.parent.parent):
        if (folder / first_database_image).is_file():
            return folder
    return mat_path.parent.parent if mat_path.parent.name == "datasets" else mat_path.parent


def read_pitts(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read a Pittsburgh .mat split into a PlaceDataset (threshold = posDistThr unless overridden)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{printable_path(root)}: dataset folder does not exist")
    mat_path = find_mat_file(root, split)
    db_struct = read_dbstruct(mat_path)
    database_names, query_names = _names(db_struct["dbImage"]), _names(db_struct["qImage"])
    require_nonempty(database_names, "database", mat_path)
    require_nonempty(query_names, "query", mat_path)
    for field, names in (("numDb", database_names), ("numQ", query_names)):
        if field in db_struct and int(np.asarray(db_struct[field]).item()) != len(names):
            raise DatasetError(
                f"{printable_path(mat_path)}: dbStruct.{field} = "
                f"{int(np.asarray(db_struct[field]).item())} but {len(names)} images listed"
            )
    image_root = _image_root(mat_path, database_names[0])
    query_root = require_folder(image_root / "queries_real", "queries_real")
    database_paths = [path_inside(image_root, name, mat_path) for name in database_names]
    query_paths = [path_inside(query_root, name, mat_path) for name in query_names]
    require_unique(database_paths, mat_path)
    require_unique(query_paths, mat_path)
    require_existing(database_paths + query_paths, mat_path)
    threshold = options.threshold_m or float(np.asarray(db_struct.get("posDistThr", DEFAULT_THRESHOLD_M)).item())
    stem = mat_path.stem
    name = options.name or (stem.split("_")[0] if "_" in stem else image_root.name)
    which = str(db_struct.get("whichSet", "")).strip()
    return PlaceDataset(
        name=name,
        split=stem if which == "" else f"{stem.split('_')[0]}-{which}",
        root=image_root,
        database_paths=database_paths,
        query_paths=query_paths,
        database_coords=_coords(db_struct["utmDb"], len(database_paths), mat_path, "utmDb"),
        query_coords=_coords(db_struct["utmQ"], len(query_paths), mat_path, "utmQ"),
        threshold_m=float(threshold),
        extra={"layout": "pitts", "mat_file": str(mat_path)},
    )
