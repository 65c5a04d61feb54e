"""Exact nearest-neighbour search with FAISS and Recall@N over queries that have a positive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

# Rows copied from a (possibly memory-mapped) array into RAM at a time.
CHUNK_ROWS = 65536


@dataclass
class RecallResult:
    """Recall@N as fractions in [0, 1] (NaN when no query has a positive) and the query counts."""

    recalls: dict[int, float]
    num_evaluated: int
    num_excluded: int


def _chunks(array: np.ndarray) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(array[start : start + CHUNK_ROWS], dtype=np.float32)
        for start in range(0, len(array), CHUNK_ROWS)
    ]


def search_top_k(
    query_descriptors: np.ndarray, database_descriptors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search (IndexFlatIP; cosine for L2-normalised descriptors).

    query float32 [Nq, D], database float32 [Nd, D] (memmaps are read in chunks).
    Returns (scores float32 [Nq, k'], indices int64 [Nq, k']) best first, k' = min(k, Nd).
    """
    if query_descriptors.ndim != 2 or database_descriptors.ndim != 2:
        raise ValueError("descriptors must be 2-D arrays [N, D]")
    if query_descriptors.shape[1] != database_descriptors.shape[1]:
        raise ValueError(
            f"query descriptors have dimension {query_descriptors.shape[1]} but database "
            f"descriptors {database_descriptors.shape[1]}"
        )
    if len(database_descriptors) == 0:
        raise ValueError("the database has no descriptors to search")
    index = faiss.IndexFlatIP(database_descriptors.shape[1])
    for chunk in _chunks(database_descriptors):
        index.add(chunk)
    k = min(int(k), len(database_descriptors))
    scores, indices = [], []
    for chunk in _chunks(query_descriptors):
        chunk_scores, chunk_indices = index.search(chunk, k)
        scores.append(chunk_scores)
        indices.append(chunk_indices)
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(indices).astype(np.int64)


def recall_from_predictions(
    predictions: np.ndarray, positives_per_query: Sequence[np.ndarray], ns: Sequence[int] = (1, 5, 10, 20)
) -> RecallResult:
    """Recall@N from ranked database indices int [Nq, k] (best first).

    A query counts as correct at N when one of its first N predictions is a positive. Queries
    without any positive are excluded (their count is returned), as in the VPR literature.
    """
    if len(predictions) != len(positives_per_query):
        raise ValueError(f"{len(predictions)} prediction rows for {len(positives_per_query)} queries")
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 1:
        raise ValueError(f"recall values must be positive integers, got {ns}")
    has_positive = np.array([len(p) > 0 for p in positives_per_query], dtype=bool)
    num_evaluated = int(has_positive.sum())
    if num_evaluated == 0:
        return RecallResult({n: float("nan") for n in ns}, 0, len(positives_per_query))
    # Rank of the first correct prediction per query (k = none within the list).
    first_correct = np.full(len(predictions), np.iinfo(np.int64).max, dtype=np.int64)
    for query_index, (row, positives) in enumerate(zip(predictions, positives_per_query, strict=False)):
        hits = np.flatnonzero(np.isin(row, positives))
        if len(hits):
            first_correct[query_index] = hits[0]
    evaluated = first_correct[has_positive]
    recalls = {n: float(np.mean(evaluated < n)) for n in ns}
    return RecallResult(recalls, num_evaluated, len(positives_per_query) - num_evaluated)


def recall_at_n(
    query_descriptors: np.ndarray,
    database_descriptors: np.ndarray,
    positives_per_query: Sequence[np.ndarray],
    ns: Sequence[int] = (1, 5, 10, 20),
) -> dict[int, float]:
    """Recall@N (fractions) over queries that have at least one positive; exact FAISS search."""
    _, predictions = search_top_k(query_descriptors, database_descriptors, max(ns))
    return recall_from_predictions(predictions, positives_per_query, ns).recalls
