"""Shared test fixtures: the real data in tests/fixtures/ and one-thread torch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: small real data shipped with the repository (corridor/, nordland_64x32/,
    espnetv2/), each folder with its README (source, licence, citation). Treat as read-only."""
    return FIXTURES_DIR


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on one intra-op thread: on 2 shared cores two threads make small ops up to
    ~100x slower (each op waits at a barrier for a descheduled thread)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread_for_module() -> Iterator[None]:
    """`one_torch_thread` for a whole module, so module-scoped fixtures that train run on it too."""
    with _torch_threads(1):
        yield
