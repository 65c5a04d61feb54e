"""The map as the sequence matcher sees it: candidate search and reading rows, for an array or any PlaceIndex."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from structvpr.index.place_index import PlaceIndex, check_descriptors

# Extra FAISS neighbours fetched beyond k and re-ranked exactly, so that the top-k does not depend
# on float rounding that differs between batched and single-query FAISS searches.
RERANK_MARGIN = 8


class MapRows:
    """Map places in travel order: `candidates(queries, k)` and `rows(places)`.

    Built from an L2-normalised float32 [N, D] array (searched exactly) or a PlaceIndex of any kind
    (searched with its own settings; rows come from its stored vectors or its FAISS storage, which
    for an ivfpq index without stored vectors are the PQ reconstructions).
    """

    def __init__(self, database: np.ndarray | PlaceIndex) -> None:
        self._array: np.ndarray | None = None
        self._index: PlaceIndex | None = None
        self._flat: faiss.Index | None = None
        if isinstance(database, PlaceIndex):
            self._index = database
            self.size, self.dim = len(database), database.dim
            self.ids = database.ids if len(database.ids) == self.size else np.arange(self.size, dtype=np.int64)
            if database.vectors is None and database.kind in ("ivfflat", "ivfpq"):
                faiss.extract_index_ivf(database.index).make_direct_map()
        else:
            self._array = check_descriptors(database, name="database descriptors")
            self.size, self.dim = self._array.shape
            self.ids = np.arange(self.size, dtype=np.int64)
        if self.size == 0:
            raise ValueError("the map has no places to match against")

    def rows(self, places: np.ndarray) -> np.ndarray:
        """Map descriptors float32 [m, D] of places int64 [m] (0 <= place < N)."""
        places = np.asarray(places, np.int64)
        if self._array is not None:
            return self._array[places]
        assert self._index is not None
        if self._index.vectors is not None:
            return np.asarray(self._index.vectors[places], np.float32)
        return self._index.index.reconstruct_batch(places)

    def _search(self, unit_queries: np.ndarray, fetch: int) -> np.ndarray:
        if self._index is not None:
            return self._index.search(unit_queries, k=fetch).positions
        if self._flat is None:
            assert self._array is not None
            self._flat = faiss.IndexFlatIP(self.dim)
            self._flat.add(self._array)
        return self._flat.search(unit_queries, fetch)[1]

    def candidates(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(places int64 [<= k] ascending, their scores float32) of the k best places of each query
        float32 [Q, D] (any norm), by exact inner product.

        FAISS proposes k + RERANK_MARGIN places per query; their exact scores pick the k kept, ties
        to the lower place, so the answer for a frame is the same searched alone or in a batch.
        A zero query (a frame equal to the route mean) has no candidates.
        """
        queries = np.asarray(queries, np.float32)
        norms = np.linalg.norm(queries, axis=1)
        nonzero = norms > 0
        fetch = min(k + RERANK_MARGIN, self.size)
        proposed = np.full((len(queries), fetch), -1, np.int64)
        if nonzero.any():
            proposed[nonzero] = self._search(queries[nonzero] / norms[nonzero, None], fetch)
        chosen = []
        for query, places in zip(queries, proposed, strict=True):
            places = places[places >= 0]
            scores = self.rows(places) @ query if len(places) else np.zeros(0, np.float32)
            kept = np.sort(np.lexsort((places, -scores))[:k])
            order = kept[np.argsort(places[kept])]
            chosen.append((places[order], scores[order]))
        return chosen


def as_map_rows(database: Any) -> MapRows:
    """`database` as MapRows (an array, a PlaceIndex, or MapRows already)."""
    return database if isinstance(database, MapRows) else MapRows(database)
