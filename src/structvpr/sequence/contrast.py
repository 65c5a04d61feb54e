"""Route contrast: each query frame minus the mean of the route's recent frames.

A similarity matrix S[t, j] = q_t . x_j between a route's frames q_t and map places x_j is dominated
by what the whole route shares (snow, night, one camera): some map places look like *every* winter
frame. Subtracting from each column the place's mean similarity to the route's recent frames,
S[t, j] - mean_{t'} S[t', j] = (q_t - mean_{t'} q_t') . x_j, removes that. It is the same as
subtracting the recent frames' mean descriptor from the query, so it costs O(D) per frame, needs no
map statistics and works through any FAISS index. It is causal (only earlier frames), so a robot can
apply it online and the batch matcher gives the same numbers.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class RouteContrast:
    """Causal contrast of a route: `push(q_t)` returns q_t minus the mean of the `window` frames
    before it (all earlier frames when window is None, no contrast when it is 0; the first frame is
    returned unchanged)."""

    def __init__(self, dim: int, window: int | None) -> None:
        if window is not None and window < 0:
            raise ValueError(f"contrast window must be >= 0 frames or None, got {window}")
        self.window = window
        self._sum = np.zeros(dim, np.float64)
        self._count = 0
        self._recent: deque[np.ndarray] = deque()

    def push(self, descriptor: np.ndarray) -> np.ndarray:
        """Contrasted descriptor float32 [D] of one frame (float [D]); the frame then joins the window."""
        frame = np.asarray(descriptor, np.float64)
        if self.window == 0:
            return frame.astype(np.float32)
        contrasted = frame - self._sum / self._count if self._count else frame.copy()
        self._sum += frame
        self._count += 1
        if self.window is not None:
            self._recent.append(frame)
            if len(self._recent) > self.window:
                self._sum -= self._recent.popleft()
                self._count -= 1
        return contrasted.astype(np.float32)

    def reset(self) -> None:
        """Forget the route (start a new one)."""
        self._sum[:] = 0.0
        self._count = 0
        self._recent.clear()
