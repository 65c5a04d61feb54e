"""Real data: ImageNet EfficientNet-Lite0 + GeM on VPR-Bench Corridor, no VPR training.

The reference R@1 of about 0.73 was measured outside the project (images 320x240, mean = std = 0.5,
GeM p = 3 on the last feature map); the data is tests/fixtures/corridor (see its README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from structvpr.data.layouts import open_dataset
from structvpr.evaluate.descriptors import DescribeOptions
from structvpr.evaluate.evaluate import evaluate_dataset
from structvpr.model import ModelConfig, build_model

REFERENCE_R1 = 0.73
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def corridor_run(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    root = fixtures_dir / "corridor"
    dataset = open_dataset(root, allow_pickle=True)  # the VPR-Bench .npy is trusted: shipped in tests/fixtures
    model = build_model(
        ModelConfig(
            backbone="efficientnet_lite0", aggregator="gem", gem_p=3.0, gem_learnable=False, image_size=(240, 320)
        )
    )
    out_dir = tmp_path_factory.mktemp("corridor")
    result = evaluate_dataset(
        model,
        dataset,
        DescribeOptions(batch_size=16, progress=False),
        recall_values=(1, 5, 10, 20),
        out_dir=out_dir,
        save_descriptors=True,
    )
    return result, out_dir, root


@pytest.mark.slow
def test_imagenet_efficientnet_gem_reaches_the_reference_recall(corridor_run: tuple[dict, Path, Path]) -> None:
    result = corridor_run[0]
    assert (result["num_queries"], result["num_database"], result["num_excluded"]) == (111, 111, 0)
    assert abs(result["recalls"]["1"] - REFERENCE_R1) <= TOLERANCE, result["recalls"]
    assert result["recalls"]["1"] <= result["recalls"]["5"] <= result["recalls"]["10"] <= result["recalls"]["20"]


@pytest.mark.slow
def test_recall_equals_brute_force_numpy_on_the_same_descriptors(corridor_run: tuple[dict, Path, Path]) -> None:
    result, _out_dir, root = corridor_run
    queries = np.load(result["files"]["query_descriptors"])
    database = np.load(result["files"]["database_descriptors"])
    # Ground truth read directly, independently of the layout reader: rows [query index, [positives]].
    rows = np.load(root / "ground_truth_new.npy", allow_pickle=True)
    positives = {int(row[0]): np.atleast_1d(np.asarray(row[1], dtype=np.int64)) for row in rows}
    similarity = queries.astype(np.float64) @ database.astype(np.float64).T
    ranking = np.argsort(-similarity, axis=1, kind="stable")
    for n in (1, 5, 10, 20):
        brute = np.mean([np.isin(ranking[q, :n], positives[q]).any() for q in range(len(queries))])
        # FAISS scores in float32: a near-tie may order one query differently, never more.
        assert result["recalls"][str(n)] == pytest.approx(brute, abs=1 / len(queries) + 1e-9)
