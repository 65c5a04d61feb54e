"""Nearest-neighbour search over place descriptors: FAISS (`PlaceIndex`) and Milvus backends."""

from __future__ import annotations

from structvpr.index.place_index import KINDS, IndexFileError, PlaceIndex, SearchResult

__all__ = ["KINDS", "IndexFileError", "PlaceIndex", "SearchResult"]
