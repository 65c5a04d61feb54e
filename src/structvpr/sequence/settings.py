"""Sequence-matching settings and their defaults (no numpy or FAISS: the CLI reads them before parsing)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LENGTH = 10
DEFAULT_SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.2)  # map places per route frame
DEFAULT_CANDIDATES = 50
DEFAULT_CONTRAST_WINDOW = 500
DEFAULT_EXCLUSION = 10
# Path ends scored exactly per frame, per candidate (see paths.window_path_scores).
RESCORED_ENDS_PER_CANDIDATE = 4


@dataclass(frozen=True)
class SequenceSettings:
    """How routes are matched (see docs/sequences.md).

    length: frames per path L; speeds: map places per query frame; candidates: FAISS neighbours per
    frame that paths must pass through (None: every place, O(frames x places) memory in batch);
    contrast_window: earlier frames whose mean descriptor is subtracted (None: all, 0: none); top_n: places
    returned per frame; exclusion: places around the best end that do not count as its runner-up;
    rescore: path ends scored exactly per frame (default RESCORED_ENDS_PER_CANDIDATE x candidates).
    """

    length: int = DEFAULT_LENGTH
    speeds: tuple[float, ...] = DEFAULT_SPEEDS
    candidates: int | None = DEFAULT_CANDIDATES
    contrast_window: int | None = DEFAULT_CONTRAST_WINDOW
    top_n: int = 1
    exclusion: int = DEFAULT_EXCLUSION
    rescore: int | None = None

    def __post_init__(self) -> None:
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"candidates must be >= 1 or None, got {self.candidates}")
        if self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        if self.exclusion < 0:
            raise ValueError(f"exclusion must be >= 0, got {self.exclusion}")
        if self.rescore is not None and self.rescore < 1:
            raise ValueError(f"rescore must be >= 1 or None, got {self.rescore}")
        from structvpr.sequence.paths import speed_offsets

        speed_offsets(self.speeds, self.length)  # checks length and speeds

    @property
    def rescored_ends(self) -> int | None:
        """Ends scored exactly per frame (None: every end through a candidate)."""
        if self.candidates is None:
            return None
        return self.rescore if self.rescore is not None else RESCORED_ENDS_PER_CANDIDATE * self.candidates
