"""Path scores: dense and candidate-restricted scoring against a direct sum over each path."""

from __future__ import annotations

import numpy as np

from structvpr.sequence.paths import dense_path_scores, speed_offsets, window_path_scores


def _direct_scores(similarity: np.ndarray, speeds: list[float], length: int) -> np.ndarray:
    """[V, Q, N] mean similarity along each path, written as plainly as possible."""
    num_frames, size = similarity.shape
    scores = np.zeros((len(speeds), num_frames, size))
    for v, speed in enumerate(speeds):
        for t in range(num_frames):
            used = min(length, t + 1)
            for end in range(size):
                total = 0.0
                for back in range(used):
                    place = end - int(np.rint(speed * back))
                    if 0 <= place < size:
                        total += similarity[t - back, place]
                scores[v, t, end] = total / used
    return scores


def test_speed_offsets_round_speed_times_frames_back() -> None:
    offsets = speed_offsets([1.0, 0.5, -1.0], 4)
    assert offsets.tolist() == [[0, 1, 2, 3], [0, 0, 1, 2], [0, -1, -2, -3]]


def test_dense_scores_are_the_best_mean_along_each_path_with_off_map_cells_zero() -> None:
    rng = np.random.default_rng(1)
    similarity = rng.normal(size=(9, 11)).astype(np.float32)
    speeds = [0.5, 1.0, 2.0, -1.0]
    direct = _direct_scores(similarity, speeds, length=4)
    scores, speed_index = dense_path_scores(similarity, speed_offsets(speeds, 4))
    np.testing.assert_allclose(scores, direct.max(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(speed_index, direct.argmax(axis=0))


def test_window_scores_equal_dense_scores_on_every_end_they_return() -> None:
    rng = np.random.default_rng(2)
    size, dim, length = 40, 6, 5
    database = rng.normal(size=(size, dim)).astype(np.float32)
    route = rng.normal(size=(12, dim)).astype(np.float32)
    offsets = speed_offsets([0.8, 1.0, 1.5], length)
    dense, dense_speed = dense_path_scores(route @ database.T, offsets)
    t = 11
    window = route[t : t - length : -1]  # row s = s frames back
    candidates = [np.sort(rng.choice(size, 3, replace=False)) for _ in range(length)]
    candidate_scores = [database[places] @ frame for places, frame in zip(candidates, window, strict=True)]
    ends, scores, speed_index = window_path_scores(
        window, candidates, candidate_scores, lambda p: database[p], size, offsets
    )
    assert len(ends) > 3 and np.all(np.diff(ends) > 0)
    np.testing.assert_allclose(scores, dense[t, ends], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(speed_index, dense_speed[t, ends])
    # Every end whose path at some speed visits a candidate cell is among the scored ends.
    for end in range(size):
        visits = any(end - offsets[v, s] in candidates[s] for v in range(len(offsets)) for s in range(length))
        assert visits == (end in ends)


def test_rescoring_keeps_the_ends_whose_paths_collect_the_most_candidate_similarity() -> None:
    size, dim, length = 30, 4, 3
    rng = np.random.default_rng(3)
    database = rng.normal(size=(size, dim)).astype(np.float32)
    window = rng.normal(size=(length, dim)).astype(np.float32)
    offsets = speed_offsets([1.0], length)
    # Candidate cells on the path ending at 20 (20, 19, 18), a strong lone cell at 5 (now) and a
    # weak one at 11 (a frame ago: its path ends at 12).
    candidates = [np.array([5, 20]), np.array([11, 19]), np.array([18])]
    candidate_scores = [np.array([2.5, 1.0]), np.array([0.5, 1.0]), np.array([1.0])]
    read = lambda p: database[p]
    everything, _, _ = window_path_scores(window, candidates, candidate_scores, read, size, offsets)
    assert everything.tolist() == [5, 12, 20]
    ends, scores, _ = window_path_scores(window, candidates, candidate_scores, read, size, offsets, rescore=2)
    assert ends.tolist() == [5, 20]  # 20 collects 3.0 from three cells, 5 collects 2.5, 12 only 0.5
    dense, _ = dense_path_scores(window[::-1] @ database.T, offsets)
    np.testing.assert_allclose(scores, dense[-1, ends], rtol=0, atol=1e-5)  # scored exactly, not by the hints
