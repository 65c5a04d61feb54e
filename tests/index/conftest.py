"""Fixtures for index tests: single-threaded FAISS and small real descriptors of the corridor images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def single_thread_faiss() -> Iterator[None]:
    """FAISS' OpenMP k-means is ~10x slower with 2 threads on 2 shared cores; tests use one."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def thumbnail_descriptors(paths: list[Path]) -> np.ndarray:
    """Real-image descriptors without a network: 16x12 grey thumbnails, centred, L2-normalised.

    float32 [N, 192]. Good enough to give a real (non-synthetic) neighbour structure.
    """
    rows = [
        np.asarray(Image.open(path).convert("L").resize((16, 12), Image.BILINEAR), np.float32).ravel() for path in paths
    ]
    array = np.stack(rows)
    array -= array.mean(axis=1, keepdims=True)
    return (array / np.linalg.norm(array, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def corridor_descriptors(fixtures_dir: Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(database [111, 192], queries [111, 192], database paths) from the real Corridor dataset."""
    root = fixtures_dir / "corridor"
    database_paths = sorted((root / "ref").glob("*.jpg"))
    query_paths = sorted((root / "query").glob("*.jpg"))
    return thumbnail_descriptors(database_paths), thumbnail_descriptors(query_paths), database_paths
