"""A synthetic route: map places seen in summer, a route through them in winter, one frame per place."""

from __future__ import annotations

import numpy as np
import pytest


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_route(
    num_places: int = 240, dim: int = 48, noise: float = 4.0, speed: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map float32 [N, D], route float32 [Q, D], true place int64 [Q]) with L2-normalised rows.

    Every place has its own appearance; the season adds one shared appearance to every frame of
    a traversal (the route's winter look dominates each frame, as snow does on Nordland), and each
    route frame gets independent noise, so single frames are ambiguous and sequences are not.
    The route visits place rint(speed * t) at frame t (a negative speed drives backwards from the end).
    """
    rng = np.random.default_rng(seed)
    places = rng.normal(size=(num_places, dim)) / np.sqrt(dim)
    summer, winter = rng.normal(size=(2, dim)) / np.sqrt(dim)
    database = _unit(places + 0.6 * summer)
    start = 0 if speed >= 0 else num_places - 1
    frames = int((num_places - 1) / abs(speed)) + 1
    truth = np.rint(start + speed * np.arange(frames)).astype(np.int64)
    route = _unit(places[truth] + 1.5 * winter + noise * rng.normal(size=(frames, dim)) / np.sqrt(dim))
    return database, route, truth


@pytest.fixture(scope="session")
def make_route():
    """`synthetic_route` itself, for tests that need other sizes, speeds or seeds."""
    return synthetic_route


@pytest.fixture(scope="session")
def route() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default synthetic route (240 places, D = 48)."""
    return synthetic_route()
