"""Shared test fixtures: where the real data in ../shared lives."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder with real VPR data, weights and reference outputs."""
    if not SHARED_DIR.is_dir():
        pytest.fail(f"{SHARED_DIR} is missing: the tests need the shared data beside the clone")
    return SHARED_DIR


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
