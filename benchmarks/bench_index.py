"""PlaceIndex at map scale: queries/s, memory and top-1 agreement of approximate kinds vs exact search.

Database: `--size` (default 1,000,000) unit descriptors, D = `--dim` (256), float32. Synthetic by
default: place centres grouped in regions, several views per place, and 20% near-duplicates (a
copy with tiny jitter, like consecutive video frames), which is what makes compressed codes pick a
neighbouring frame. `--real DIR` instead tiles real descriptors with jitter up to --size:
DIR/database.npy (float32 [n, D]) with DIR/queries.npy as the queries and, when
DIR/database_coords.npy and DIR/query_coords.npy (UTM metres) exist, VPR Recall@1 for every setting
next to exact search's (a tile counts as its source image; positive within --threshold m, over the
queries that have a positive); or all
DIR/*.npy rows with synthetic revisit queries. `--dataset D --model M --cache DIR` first describes
the database and query images of a dataset (any layout structvpr reads; `--split`) with a trained
model (anything `structvpr.load` takes) into DIR, with the dataset's own positives
(DIR/positives_*.npy), and then runs as `--real DIR`. `--distractor-split S` adds every image of
another split's database (another region's map, never a positive) to the database before tiling:

    python benchmarks/bench_index.py --dataset runs/town --split test --distractor-split train \
        --model run/model.pt --cache runs/bench_index_town --size 20000 --settings ivfpq --pq-m 8 16 32

Synthetic queries are jittered copies of random database rows. Every setting runs in this
process with the same FAISS thread count (`--threads`, default 1: stable ratios on a shared
machine); each setting's queries/s ratio comes from timing flat on the same batch right before it
(see `interleaved_timing`).
Printed: parameters, bytes/vector of the FAISS structure, build seconds, queries/s and its ratio to
flat, top-1 agreement with exact search and how often the exact top-1 is in the returned top-10.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from structvpr.index import PlaceIndex

SETTINGS = ("hnsw", "ivfflat", "ivfpq", "ivfpq+opq")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="database descriptors")
    parser.add_argument("--dim", type=int, default=256, help="descriptor dimension (synthetic data)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--real",
        type=Path,
        default=None,
        metavar="DIR",
        help="tile the descriptors in DIR/*.npy (float32 [n, D]) with jitter instead",
    )
    parser.add_argument("--dataset", default=None, help="describe this dataset's images (needs --model, --cache)")
    parser.add_argument("--layout", default="auto", help="--dataset: its layout (default: detect)")
    parser.add_argument("--split", default=None, help="--dataset: its split, e.g. test")
    parser.add_argument(
        "--distractor-split",
        default=None,
        help="--dataset: also describe the database images of this split (another region's map) as extra "
        "database images, never positives",
    )
    parser.add_argument("--model", default=None, help="--dataset: a trained model (what structvpr.load takes)")
    parser.add_argument("--cache", type=Path, default=None, help="--dataset: descriptor folder (reused if present)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="positive distance, metres (default: the dataset's, else 25)"
    )
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~2 sqrt(N), power of 2)")
    parser.add_argument("--pq-m", type=int, nargs="+", default=[32], help="IVF-PQ bytes per code (several: a sweep)")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="index kinds to compare with flat (OPQ training and the HNSW build are slowest)",
    )
    parser.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads for every setting")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _normalise_rows(array: np.ndarray, chunk: int = 65536) -> np.ndarray:
    for start in range(0, len(array), chunk):
        block = array[start : start + chunk]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return array


def synthetic_descriptors(size: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors [size, dim]: regions > places > views, 20% near-duplicate rows."""
    rng = np.random.default_rng(seed)
    regions = rng.standard_normal((max(size // 1000, 1), dim)).astype(np.float32)
    place_count = max(size // 10, 1)  # ~10 views per place, like a mapping drive
    places = (
        regions[rng.integers(0, len(regions), place_count)] * 0.6
        + rng.standard_normal((place_count, dim)).astype(np.float32) * 0.5
    )
    database = np.empty((size, dim), np.float32)
    for start in range(0, size, 65536):
        stop = min(start + 65536, size)
        place = rng.integers(0, place_count, stop - start)
        database[start:stop] = places[place] + 0.35 * rng.standard_normal((stop - start, dim)).astype(np.float32)
    _normalise_rows(database)
    # Near-duplicates: 20% of rows become a slightly jittered copy of another row.
    duplicate_rows = rng.choice(size, size // 5, replace=False)
    originals = rng.integers(0, size, len(duplicate_rows))
    for start in range(0, len(duplicate_rows), 65536):
        rows, sources = duplicate_rows[start : start + 65536], originals[start : start + 65536]
        database[rows] = database[sources] + 0.02 / np.sqrt(dim) * rng.standard_normal((len(rows), dim)).astype(
            np.float32
        )
    return _normalise_rows(database)


def describe_dataset(args: argparse.Namespace) -> Path:
    """Descriptors of --dataset's database and queries by --model, with its positives, in --cache.

    Writes database.npy, queries.npy (float32 [n, D]), positives_indptr.npy / positives_indices.npy
    (each query's positive database rows), with --distractor-split distractors.npy (the database
    images of that split: never positives), and source.json; a cache made from the same model file, dataset
    and splits is reused, another is refused.
    """
    import structvpr
    from structvpr.data.layouts import open_dataset

    if args.model is None or args.cache is None:
        raise SystemExit("--dataset needs --model and --cache")
    dataset = open_dataset(args.dataset, layout=args.layout, split=args.split)
    model_path = Path(args.model)
    source = {
        "dataset": dataset.summary(),
        "root": str(Path(args.dataset).resolve()),
        "model": str(model_path.resolve()) if model_path.exists() else args.model,
        "model_mtime": model_path.stat().st_mtime if model_path.is_file() else None,
    }
    distractors = None
    if args.distractor_split is not None:
        distractors = open_dataset(args.dataset, layout=args.layout, split=args.distractor_split)
        source["distractors"] = f"{distractors.summary()} (database images)"
    marker = args.cache / "source.json"
    if marker.is_file():
        if json.loads(marker.read_text()) != source:
            raise SystemExit(f"{args.cache}: holds descriptors of another model or dataset ({marker})")
        return args.cache
    args.cache.mkdir(parents=True, exist_ok=True)
    model = structvpr.load(args.model)
    start = time.perf_counter()
    parts = [("database", dataset.database_paths), ("queries", dataset.query_paths)]
    if distractors is not None:
        parts.append(("distractors", distractors.database_paths))
    for name, paths in parts:
        np.save(args.cache / f"{name}.npy", model.describe(paths, batch_size=32, progress=True))
    positives = dataset.positives_per_query(args.threshold)
    np.save(args.cache / "positives_indptr.npy", np.cumsum([0] + [len(row) for row in positives]))
    np.save(args.cache / "positives_indices.npy", np.concatenate([*positives, np.zeros(0, np.int64)]))
    marker.write_text(json.dumps(source, indent=1) + "\n")  # last: a killed run leaves no marker
    print(f"described {dataset.summary()} with {args.model} in {time.perf_counter() - start:.0f} s", flush=True)
    return args.cache


def load_positives(folder: Path, num_queries: int, threshold: float | None) -> list[np.ndarray] | None:
    """Each query's positive rows of folder/database.npy: stored lists, else from coordinates."""
    if (folder / "positives_indptr.npy").is_file():
        indptr = np.load(folder / "positives_indptr.npy")
        indices = np.load(folder / "positives_indices.npy")
        return [indices[indptr[i] : indptr[i + 1]] for i in range(num_queries)]
    if not (folder / "query_coords.npy").is_file():
        return None
    from sklearn.neighbors import NearestNeighbors

    base_coords = np.load(folder / "database_coords.npy", allow_pickle=False)
    query_coords = np.load(folder / "query_coords.npy", allow_pickle=False)
    finder = NearestNeighbors().fit(base_coords)
    return list(finder.radius_neighbors(query_coords, radius=threshold or 25.0, return_distance=False))


def tiled_real_descriptors(folder: Path, size: int, seed: int) -> tuple[np.ndarray, int]:
    """(database [size, D], n): the rows of folder/database.npy then folder/distractors.npy (else of
    every folder/*.npy), n of them, normalised and tiled to `size` rows with small jitter on every
    copy beyond the first; row i is a copy of base row i % n."""
    if (folder / "database.npy").is_file():
        files = [folder / name for name in ("database.npy", "distractors.npy") if (folder / name).is_file()]
    else:
        files = sorted(folder.glob("*.npy"))
    if not files:
        raise SystemExit(f"{folder}: no .npy descriptor files")
    base = np.concatenate([np.load(path, allow_pickle=False).astype(np.float32) for path in files])
    base = _normalise_rows(base.reshape(len(base), -1))
    rng = np.random.default_rng(seed)
    database = np.empty((size, base.shape[1]), np.float32)
    for start in range(0, size, 65536):
        stop = min(start + 65536, size)
        rows = np.arange(start, stop)
        jitter = np.where(rows >= len(base), 0.05 / np.sqrt(base.shape[1]), 0.0).astype(np.float32)[:, None]
        noise = rng.standard_normal((stop - start, base.shape[1])).astype(np.float32)
        database[start:stop] = base[rows % len(base)] + jitter * noise
    return _normalise_rows(database), len(base)


def make_queries(database: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Revisits: random database rows plus noise (cosine ~0.95 to their source)."""
    rng = np.random.default_rng(seed + 1)
    source = rng.choice(len(database), count, replace=False)
    queries = database[source] + 0.3 / np.sqrt(database.shape[1]) * rng.standard_normal(
        (count, database.shape[1])
    ).astype(np.float32)
    return _normalise_rows(queries)


def interleaved_timing(
    index: PlaceIndex, flat: PlaceIndex, queries: np.ndarray, **options
) -> tuple[object, float, float]:
    """(index.search(queries, k=10, **options), its seconds per query, flat's seconds per query).

    Flat searches the same full batch right before the setting, so both are timed under the same
    load from other processes (on a shared machine it changes by 5x within minutes). Full batches:
    splitting them into small blocks would handicap flat's matrix multiplication.
    """
    index.search(queries[:10], k=10, **options)  # warm-up
    start = time.perf_counter()
    flat.search(queries, k=10)
    middle = time.perf_counter()
    result = index.search(queries, k=10, **options)
    end = time.perf_counter()
    return result, (end - middle) / len(queries), (middle - start) / len(queries)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    # FAISS' OpenBLAS (flat search) keeps its own thread count: limit it too, or flat gets more cores.
    threadpool_limits(limits=args.threads)
    started = time.perf_counter()
    if args.dataset is not None:
        args.real = describe_dataset(args)
    if args.real is not None:
        # base_count distinct images: the tiles of one real image share row % base_count
        database, base_count = tiled_real_descriptors(args.real, args.size, args.seed)
        source = f"{base_count:,} real descriptors from {args.real} tiled with jitter"
    else:
        database = synthetic_descriptors(args.size, args.dim, args.seed)
        source = "synthetic clustered descriptors, 20% near-duplicates"
        base_count = len(database)
    size, dim = database.shape
    positives: list[np.ndarray] | None = None
    if args.real is not None and (args.real / "queries.npy").is_file():
        queries = _normalise_rows(np.load(args.real / "queries.npy", allow_pickle=False).astype(np.float32))
        positives = load_positives(args.real, len(queries), args.threshold)
    else:
        queries = make_queries(database, args.queries, args.seed)
    evaluated = [i for i, row in enumerate(positives or []) if len(row)]

    def recall_at_1(ids: np.ndarray) -> float:
        """VPR R@1 over queries with a positive: the top-1 tile's source image is a positive."""
        if positives is None:
            return float("nan")
        sources = ids[:, 0] % base_count
        return float(np.mean([sources[i] in positives[i] for i in evaluated]))

    nlist = args.nlist or int(2 ** round(np.log2(2 * np.sqrt(size))))
    print(
        f"bench_index: {size:,} x {dim} float32 ({source}), {len(queries)} queries, "
        f"{args.threads} FAISS thread(s); data made in {time.perf_counter() - started:.0f} s"
        + (f"; R@1 over the {len(evaluated)} queries with a positive" if positives is not None else ""),
        flush=True,
    )

    rows: list[dict] = []
    flat = PlaceIndex.build(database, "flat")
    start = time.perf_counter()
    exact = flat.search(queries, k=10)
    seconds = (time.perf_counter() - start) / len(queries)
    exact_top1 = exact.ids[:, 0]
    rows.append(
        {
            "setting": "flat (exact)",
            "params": "-",
            "bytes": flat.memory_bytes() / size,
            "build": 0.0,
            "rate": 1.0 / seconds,
            "ratio": 1.0,
            "agree": 1.0,
            "same_image": 1.0,
            "in10": 1.0,
            "r1": recall_at_1(exact.ids),
        }
    )

    def measure(name: str, params: str, index: PlaceIndex, build_seconds: float, **search_options) -> None:
        result, seconds, flat_seconds = interleaved_timing(index, flat, queries, **search_options)
        in_top10 = np.mean([exact_top1[i] in result.ids[i] for i in range(len(queries))])
        rows.append(
            {
                "setting": name,
                "params": params,
                "bytes": index.memory_bytes() / size,
                "build": build_seconds,
                "rate": 1.0 / seconds,
                "ratio": flat_seconds / seconds,
                "agree": float(np.mean(result.ids[:, 0] == exact_top1)),
                "same_image": float(np.mean(result.ids[:, 0] % base_count == exact_top1 % base_count)),
                "in10": float(in_top10),
                "r1": recall_at_1(result.ids),
            }
        )
        row = rows[-1]
        print(
            f"  {name} {params}: {row['rate']:.0f} queries/s, {row['ratio']:.1f}x flat, top-1 = exact "
            f"{100 * row['agree']:.1f}% (same image {100 * row['same_image']:.1f}%), R@1 {100 * row['r1']:.1f}%",
            flush=True,
        )

    def build(kind: str, **options) -> tuple[PlaceIndex, float]:
        start = time.perf_counter()
        index = PlaceIndex.build(database, kind, **options)
        return index, time.perf_counter() - start

    if "ivfflat" in args.settings:
        ivf, seconds = build("ivfflat", nlist=nlist)
        for nprobe in (8, 16, 32):
            measure("ivfflat", f"nlist={nlist} nprobe={nprobe}", ivf, seconds, nprobe=nprobe)
        del ivf
        gc.collect()

    for name in [setting for setting in ("ivfpq", "ivfpq+opq") if setting in args.settings]:
        for pq_m in args.pq_m:
            opq = name == "ivfpq+opq"
            pq, seconds = build("ivfpq", nlist=nlist, pq_m=pq_m, pq_nbits=8, opq=opq, store_vectors=True)
            for nprobe in (16, 32):
                measure(name, f"nlist={nlist} m={pq_m}x8 nprobe={nprobe}", pq, seconds, nprobe=nprobe)
            for rerank in (32, 100):
                params = f"nlist={nlist} m={pq_m}x8 nprobe=16 rerank={rerank}"
                measure(name, params, pq, seconds, nprobe=16, rerank=rerank)
            del pq
            gc.collect()

    if "hnsw" in args.settings:
        hnsw, seconds = build("hnsw", hnsw_m=32, ef_construction=80)
        for ef in (64, 128):
            measure("hnsw", f"M=32 efC=80 efSearch={ef}", hnsw, seconds, ef_search=ef)
        del hnsw
        gc.collect()

    print(
        f"\n{'setting':<13} {'parameters':<36} {'bytes/vec':>9} {'mem/flat':>8} {'build s':>8} "
        f"{'queries/s':>10} {'x flat':>7} {'top-1 = exact':>13} {'exact in top-10':>15}"
        + (f" {'same image':>10} {'R@1':>6}" if positives is not None else "")
    )
    flat_bytes = rows[0]["bytes"]
    for row in rows:
        print(
            f"{row['setting']:<13} {row['params']:<36} {row['bytes']:>9.1f} {row['bytes'] / flat_bytes:>8.3f} "
            f"{row['build']:>8.0f} {row['rate']:>10.0f} {row['ratio']:>7.1f} "
            f"{100 * row['agree']:>12.1f}% {100 * row['in10']:>14.1f}%"
            + (f" {100 * row['same_image']:>9.1f}% {100 * row['r1']:>5.1f}%" if positives is not None else "")
        )
    print(
        "bytes/vec: the FAISS structure per descriptor (ids add 8 B for every kind; re-ranking reads the "
        f"raw vectors, {4 * dim} B/vec, from a memory-mapped file on disk). "
        f"Total {time.perf_counter() - started:.0f} s."
        + (
            " same image: the top-1 tile is a copy of the same real image as exact search's top-1."
            if positives is not None
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
