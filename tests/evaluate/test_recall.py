"""Recall@N and exact search, checked against brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest

from structvpr.evaluate.recall import recall_at_n, recall_from_predictions, search_top_k


def _unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_recall_from_predictions_by_hand_excludes_queries_without_positives() -> None:
    predictions = np.array([[3, 1, 2], [0, 2, 1], [2, 0, 1], [1, 2, 3]])
    positives = [np.array([3]), np.array([1]), np.array([5]), np.array([], dtype=np.int64)]
    result = recall_from_predictions(predictions, positives, ns=(1, 2, 3))
    # query 0 correct at 1, query 1 at 3, query 2 never; query 3 has no positive.
    assert result.num_evaluated == 3 and result.num_excluded == 1
    assert result.recalls == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 2 / 3})


def test_no_query_with_positives_gives_nan_not_a_crash() -> None:
    result = recall_from_predictions(np.zeros((2, 1), dtype=np.int64), [np.array([], dtype=np.int64)] * 2, (1,))
    assert result.num_excluded == 2 and np.isnan(result.recalls[1])


def test_search_matches_numpy_and_reads_memmaps(tmp_path) -> None:
    rng = np.random.default_rng(0)
    database = _unit_rows(rng, 50, 16)
    queries = _unit_rows(rng, 7, 16)
    stored = np.lib.format.open_memmap(tmp_path / "db.npy", mode="w+", dtype=np.float32, shape=database.shape)
    stored[:] = database
    scores, indices = search_top_k(queries, stored, k=5)
    expected = np.argsort(-(queries @ database.T), axis=1)[:, :5]
    assert np.array_equal(indices, expected)
    assert np.allclose(scores, np.take_along_axis(queries @ database.T, expected, axis=1), atol=1e-5)
    assert search_top_k(queries, database, k=500)[1].shape == (7, 50)  # k clamps to the database size


def test_recall_at_n_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    database = _unit_rows(rng, 80, 8)
    queries = _unit_rows(rng, 30, 8)
    positives = [rng.choice(80, size=rng.integers(0, 4), replace=False) for _ in range(30)]
    recalls = recall_at_n(queries, database, positives, ns=(1, 5, 10, 20))
    ranking = np.argsort(-(queries @ database.T), axis=1)
    evaluated = [i for i in range(30) if len(positives[i])]
    for n in (1, 5, 10, 20):
        brute = np.mean([np.isin(ranking[i, :n], positives[i]).any() for i in evaluated])
        assert recalls[n] == pytest.approx(brute)


def test_dimension_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dimension 4 but database descriptors 8"):
        search_top_k(np.zeros((1, 4), np.float32), np.zeros((2, 8), np.float32), 1)
