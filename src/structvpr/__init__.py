"""structvpr: StructVPR++ visual place recognition (RGB descriptors distilled from segmentation).

The three-line user path: `structvpr.load(path)`, `model.describe(images)`,
`structvpr.PlaceIndex.build(descriptors)`; a route of images is matched with
`structvpr.match_sequences(route_descriptors, index, length=L)`. Heavy modules are imported on first use.
"""

from __future__ import annotations

from typing import Any

from structvpr.version import __version__

__all__ = ["PlaceIndex", "__version__", "load", "match_sequences"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from structvpr.api import load

        return load
    if name == "PlaceIndex":
        from structvpr.index.place_index import PlaceIndex

        return PlaceIndex
    if name == "match_sequences":
        from structvpr.sequence.matcher import match_sequences

        return match_sequences
    raise AttributeError(f"module 'structvpr' has no attribute {name!r}")
