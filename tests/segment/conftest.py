"""Fixtures for the segmentation tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the networks on one thread: on the shared 2-core CI machine two intra-op threads make
    ESPNetv2 up to 100x slower (each small op waits at a barrier for a descheduled thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
