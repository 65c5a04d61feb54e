"""Fixtures of the reliability suite: a small synthetic town (12 places, 32x48 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import IMAGE_SIZE


@pytest.fixture(scope="session")
def town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 places of the synthetic town (UTM layout with label maps and metadata.csv), 32x48 px."""
    from structvpr.data.synth import generate_town

    root = tmp_path_factory.mktemp("reliability") / "town"
    generate_town(root, 12, seed=0, image_size=IMAGE_SIZE, progress=False)
    return root
