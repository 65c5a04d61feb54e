"""Sequence matching at map scale: a 1,000-frame route against a 1M-place map, time and peak memory.

The map is `--size` (default 1,000,000) unit descriptors, D = `--dim` (256), in travel order, held in
a PlaceIndex (`--kind`, default flat). The route re-drives `--frames` (1,000) consecutive map places
in another season: each frame is its place's descriptor plus a shared season offset and independent
noise (`--noise`), so a single frame is often wrong. Matching is candidate-restricted: each frame's
`--candidates` FAISS neighbours seed the paths and only the map rows those paths visit are read, so
the matcher's own memory is O(frames x candidates), never O(frames x places).

Printed: build time, matching time (FAISS search + path scoring) per frame, single-frame and sequence
R@1 (within +/- 2 places), and peak RSS of the process (the map itself is size x dim x 4 bytes).
Run it niced on a shared machine: `nice -n 10 python benchmarks/bench_sequence.py`.
"""

from __future__ import annotations

import argparse
import resource
import time

import faiss
import numpy as np

from structvpr.index import PlaceIndex
from structvpr.sequence import match_sequences

CHUNK = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="map places")
    parser.add_argument("--dim", type=int, default=256, help="descriptor dimension")
    parser.add_argument("--frames", type=int, default=1000, help="route frames")
    parser.add_argument("--length", type=int, default=20, help="sequence length L")
    parser.add_argument("--candidates", type=int, default=50, help="FAISS neighbours per frame")
    parser.add_argument("--kind", default="flat", choices=["flat", "ivfflat", "ivfpq", "hnsw"], help="index kind")
    parser.add_argument("--noise", type=float, default=3.5, help="route noise (relative to a place's spread)")
    parser.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads")
    parser.add_argument("--blas-threshold", type=int, default=20, help="FAISS distance_compute_blas_threshold")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def build_map(args: argparse.Namespace, rng: np.random.Generator) -> tuple[PlaceIndex, np.ndarray, int]:
    """(PlaceIndex of the map, route descriptors float32 [frames, D], first place of the route),
    generated chunk by chunk so that only the index holds the whole map."""
    start = int(rng.integers(0, args.size - args.frames))
    season = rng.normal(size=args.dim).astype(np.float32) * 0.7
    index: PlaceIndex | None = None
    route = np.empty((args.frames, args.dim), np.float32)
    for first in range(0, args.size, CHUNK):
        places = rng.standard_normal((min(CHUNK, args.size - first), args.dim), dtype=np.float32)
        chunk = _unit(places).astype(np.float32)
        if index is None:
            options = {"nlist": 1024} if args.kind.startswith("ivf") else {}
            index = PlaceIndex.build(chunk, kind=args.kind, use_gpu=False, **options)
        else:
            index.add(chunk)
        inside = np.arange(max(start, first), min(start + args.frames, first + len(chunk)))
        if len(inside):
            noise = rng.standard_normal((len(inside), args.dim), dtype=np.float32) * args.noise
            route[inside - start] = _unit(places[inside - first] + season + noise)
    assert index is not None
    return index, route, start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    # This FAISS build only uses BLAS for flat search from 128,000 queries at once (its SIMD loop is
    # ~10x slower per query here); 20 is FAISS' historical default.
    faiss.cvar.distance_compute_blas_threshold = args.blas_threshold
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    index, route, start = build_map(args, rng)
    built = time.perf_counter() - began
    truth = start + np.arange(args.frames)
    print(
        f"map: {args.size:,} places x D={args.dim} ({args.size * args.dim * 4 / 2**30:.2f} GiB float32), "
        f"index {args.kind}, built in {built:.1f} s; route: {args.frames} frames; peak RSS {peak_rss_gib():.2f} GiB"
    )
    single = index.search(route, k=1).positions[:, 0]
    print(f"single frame R@1 (+/- 2 places): {np.mean(np.abs(single - truth) <= 2):.3f}")
    began = time.perf_counter()
    matches = match_sequences(route, index, args.length, candidates=args.candidates)
    seconds = time.perf_counter() - began
    recall = np.mean(np.abs(matches.positions[:, 0] - truth) <= 2)
    print(
        f"sequence L={args.length}, {args.candidates} candidates: R@1 {recall:.3f}; "
        f"{seconds:.1f} s for {args.frames} frames ({1000 * seconds / args.frames:.1f} ms per frame, "
        f"FAISS threads {args.threads})"
    )
    print(f"peak RSS {peak_rss_gib():.2f} GiB (limit 4 GB)")


if __name__ == "__main__":
    main()
