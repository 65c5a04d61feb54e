"""evaluate_dataset and `structvpr evaluate`: printed line, JSON, CSV, descriptors, prediction images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.cli import main
from structvpr.data.place_dataset import DatasetError, PlaceDataset
from structvpr.evaluate.descriptors import DescribeOptions
from structvpr.evaluate.evaluate import evaluate_dataset
from structvpr.model import ModelConfig, build_model

NUM_DATABASE = 6


def _random_image(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> PlaceDataset:
    """Queries 0-3 are copies of database images 0-3 at the same place; query 4 is 5 km away."""
    database = [_random_image(tmp_path / "database" / f"db{i}.png", i) for i in range(NUM_DATABASE)]
    queries = []
    for i in range(4):
        queries.append(tmp_path / "queries" / f"q{i}.png")
        queries[-1].parent.mkdir(exist_ok=True)
        shutil.copy(database[i], queries[-1])
    queries.append(_random_image(tmp_path / "queries" / "far.png", 99))
    database_coords = np.stack([np.zeros(NUM_DATABASE), 100.0 * np.arange(NUM_DATABASE)], axis=1)
    query_coords = np.concatenate([database_coords[:4], [[5000.0, 5000.0]]])
    return PlaceDataset(
        name="tiny",
        split="test",
        root=tmp_path,
        database_paths=database,
        query_paths=queries,
        database_coords=database_coords,
        query_coords=query_coords,
        threshold_m=25.0,
    )


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    # ImageNet weights (shipped, offline): a random-init net maps every image to nearly the same
    # descriptor, which makes rankings ties.
    torch.manual_seed(0)
    return build_model(ModelConfig(pretrained=True, image_size=(32, 32), descriptor_dim=32))


def test_evaluate_prints_one_line_and_writes_every_file(
    tiny_dataset: PlaceDataset, tiny_model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_dir = tmp_path / "results"
    result = evaluate_dataset(
        tiny_model,
        tiny_dataset,
        DescribeOptions(batch_size=4, progress=False),
        recall_values=(1, 2),
        out_dir=out_dir,
        save_descriptors=True,
        num_preds_to_save=3,
    )
    line = capsys.readouterr().out.strip()
    assert line == (
        "tiny test: 5 queries, 6 database, threshold 25 m | R@1: 100.0, R@2: 100.0 | "
        "1 queries without positives excluded"
    )
    assert result["recalls"] == {"1": 1.0, "2": 1.0}
    assert (result["num_evaluated"], result["num_excluded"]) == (4, 1)

    saved = json.loads((out_dir / "tiny_test.json").read_text())
    assert saved["recalls"] == {"1": 1.0, "2": 1.0} and saved["threshold_m"] == 25.0
    assert saved["model"]["descriptor_dim"] == 32

    with open(out_dir / "tiny_test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and "pred2_path" in rows[0] and "pred3_path" not in rows[0]
    for query_index, row in enumerate(rows[:4]):
        assert row["pred1_path"] == str(tiny_dataset.database_paths[query_index])
        assert row["pred1_correct"] == "1" and row["pred2_correct"] == "0"
    assert rows[4]["num_positives"] == "0" and rows[4]["pred1_correct"] == "0"

    queries = np.load(out_dir / "tiny_test_queries.npy")
    database = np.load(out_dir / "tiny_test_database.npy")
    assert queries.shape == (5, 32) and database.shape == (6, 32)
    assert np.allclose(queries[:4], database[:4], atol=1e-5)

    images = sorted((out_dir / "tiny_test_preds").glob("*.jpg"))
    assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(5)]
    with Image.open(images[0]) as row_image:
        row_image = row_image.convert("RGB")
        assert row_image.width > 3 * row_image.height  # query + 3 predictions side by side
        # The first prediction is correct: its frame is green.
        tile = (row_image.width - 3 * 4) // 4
        r, g, _b = row_image.getpixel((tile + 4 + 2, row_image.height // 2))
        assert g > 150 and r < 100


def test_unlabelled_or_empty_datasets_fail_before_extraction(
    tiny_dataset: PlaceDataset, tiny_model: torch.nn.Module
) -> None:
    unlabelled = PlaceDataset(
        name="folder",
        split="all",
        root=tiny_dataset.root,
        database_paths=tiny_dataset.database_paths,
        query_paths=tiny_dataset.query_paths,
    )
    with pytest.raises(DatasetError, match="no coordinates or ground truth"):
        evaluate_dataset(tiny_model, unlabelled, DescribeOptions(progress=False))
    empty = PlaceDataset(
        name="tiny", split="test", root=tiny_dataset.root, database_paths=tiny_dataset.database_paths, query_paths=[]
    )
    with pytest.raises(DatasetError, match="0 queries"):
        evaluate_dataset(tiny_model, empty, DescribeOptions(progress=False))


def test_cli_evaluates_a_ground_truth_list_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "gt_dataset"
    (root / "query").mkdir(parents=True)
    for i in range(4):
        _random_image(root / "ref" / f"{i:03d}.png", i)
        shutil.copy(root / "ref" / f"{i:03d}.png", root / "query" / f"{i:03d}.png")
    np.save(root / "ground_truth.npy", np.eye(4, dtype=bool))
    out_dir = tmp_path / "out"
    code = main(
        [
            "evaluate",
            str(root),
            "--image-size",
            "32",
            "32",
            "--recall-values",
            "1",
            "--batch-size",
            "2",
            "--out",
            str(out_dir),
            "--quiet",
        ]
    )
    assert code == 0
    assert "4 queries, 4 database" in capsys.readouterr().out
    result = json.loads(next(out_dir.glob("*.json")).read_text())
    assert result["recalls"] == {"1": 1.0} and result["positives"] == "ground_truth"


def test_cli_names_a_missing_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nowhere"
    code = main(["evaluate", str(missing), "--no-pretrained", "--quiet"])
    assert code == 1
    error = capsys.readouterr().err.strip()
    assert str(missing) in error and "does not exist" in error and len(error.splitlines()) == 1


def test_cli_evaluates_a_saved_model_file(
    tmp_path: Path, tiny_dataset: PlaceDataset, tiny_model: torch.nn.Module, capsys: pytest.CaptureFixture
) -> None:
    from structvpr.model.model_file import save_model_file

    root = tmp_path / "gt_dataset"
    for i, path in enumerate(tiny_dataset.database_paths[:3]):
        for folder in ("ref", "query"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / folder / f"{i:03d}.png")
    np.save(root / "ground_truth.npy", np.eye(3, dtype=bool))
    model_path = tmp_path / "model.pt"
    save_model_file(tiny_model, model_path, {"training_data": ["none"]})
    code = main(
        [
            "evaluate",
            str(root),
            "--model",
            str(model_path),
            "--recall-values",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert "R@1: 100.0" in capsys.readouterr().out
    result = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert result["descriptor_dim"] == 32 and result["image_size"] == [32, 32]
