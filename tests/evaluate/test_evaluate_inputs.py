"""`structvpr evaluate` takes what `structvpr.load` takes and reads every path from the working folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.cli import main
from structvpr.commands.dataset_args import add_dataset_arguments, dataset_from_args


@pytest.fixture()
def in_work_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A VPR-Bench style dataset at `<work>/data/gt` (query i = ref i), `<work>` the working folder."""
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        for side in ("ref", "query"):
            (tmp_path / "data" / "gt" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / "data" / "gt" / side / f"{i:03d}.png")
    np.save(tmp_path / "data" / "gt" / "ground_truth.npy", np.eye(4, dtype=bool))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_builtin_model_name(in_work_folder: Path, capsys: pytest.CaptureFixture, one_torch_thread: None) -> None:
    # Before: "model file does not exist", while `index build` and `query` took the name.
    code = main(["evaluate", "data/gt", "--model", "imagenet-efficientnet_lite0-gem", "--image-size", "32", "32"])
    assert code == 0 and "gt query->ref: 4 queries, 4 database, explicit ground truth | R@1: 100.0" in (
        capsys.readouterr().out
    )


def test_a_ground_truth_path_is_named_as_typed_when_missing(
    in_work_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["evaluate", "data/gt", "--ground-truth", "elsewhere/gt.npz", "--quiet"])
    assert code == 1
    error = capsys.readouterr().err.strip()
    assert error == "structvpr evaluate: error: elsewhere/gt.npz: ground-truth file does not exist"


def test_folder_flags_resolve_from_the_working_folder_then_the_dataset_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path
) -> None:
    monkeypatch.chdir(fixtures_dir.parent)  # tests/: the sequence folders are fixtures/nordland_64x32/*
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    # The database folder typed from the working folder, the query folder by its name under the root.
    typed = ["--layout", "sequence", "--database-folder", "fixtures/nordland_64x32/summer", "--query-folder"]
    from_work = dataset_from_args("fixtures/nordland_64x32", parser.parse_args([*typed, "winter"]))
    assert from_work.database_paths[0].parent.name == "summer" and from_work.query_paths[0].parent.name == "winter"
    assert from_work.num_queries == from_work.num_database == 100


@pytest.mark.slow
def test_an_exported_onnx_model_evaluates_like_its_model_file(
    in_work_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    """~15 s: the ONNX export (torch.export + tracing)."""
    pytest.importorskip("onnxruntime")
    from structvpr.export import export_model
    from structvpr.model import ModelConfig, build_model
    from structvpr.model.model_file import save_model_file

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(32, 32), descriptor_dim=16))
    save_model_file(model, in_work_folder / "model.pt", {"training_data": ["none"]})
    example = torch.randn(2, 3, 32, 32)
    export_model(model.eval(), in_work_folder / "model.onnx", "onnx", check_images=example, batch_sizes=(2,))
    lines = []
    for model_file in ("model.pt", "model.onnx"):
        out = f"out_{Path(model_file).suffix[1:]}"
        assert main(["evaluate", "data/gt", "--model", model_file, "--quiet", "--out", out]) == 0
        lines.append(capsys.readouterr().out.strip().splitlines()[-1])
        saved = json.loads(next((in_work_folder / out).glob("*.json")).read_text())
        assert saved["descriptor_dim"] == 16
    assert lines[0] == lines[1] and "4 queries, 4 database" in lines[0]
    recalls = [float(part.split(": ")[1]) for part in lines[0].split(" | ")[1].split(", ")]
    assert np.all(np.isfinite(recalls))


def test_the_model_choices_are_the_models_names() -> None:
    """evaluate lists them without importing torch (fast --help); they must not drift."""
    from structvpr.commands.evaluate import AGGREGATOR_CHOICES, BACKBONE_CHOICES
    from structvpr.model.aggregators import AGGREGATOR_NAMES
    from structvpr.model.backbones import BACKBONE_NAMES

    assert (BACKBONE_CHOICES, AGGREGATOR_CHOICES) == (BACKBONE_NAMES, AGGREGATOR_NAMES)
