"""Sequence matching: localise a route's frames by the best straight path through the map (SeqSLAM-style).

`match_sequences(route descriptors, map descriptors or PlaceIndex, length=L)` for a whole route,
`OnlineSequenceMatcher` for one frame at a time; see docs/sequences.md. Imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OnlineSequenceMatcher",
    "SequenceMatch",
    "SequenceMatches",
    "SequenceSettings",
    "match_sequences",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from structvpr.sequence import matcher

        return getattr(matcher, name)
    raise AttributeError(f"module 'structvpr.sequence' has no attribute {name!r}")
