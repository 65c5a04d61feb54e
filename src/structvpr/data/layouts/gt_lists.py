"""Ground-truth list layout: a query folder, a database folder and a file of positives.

Ground-truth files:
- `.npy` object array, VPR-Bench style: rows `[query_index, [positive database indices]]`
  (or one list of positives per query). Object arrays are pickles, so they load only with
  `allow_pickle=True` (trusted files); `convert_ground_truth_npy` writes a pickle-free `.npz`.
- `.npy` bool matrix [Nq, Nd] (True = positive).
- `.npz` with `utmQ` [Nq, 2], `utmDb` [Nd, 2] and optional `posDistThr` (positives by distance), or
  with `positives_indptr` [Nq + 1] and `positives_indices` (CSR lists, as written by the converter).
Image order: `qImage`/`dbImage` string arrays in the .npz, else `query_images.txt` /
`database_images.txt` beside the ground-truth file (one path per line, relative to the query or
database folder), else the sorted file names of each folder.

Patch-NetVLAD's files are read under their shipped names (`pnv_name`, or detected from the
ground-truth file's name): `dataset_gt_files/<gt>.npz` (utmQ, utmDb, posDistThr) and
`dataset_imagenames/<name>_imageNames_{index,query}.txt` (index = database; one `./`-prefixed path
per line, relative to the dataset root). The lists are looked for beside the ground-truth file's
folder, then under the dataset root. Nordland's coordinates there are frame numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structvpr.data.layout_names import PNV_GROUND_TRUTH, PNV_NAMES
from structvpr.data.layouts._common import (
    ReadOptions,
    find_subfolder,
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
from structvpr.io_utils import atomic_write

DATABASE_FOLDERS = ("ref", "reference", "database", "db", "map")
PNV_GT_FOLDER, PNV_LIST_FOLDER = "dataset_gt_files", "dataset_imagenames"
PNV_FRAME_DATASETS = ("nordland",)  # coordinates are frame numbers, the threshold is in frames
QUERY_FOLDERS = ("query", "queries", "qry")
DEFAULT_THRESHOLD_M = 25.0


def ground_truth_files(root: Path) -> list[Path]:
    """.npy/.npz files directly in `root`."""
    return sorted([*root.glob("*.npy"), *root.glob("*.npz")])


def find_ground_truth(root: Path, chosen: str | None) -> Path:
    """The ground-truth file named by the user (see resolve_user_path), else the only (or
    `ground_truth*`) one in root."""
    if chosen:
        path = resolve_user_path(chosen, root)
        if not path.is_file():
            raise DatasetError(f"{printable_path(path)}: ground-truth file does not exist")
        return path
    candidates = ground_truth_files(root)
    preferred = [p for p in candidates if p.stem.startswith(("ground_truth", "gt"))]
    if len(candidates) == 1 or len(preferred) == 1:
        return (preferred or candidates)[0]
    raise DatasetError(
        f"{printable_path(root)}: name the ground-truth file with --ground-truth (found {[p.name for p in candidates]})"
    )


def has_gt_list_layout(root: Path) -> bool:
    """True when `root` has a ground-truth .npy/.npz and a query folder, or Patch-NetVLAD's
    `dataset_gt_files/` and `dataset_imagenames/` folders."""
    if (root / PNV_GT_FOLDER).is_dir() and (root / PNV_LIST_FOLDER).is_dir():
        return True
    return bool(ground_truth_files(root)) and any((root / name).is_dir() for name in QUERY_FOLDERS)


@dataclass
class PnvFiles:
    """Patch-NetVLAD's files for one dataset: ground truth and the two image lists."""

    name: str
    ground_truth: Path
    index_list: Path
    query_list: Path


def _pnv_name(root: Path, ground_truth: Path | None) -> str | None:
    """The Patch-NetVLAD name of a ground-truth file, or of the one file in root/dataset_gt_files."""
    if ground_truth is not None:
        return next((name for name, stem in PNV_GROUND_TRUTH.items() if ground_truth.stem == stem), None)
    folder = root / PNV_GT_FOLDER
    names = [name for name, stem in PNV_GROUND_TRUTH.items() if (folder / f"{stem}.npz").is_file()]
    if len(names) > 1:
        raise DatasetError(f"{printable_path(folder)}: ground truth of {names}; choose one with --pnv-name")
    return names[0] if names else None


def find_pnv_files(root: Path, options: ReadOptions) -> PnvFiles | None:
    """Patch-NetVLAD's files named by `options.pnv_name` or detected; None when this is not such a tree."""
    ground_truth = resolve_user_path(options.ground_truth, root) if options.ground_truth else None
    name = options.pnv_name or _pnv_name(root, ground_truth)
    if name is None:
        return None
    if name not in PNV_GROUND_TRUTH:
        raise DatasetError(f"unknown Patch-NetVLAD dataset name {name!r}; choose one of {list(PNV_NAMES)}")
    if ground_truth is None:
        ground_truth = root / PNV_GT_FOLDER / f"{PNV_GROUND_TRUTH[name]}.npz"
    list_folders = list(dict.fromkeys([ground_truth.parent.parent / PNV_LIST_FOLDER, root / PNV_LIST_FOLDER]))
    for folder in list_folders:
        index_list, query_list = (folder / f"{name}_imageNames_{kind}.txt" for kind in ("index", "query"))
        if index_list.is_file() and query_list.is_file():
            break
    else:
        if not options.pnv_name:
            return None  # a ground-truth file that merely shares a name: not a Patch-NetVLAD tree
        raise DatasetError(
            f"{printable_path(list_folders[-1])}: no Patch-NetVLAD image lists {name}_imageNames_index.txt "
            f"and {name}_imageNames_query.txt (looked in {[printable_path(f) for f in list_folders]})"
        )
    if not ground_truth.is_file():
        hint = (
            "; Patch-NetVLAD ships none for the MSLS cities: pass --ground-truth FILE (utmQ, utmDb, "
            "posDistThr) or read MSLS with --layout msls"
            if name.startswith("mapillary")
            else ""
        )
        raise DatasetError(f"{printable_path(ground_truth)}: Patch-NetVLAD ground-truth file does not exist{hint}")
    return PnvFiles(name, ground_truth, index_list, query_list)


def _listed_paths(listing: Path, root: Path) -> list[Path]:
    """The paths of a list file (one per line, relative to `root`), unique and on disk."""
    lines = listing.read_text(encoding="utf-8").splitlines()
    paths = [path_inside(root, line, listing) for line in lines if line.strip()]
    require_unique(paths, listing)
    require_existing(paths, listing)
    return paths


def _pickle_refusal(path: Path) -> DatasetError:
    return DatasetError(
        f"{printable_path(path)}: ground truth is a NumPy object array, which loads only by unpickling "
        "(it can run code). If you trust the file pass allow_pickle=True (--allow-pickle), or convert "
        "it once to a safe .npz: structvpr convert-gt "
        f"{path} {path.with_suffix('.npz')}"
    )


def load_ground_truth_npy(path: Path, allow_pickle: bool) -> np.ndarray:
    """np.load of a ground-truth .npy, refusing object arrays unless `allow_pickle`."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        # np.load would try to unpickle anything else: refuse before that, whatever allow_pickle says.
        raise DatasetError(f"{printable_path(path)}: not a NumPy .npy file (no NUMPY header)")
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _pickle_refusal(path) from None
        raise DatasetError(f"{printable_path(path)}: not a NumPy .npy file ({error})") from error
    except (OSError, EOFError) as error:
        raise DatasetError(f"{printable_path(path)}: not a NumPy .npy file ({error})") from error


def positives_from_array(array: np.ndarray, num_queries: int, source: Path) -> list[np.ndarray]:
    """Positives per query from a VPR-Bench object array or a bool [Nq, Nd] matrix."""
    if array.dtype == bool and array.ndim == 2:
        if array.shape[0] != num_queries:
            raise DatasetError(f"{printable_path(source)}: {array.shape[0]} rows for {num_queries} queries")
        return [np.flatnonzero(row).astype(np.int64) for row in array]
    if array.dtype != object:
        raise DatasetError(
            f"{printable_path(source)}: expected [query_index, [positives]] rows or a "
            f"bool [queries, database] matrix, got {array.dtype} {array.shape}"
        )
    positives: list[np.ndarray | None] = [None] * num_queries
    paired = array.ndim == 2 and array.shape[1] == 2
    for row_index, row in enumerate(array):
        query_index, row_positives = (int(row[0]), row[1]) if paired else (row_index, row)
        if not 0 <= query_index < num_queries:
            raise DatasetError(
                f"{printable_path(source)}: row {row_index} names query {query_index}, "
                f"but there are {num_queries} queries"
            )
        if positives[query_index] is not None:
            raise DatasetError(f"{printable_path(source)}: query {query_index} appears twice")
        positives[query_index] = np.asarray(row_positives, dtype=np.int64).ravel()
    return [np.zeros(0, np.int64) if row is None else row for row in positives]


def _image_list(gt_path: Path, folder: Path, names: np.ndarray | None, kind: str) -> list[Path]:
    """Image paths of one side, in ground-truth order (see the module docstring)."""
    listing = gt_path.with_name(f"{kind}_images.txt")
    if names is not None:
        paths, source = [path_inside(folder, str(name), gt_path) for name in names], gt_path
    elif listing.is_file():
        return _listed_paths(listing, folder)
    else:
        # Ground-truth indices are positions in this sorted listing: nothing may be skipped.
        return list_images(folder, kind, recursive=False)
    require_unique(paths, source)
    require_existing(paths, source)
    return paths


@dataclass
class _GroundTruthFile:
    """What a ground-truth file holds: explicit positives or coordinates, maybe image names."""

    path: Path
    rows: np.ndarray | None = None  # .npy: VPR-Bench rows or bool matrix
    csr: tuple[np.ndarray, np.ndarray] | None = None  # .npz: (indptr, indices)
    utm_query: np.ndarray | None = None
    utm_database: np.ndarray | None = None
    threshold_m: float | None = None
    query_names: np.ndarray | None = None
    database_names: np.ndarray | None = None

    def positives(self, num_queries: int, num_database: int) -> list[np.ndarray] | None:
        """Explicit positives per query (None when positives come from coordinates)."""
        if self.rows is not None:
            positives = positives_from_array(self.rows, num_queries, self.path)
        elif self.csr is not None:
            indptr, indices = self.csr
            if len(indptr) != num_queries + 1:
                raise DatasetError(
                    f"{printable_path(self.path)}: positives_indptr has {len(indptr)} "
                    f"entries for {num_queries} queries (expected queries + 1)"
                )
            positives = [np.asarray(indices[indptr[i] : indptr[i + 1]], dtype=np.int64) for i in range(num_queries)]
        else:
            return None
        for query_index, row in enumerate(positives):
            if row.size and (row.min() < 0 or row.max() >= num_database):
                raise DatasetError(
                    f"{printable_path(self.path)}: query {query_index} lists database index "
                    f"{int(row.max())}, but there are {num_database} database images"
                )
        return positives


def _read_ground_truth_file(path: Path, allow_pickle: bool) -> _GroundTruthFile:
    if path.suffix != ".npz":
        return _GroundTruthFile(path, rows=load_ground_truth_npy(path, allow_pickle))
    try:
        content = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DatasetError(f"{printable_path(path)}: not a readable .npz file ({error})") from error
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise DatasetError(f"{printable_path(path)}: not an .npz archive")
    with content:
        arrays = {key: content[key] for key in content.files}
    found = _GroundTruthFile(path, query_names=arrays.get("qImage"), database_names=arrays.get("dbImage"))
    if "utmQ" in arrays and "utmDb" in arrays:
        found.utm_query, found.utm_database = arrays["utmQ"], arrays["utmDb"]
        if "posDistThr" in arrays:
            found.threshold_m = float(np.asarray(arrays["posDistThr"]).item())
    elif "positives_indptr" in arrays and "positives_indices" in arrays:
        found.csr = (arrays["positives_indptr"], arrays["positives_indices"])
    else:
        raise DatasetError(
            f"{printable_path(path)}: expected arrays utmQ + utmDb (+ posDistThr) "
            f"or positives_indptr + positives_indices, found {sorted(arrays)}"
        )
    return found


def read_gt_list(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read query/database folders (or Patch-NetVLAD lists) with a ground-truth file into a PlaceDataset."""
    root = require_folder(Path(root), "dataset")
    pnv = find_pnv_files(root, options)
    if pnv is not None:
        gt_path = pnv.ground_truth
        ground_truth_file = _read_ground_truth_file(gt_path, options.allow_pickle)
        database_paths = _listed_paths(pnv.index_list, root)
        query_paths = _listed_paths(pnv.query_list, root)
        name, split_name = pnv.name, split or gt_path.stem
    else:
        gt_path = find_ground_truth(root, options.ground_truth)
        database_folder = find_subfolder(root, DATABASE_FOLDERS, options.database_folder, "database")
        query_folder = find_subfolder(root, QUERY_FOLDERS, options.query_folder, "query")
        ground_truth_file = _read_ground_truth_file(gt_path, options.allow_pickle)
        database_paths = _image_list(gt_path, database_folder, ground_truth_file.database_names, "database")
        query_paths = _image_list(gt_path, query_folder, ground_truth_file.query_names, "query")
        require_nonempty(database_paths, "database", database_folder)
        require_nonempty(query_paths, "query", query_folder)
        name, split_name = root.name, split or f"{query_folder.name}->{database_folder.name}"
    threshold = options.threshold_m or ground_truth_file.threshold_m or DEFAULT_THRESHOLD_M
    extra: dict = {"layout": "gt_list", "ground_truth_file": str(gt_path)}
    if pnv is not None and pnv.name in PNV_FRAME_DATASETS:
        extra["frame_tolerance"] = int(threshold)
    try:
        return PlaceDataset(
            name=options.name or name,
            split=split_name,
            root=root,
            database_paths=database_paths,
            query_paths=query_paths,
            database_coords=ground_truth_file.utm_database,
            query_coords=ground_truth_file.utm_query,
            threshold_m=float(threshold),
            ground_truth=ground_truth_file.positives(len(query_paths), len(database_paths)),
            extra=extra,
        )
    except DatasetError as error:  # PlaceDataset's count checks: name the ground-truth file too
        raise DatasetError(f"{printable_path(gt_path)}: {error}") from None


def convert_ground_truth_npy(npy_path: str | Path, npz_path: str | Path) -> int:
    """Rewrite a trusted VPR-Bench object-array .npy as a pickle-free CSR .npz; returns the query count.

    Unpickles `npy_path`, so run it only on files you trust. The .npz holds `positives_indptr`
    int64 [Nq + 1] and `positives_indices` int64 (positives of query i are
    indices[indptr[i]:indptr[i + 1]]).
    """
    npy_path = Path(npy_path)
    array = load_ground_truth_npy(npy_path, allow_pickle=True)
    if array.dtype == object and array.ndim == 2 and array.shape[1] == 2:
        num_queries = int(max(int(row[0]) for row in array)) + 1
    else:
        num_queries = len(array)
    positives = positives_from_array(array, num_queries, npy_path)
    indptr = np.concatenate([[0], np.cumsum([len(row) for row in positives])]).astype(np.int64)
    indices = np.concatenate([*positives, np.zeros(0, np.int64)]).astype(np.int64)
    with atomic_write(npz_path, "wb") as handle:
        np.savez(handle, positives_indptr=indptr, positives_indices=indices)
    return num_queries
