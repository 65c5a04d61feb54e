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
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from structvpr.data.layouts._common import (
    ReadOptions,
    SkipLog,
    filter_bad_names,
    find_subfolder,
    list_images,
    path_inside,
    printable_path,
    require_existing,
    require_folder,
    require_nonempty,
    require_unique,
)
from structvpr.data.place_dataset import DatasetError, PlaceDataset
from structvpr.io_utils import atomic_write

DATABASE_FOLDERS = ("ref", "reference", "database", "db", "map")
QUERY_FOLDERS = ("query", "queries", "qry")
DEFAULT_THRESHOLD_M = 25.0


def ground_truth_files(root: Path) -> list[Path]:
    """.npy/.npz files directly in `root`."""
    return sorted([*root.glob("*.npy"), *root.glob("*.npz")])


def find_ground_truth(root: Path, chosen: str | None) -> Path:
    """The ground-truth file named by the user, else the only (or `ground_truth*`) one in root."""
    if chosen:
        path = Path(chosen) if Path(chosen).is_absolute() else root / chosen
        if not path.is_file():
            raise DatasetError(f"{printable_path(path)}: ground-truth file does not exist")
        return path
    candidates = ground_truth_files(root)
    preferred = [p for p in candidates if p.stem.startswith(("ground_truth", "gt"))]
    if len(candidates) == 1 or len(preferred) == 1:
        return (preferred or candidates)[0]
    raise DatasetError(f"{printable_path(root)}: name the ground-truth file with --ground-truth "
                       f"(found {[p.name for p in candidates]})")


def has_gt_list_layout(root: Path) -> bool:
    """True when `root` has a ground-truth .npy/.npz and a query folder."""
    return bool(ground_truth_files(root)) and any((root / name).is_dir() for name in QUERY_FOLDERS)


def _pickle_refusal(path: Path) -> DatasetError:
    return DatasetError(
        f"{printable_path(path)}: ground truth is a NumPy object array, which loads only by unpickling "
        "(it can run code). If you trust the file pass allow_pickle=True (--allow-pickle), or convert "
        f"it once to a safe .npz: python -m structvpr.data.layouts.gt_lists {path} {path.with_suffix('.npz')}")


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
        raise DatasetError(f"{printable_path(source)}: expected [query_index, [positives]] rows or a "
                           f"bool [queries, database] matrix, got {array.dtype} {array.shape}")
    positives: list[np.ndarray | None] = [None] * num_queries
    paired = array.ndim == 2 and array.shape[1] == 2
    for row_index, row in enumerate(array):
        query_index, row_positives = (int(row[0]), row[1]) if paired else (row_index, row)
        if not 0 <= query_index < num_queries:
            raise DatasetError(f"{printable_path(source)}: row {row_index} names query {query_index}, "
                               f"but there are {num_queries} queries")
        if positives[query_index] is not None:
            raise DatasetError(f"{printable_path(source)}: query {query_index} appears twice")
        positives[query_index] = np.asarray(row_positives, dtype=np.int64).ravel()
    return [np.zeros(0, np.int64) if row is None else row for row in positives]


def _image_list(gt_path: Path, folder: Path, names: np.ndarray | None, kind: str,
                skips: SkipLog) -> list[Path]:
    """Image paths of one side, in ground-truth order (see the module docstring)."""
    listing = gt_path.with_name(f"{kind}_images.txt")
    if names is not None:
        paths = [path_inside(folder, str(name), gt_path) for name in names]
        source = gt_path
    elif listing.is_file():
        lines = listing.read_text(encoding="utf-8").splitlines()
        paths = [path_inside(folder, line, listing) for line in lines if line.strip()]
        source = listing
    else:
        # Positions index the sorted listing, so a skipped file would shift every later index.
        paths = list_images(folder, kind, recursive=False)
        return filter_bad_names(paths, "error", skips)
    require_unique(paths, source)
    require_existing(paths, source)
    return paths


def _check_indices(positives: list[np.ndarray], num_database: int, source: Path) -> None:
    for query_index, row in enumerate(positives):
        if row.size and (row.min() < 0 or row.max() >= num_database):
            raise DatasetError(f"{printable_path(source)}: query {query_index} lists database index "
                               f"{int(row.max())}, but there are {num_database} database images")


def read_gt_list(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read query/database folders with a ground-truth file into a PlaceDataset."""
    root = require_folder(Path(root), "dataset")
    gt_path = find_ground_truth(root, options.ground_truth)
    database_folder = find_subfolder(root, DATABASE_FOLDERS, options.database_folder, "database")
    query_folder = find_subfolder(root, QUERY_FOLDERS, options.query_folder, "query")
    skips = SkipLog()
    coords: dict[str, np.ndarray] = {}
    threshold = options.threshold_m or DEFAULT_THRESHOLD_M
    if gt_path.suffix == ".npz":
        with _open_npz(gt_path) as content:
            keys = set(content.files)
            names = {side: content[key] if key in keys else None
                     for side, key in (("database", "dbImage"), ("query", "qImage"))}
            if {"utmQ", "utmDb"} <= keys:
                coords = {"query": content["utmQ"], "database": content["utmDb"]}
                if "posDistThr" in keys and options.threshold_m is None:
                    threshold = float(np.asarray(content["posDistThr"]).item())
            elif {"positives_indptr", "positives_indices"} <= keys:
                indptr, indices = content["positives_indptr"], content["positives_indices"]
            else:
                raise DatasetError(f"{printable_path(gt_path)}: expected arrays utmQ + utmDb (+ posDistThr) "
                                   f"or positives_indptr + positives_indices, found {sorted(keys)}")
    else:
        names = {"database": None, "query": None}
        array = load_ground_truth_npy(gt_path, options.allow_pickle)
    database_paths = _image_list(gt_path, database_folder, names["database"], "database", skips)
    query_paths = _image_list(gt_path, query_folder, names["query"], "query", skips)
    require_nonempty(database_paths, "database", database_folder)
    require_nonempty(query_paths, "query", query_folder)
    ground_truth = None
    if gt_path.suffix == ".npz" and not coords:
        if len(indptr) != len(query_paths) + 1:
            raise DatasetError(f"{printable_path(gt_path)}: positives_indptr has {len(indptr)} entries "
                               f"for {len(query_paths)} queries (expected queries + 1)")
        ground_truth = [np.asarray(indices[indptr[i]:indptr[i + 1]], dtype=np.int64)
                        for i in range(len(query_paths))]
    elif gt_path.suffix != ".npz":
        ground_truth = positives_from_array(array, len(query_paths), gt_path)
    if ground_truth is not None:
        _check_indices(ground_truth, len(database_paths), gt_path)
    try:
        return PlaceDataset(
            name=options.name or root.name, split=split or f"{query_folder.name}->{database_folder.name}",
            root=root, database_paths=database_paths, query_paths=query_paths,
            database_coords=coords.get("database"), query_coords=coords.get("query"),
            threshold_m=float(threshold), ground_truth=ground_truth,
            extra={"layout": "gt_list", "ground_truth_file": str(gt_path), **skips.as_extra()})
    except DatasetError as error:
        raise DatasetError(f"{printable_path(gt_path)}: {error}") from None


def _open_npz(path: Path):
    """np.load of an .npz without pickles; DatasetError naming the file if it is not one."""
    try:
        content = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DatasetError(f"{printable_path(path)}: not a readable .npz file ({error})") from error
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise DatasetError(f"{printable_path(path)}: not an .npz archive")
    return content


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
    indices = np.concatenate(positives + [np.zeros(0, np.int64)]).astype(np.int64)
    with atomic_write(npz_path, "wb") as handle:
        np.savez(handle, positives_indptr=indptr, positives_indices=indices)
    return num_queries


def main(argv: list[str] | None = None) -> int:
    """`python -m structvpr.data.layouts.gt_lists IN.npy OUT.npz`: convert a trusted object array."""
    parser = argparse.ArgumentParser(description=convert_ground_truth_npy.__doc__.splitlines()[0])
    parser.add_argument("npy", type=Path, help="trusted VPR-Bench ground_truth .npy (object array)")
    parser.add_argument("npz", type=Path, help="pickle-free .npz to write")
    args = parser.parse_args(argv)
    try:
        count = convert_ground_truth_npy(args.npy, args.npz)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.npz}: positives of {count} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
