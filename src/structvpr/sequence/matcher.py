"""Sequence matching: the best straight path over speeds through the route x map similarities.

`match_sequences` scores a whole route at once; `OnlineSequenceMatcher` is fed one frame at a time
(a robot) and gives, for every frame, exactly what the batch function gives for that frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from structvpr.index.place_index import PlaceIndex
from structvpr.sequence.contrast import RouteContrast
from structvpr.sequence.map_rows import MapRows, as_map_rows
from structvpr.sequence.paths import dense_path_scores, speed_offsets, window_path_scores
from structvpr.sequence.settings import (
    DEFAULT_CANDIDATES,
    DEFAULT_CONTRAST_WINDOW,
    DEFAULT_EXCLUSION,
    DEFAULT_LENGTH,
    DEFAULT_SPEEDS,
    SequenceSettings,
)


@dataclass(frozen=True)
class SequenceMatch:
    """One frame's answer: the best end place (row position and id), its path score (mean
    contrasted cosine), the path's speed, a confidence (score minus the best score of a path ending
    more than `exclusion` places away) and the top_n places and scores, best first (-1 / -inf pad)."""

    position: int
    id: int
    score: float
    speed: float
    confidence: float
    positions: np.ndarray
    scores: np.ndarray


@dataclass
class SequenceMatches:
    """A route's answers: positions / ids int64 [Q, top_n] and scores float32 [Q, top_n] (best
    first, -1 / -inf where fewer places were scored), speeds float64 [Q], confidence float32 [Q]."""

    positions: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    speeds: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, frame: int) -> SequenceMatch:
        return SequenceMatch(
            position=int(self.positions[frame, 0]),
            id=int(self.ids[frame, 0]),
            score=float(self.scores[frame, 0]),
            speed=float(self.speeds[frame]),
            confidence=float(self.confidence[frame]),
            positions=self.positions[frame],
            scores=self.scores[frame],
        )


def rank_ends(
    ends: np.ndarray,
    scores: np.ndarray,
    speed_index: np.ndarray,
    map_rows: MapRows,
    settings: SequenceSettings,
) -> SequenceMatch:
    """The frame's SequenceMatch from scored path ends (int64 [H] ascending, float64 [H], int64 [H])."""
    top_n = settings.top_n
    positions = np.full(top_n, -1, np.int64)
    top_scores = np.full(top_n, -np.inf, np.float32)
    if not len(ends):
        return SequenceMatch(-1, -1, float("-inf"), float("nan"), 0.0, positions, top_scores)
    order = np.lexsort((ends, -scores))
    kept = order[:top_n]
    positions[: len(kept)] = ends[kept]
    top_scores[: len(kept)] = scores[kept]
    best = order[0]
    rivals = np.abs(ends - ends[best]) > settings.exclusion
    runner_up = float(scores[rivals].max()) if rivals.any() else 0.0
    return SequenceMatch(
        position=int(ends[best]),
        id=int(map_rows.ids[ends[best]]),
        score=float(scores[best]),
        speed=float(settings.speeds[int(speed_index[best])]),
        confidence=float(scores[best] - runner_up),
        positions=positions,
        scores=top_scores,
    )


class OnlineSequenceMatcher:
    """Match a route one frame at a time: `push(descriptor)` -> SequenceMatch for that frame.

    database: L2-normalised float32 [N, D] map descriptors or a PlaceIndex, rows in travel order.
    Keeps only the last `length` frames (memory O(length x candidates)); the answers equal
    `match_sequences` on the same frames and settings.
    """

    def __init__(self, database: np.ndarray | PlaceIndex | MapRows, settings: SequenceSettings | None = None) -> None:
        self.settings = settings or SequenceSettings()
        self.map_rows = as_map_rows(database)
        self._offsets = speed_offsets(self.settings.speeds, self.settings.length)
        self._contrast = RouteContrast(self.map_rows.dim, self.settings.contrast_window)
        self._recent: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=self.settings.length)
        self._all_places = np.arange(self.map_rows.size, dtype=np.int64)

    def push(self, descriptor: Any) -> SequenceMatch:
        """Add the next frame's descriptor (float [D], L2-normalised) and match the route so far."""
        frame = np.asarray(descriptor, np.float32).reshape(-1)
        if frame.shape[0] != self.map_rows.dim:
            raise ValueError(f"descriptor has dimension {frame.shape[0]}, the map {self.map_rows.dim}")
        contrasted = self._contrast.push(frame)
        if self.settings.candidates is None:
            places = self._all_places
            return self._add(contrasted, places, self.map_rows.rows(places) @ contrasted)
        return self._add(contrasted, *self.map_rows.candidates(contrasted[None], self.settings.candidates)[0])

    def _add(self, contrasted: np.ndarray, places: np.ndarray, scores: np.ndarray) -> SequenceMatch:
        self._recent.appendleft((contrasted, places, scores))
        ends, path_scores, speed_index = window_path_scores(
            np.stack([frame for frame, _, _ in self._recent]),
            [frame_places for _, frame_places, _ in self._recent],
            [frame_scores for _, _, frame_scores in self._recent],
            self.map_rows.rows,
            self.map_rows.size,
            self._offsets,
            self.settings.rescored_ends,
        )
        return rank_ends(ends, path_scores, speed_index, self.map_rows, self.settings)

    def reset(self) -> None:
        """Start a new route."""
        self._contrast.reset()
        self._recent.clear()


def _collect(matches: Sequence[SequenceMatch], map_rows: MapRows) -> SequenceMatches:
    positions = np.stack([m.positions for m in matches]).astype(np.int64)
    ids = np.where(positions >= 0, map_rows.ids[np.clip(positions, 0, None)], -1)
    return SequenceMatches(
        positions=positions,
        ids=ids.astype(np.int64),
        scores=np.stack([m.scores for m in matches]).astype(np.float32),
        speeds=np.array([m.speed for m in matches], np.float64),
        confidence=np.array([m.confidence for m in matches], np.float32),
    )


def _contrast_route(queries: np.ndarray, window: int | None) -> np.ndarray:
    contrast = RouteContrast(queries.shape[1], window)
    return np.stack([contrast.push(frame) for frame in queries])


def match_sequences(
    query_descriptors: Any,
    database: np.ndarray | PlaceIndex,
    length: int = DEFAULT_LENGTH,
    speeds: Sequence[float] = DEFAULT_SPEEDS,
    *,
    candidates: int | None = DEFAULT_CANDIDATES,
    contrast_window: int | None = DEFAULT_CONTRAST_WINDOW,
    top_n: int = 1,
    exclusion: int = DEFAULT_EXCLUSION,
    rescore: int | None = None,
) -> SequenceMatches:
    """Match every frame of a route by the best straight path through its last `length` frames.

    query_descriptors: float32 [Q, D] in travel order; database: L2-normalised float32 [N, D] or a
    PlaceIndex (any kind), rows in travel order. Each frame is contrasted against the mean of the
    `contrast_window` frames before it, then every path ending at the frame at each speed (map
    places per frame) is scored by its mean contrasted cosine. candidates=k scores only paths
    through some frame's k best places (FAISS), with memory O(Q x k); candidates=None scores every
    place (memory O(Q x N)). rescore: path ends scored exactly per frame (default 4 x candidates),
    chosen by the candidate similarity their paths collect. Frame t's answer depends only on frames
    <= t, and equals what OnlineSequenceMatcher returns for it.
    """
    settings = SequenceSettings(
        length, tuple(float(v) for v in speeds), candidates, contrast_window, top_n, exclusion, rescore
    )
    map_rows = as_map_rows(database)
    queries = np.asarray(query_descriptors, np.float32)
    if queries.ndim != 2 or queries.shape[1] != map_rows.dim:
        raise ValueError(f"query descriptors must be [Q, {map_rows.dim}], got shape {list(queries.shape)}")
    contrasted = _contrast_route(queries, contrast_window)
    if candidates is None:
        return _match_dense(contrasted, map_rows, settings)
    places = map_rows.candidates(contrasted, candidates)
    matcher = OnlineSequenceMatcher(map_rows, settings)
    matches = [matcher._add(frame, *frame_places) for frame, frame_places in zip(contrasted, places, strict=True)]
    return _collect(matches, map_rows)


def _match_dense(contrasted: np.ndarray, map_rows: MapRows, settings: SequenceSettings) -> SequenceMatches:
    similarity = contrasted @ map_rows.rows(np.arange(map_rows.size)).T
    scores, speed_index = dense_path_scores(similarity, speed_offsets(settings.speeds, settings.length))
    ends = np.arange(map_rows.size, dtype=np.int64)
    return _collect(
        [rank_ends(ends, row, speeds, map_rows, settings) for row, speeds in zip(scores, speed_index, strict=True)],
        map_rows,
    )
