"""Straight paths through a query x map similarity matrix (SeqSLAM-style sequence scores).

A path ends at map place e for the current query frame t and runs back through the last L frames at
a constant speed v (map places per query frame): at s frames back it visits place e - rint(v * s).
Its score is the mean of the (contrasted) similarities it visits; cells before the start or after
the end of the map count 0. Early frames of a route (t < L - 1) use the t + 1 frames they have.

Two ways to compute the same scores: `dense_path_scores` for every place and every frame at once
(O(Q x N) memory), and `window_path_scores` for one end frame, only for paths through given
candidate places (memory O(L x k x speeds), the map is read only at the places the paths visit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def speed_offsets(speeds: Sequence[float], length: int) -> np.ndarray:
    """int64 [V, length]: offsets[v, s] = rint(speeds[v] * s), how far back along the map a path
    at speed v is s frames before its end."""
    if length < 1:
        raise ValueError(f"sequence length must be >= 1, got {length}")
    values = np.asarray(list(speeds), np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"speeds must be a non-empty list of finite numbers, got {list(speeds)}")
    return np.rint(np.outer(values, np.arange(length))).astype(np.int64)


def _shifted_slices(shift: int, size: int) -> tuple[slice, slice] | None:
    """(destination, source) slices with destination[e] = source[e - shift] inside [0, size)."""
    if abs(shift) >= size:
        return None
    if shift >= 0:
        return slice(shift, size), slice(0, size - shift)
    return slice(0, size + shift), slice(-shift, size)


def dense_path_scores(similarity: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best path score of every (query frame, map place) end, over all speeds.

    similarity: float [Q, N] contrasted similarities of a route's frames (rows in travel order) to
    the map places (columns in travel order); offsets: int64 [V, L] from `speed_offsets`.
    Returns (scores float64 [Q, N], speed index int64 [Q, N]); ties keep the first speed.
    """
    num_frames, size = similarity.shape
    length = offsets.shape[1]
    frames_used = np.minimum(np.arange(num_frames) + 1, length).astype(np.float64)[:, None]
    best = np.full((num_frames, size), -np.inf)
    best_speed = np.zeros((num_frames, size), np.int64)
    for speed_index, row in enumerate(offsets):
        total = np.zeros((num_frames, size))
        for back in range(min(length, num_frames)):
            slices = _shifted_slices(int(row[back]), size)
            if slices is not None:
                total[back:, slices[0]] += similarity[: num_frames - back, slices[1]]
        total /= frames_used
        better = total > best
        best[better] = total[better]
        best_speed[better] = speed_index
    return best, best_speed


def window_path_scores(
    contrasted: np.ndarray,
    candidates: Sequence[np.ndarray],
    candidate_scores: Sequence[np.ndarray],
    read_rows: Callable[[np.ndarray], np.ndarray],
    size: int,
    offsets: np.ndarray,
    rescore: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best path score of the paths that end at the current frame and pass through a candidate.

    contrasted: float32 [F, D] the last F <= L contrasted query descriptors, row s = s frames back
    (row 0 is the current frame); candidates[s]: int64 map places of frame s (its FAISS top-k) and
    candidate_scores[s] their contrasted similarities; read_rows(places int64 [m]) -> float32 [m, D]
    map descriptors; size: number of map places N; offsets: int64 [V, L].

    The ends of all paths (at any speed) through a candidate cell are ranked by the sum of the
    candidate cells on their best path; the best `rescore` of them (all when None) are scored
    exactly at every speed, reading the map rows their paths visit, so their scores equal
    `dense_path_scores` on those ends. Returns (end places int64 [H] ascending, scores float64 [H],
    speed index int64 [H]).
    """
    num_frames = len(contrasted)
    offsets = offsets[:, :num_frames]
    ends = _promising_ends(candidates[:num_frames], candidate_scores[:num_frames], offsets, size, rescore)
    if not len(ends):
        return ends, np.zeros(0), np.zeros(0, np.int64)
    cells = ends[None, None, :] - offsets[:, :, None]  # [V, F, H] map place of each path cell
    inside = (cells >= 0) & (cells < size)
    visited = np.unique(cells[inside])  # holds every end (offset 0), so it is never empty
    similarity = read_rows(visited) @ contrasted.T
    rows = np.searchsorted(visited, np.where(inside, cells, visited[0]))
    values = np.where(inside, similarity[rows, np.arange(num_frames)[:, None]], 0.0)
    totals = np.zeros((len(offsets), len(ends)))
    for back in range(num_frames):  # frame by frame, in the order dense_path_scores adds them
        totals += values[:, back]
    totals /= num_frames
    best_speed = np.argmax(totals, axis=0)
    return ends, totals[best_speed, np.arange(len(ends))], best_speed.astype(np.int64)


def _promising_ends(
    candidates: Sequence[np.ndarray],
    candidate_scores: Sequence[np.ndarray],
    offsets: np.ndarray,
    size: int,
    keep: int | None,
) -> np.ndarray:
    """Ends (int64, ascending) of the paths through candidate cells; with `keep`, only the `keep`
    whose best path collects the most candidate similarity (ties: lower place)."""
    num_speeds, num_frames = offsets.shape
    places = np.concatenate([candidates[back] + offsets[:, back, None] for back in range(num_frames)], axis=1)
    weights = np.broadcast_to(np.concatenate(candidate_scores)[None, :], places.shape)
    speed = np.broadcast_to(np.arange(num_speeds)[:, None], places.shape)
    inside = (places >= 0) & (places < size)
    ends, where = np.unique(places[inside], return_inverse=True)
    if keep is None or len(ends) <= keep:
        return ends
    collected = np.bincount(
        speed[inside] * len(ends) + where, weights=weights[inside], minlength=num_speeds * len(ends)
    ).reshape(num_speeds, len(ends))
    order = np.lexsort((ends, -collected.max(axis=0)))[:keep]
    return np.sort(ends[order])
