"""Nearest-neighbour search over place descriptors: FAISS (`PlaceIndex`) and Milvus backends.

The FAISS classes are imported on first use, so `structvpr.index.parameters` (kinds and
parameter checks) can be used without loading FAISS.
"""

from __future__ import annotations

from typing import Any

from structvpr.index.parameters import KINDS

__all__ = ["KINDS", "IndexFileError", "ModelMismatchError", "PlaceIndex", "SearchResult"]


def __getattr__(name: str) -> Any:
    if name in ("IndexFileError", "ModelMismatchError", "PlaceIndex", "SearchResult"):
        from structvpr.index import place_index

        return getattr(place_index, name)
    raise AttributeError(f"module 'structvpr.index' has no attribute {name!r}")
