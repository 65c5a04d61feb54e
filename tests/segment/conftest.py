"""Fixtures for the segmentation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _segment_tests_run_on_one_thread(one_torch_thread: None) -> None:
    """Every segmentation test runs the networks on one thread (see tests/conftest.py)."""
