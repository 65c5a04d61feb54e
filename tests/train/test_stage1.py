"""Stage I on a tiny slice of the real Nordland 64x32 set: it learns, resumes exactly, stops on NaN."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from structvpr.cli import main as structvpr_main
from structvpr.config import Config, load_config
from structvpr.train.stage1 import fit_stage1, run_stage1, stage1_run_dir


def tiny_config(fixtures_dir: Path, output_dir: Path, *overrides: str) -> Config:
    """EfficientNet-Lite0 (ImageNet, offline) at 32x64 on Nordland frames 0-80 of both seasons.

    The backbone is frozen (fast, BatchNorm fixed) and GeM + a 64-d FC layer learn. Validation
    (frames 0-40) is inside the training frames: an easy set on which Recall must rise.
    """
    nordland = fixtures_dir / "nordland_64x32"
    source = {
        "path": str(nordland),
        "layout": "sequence",
        "index_range": [0, 80],
        "options": {"database_folder": "summer", "query_folder": "winter", "frame_tolerance": 1},
    }
    base = [
        f"data.train={json.dumps(source)}",
        f"data.val={json.dumps({**source, 'index_range': [0, 40]})}",
        "data.num_workers=0",
        "data.val_batch_size=40",
        "model.image_size=[32,64]",
        "model.frozen_stages=4",
        "model.descriptor_dim=64",
        "train.places_per_batch=4",
        "train.images_per_place=4",
        "train.batches_per_epoch=3",
        "train.lr=1e-2",
        "train.epochs=2",
        "train.accelerator=cpu",
        "train.devices=1",
        "train.deterministic=true",
        "train.validate_before_training=false",
        f"train.output_dir={output_dir}",
    ]
    return load_config(None, base + list(overrides))


def network_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted_run(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs in one go, validating before training too; returns the run folder."""
    output = tmp_path_factory.mktemp("uninterrupted")
    return run_stage1(tiny_config(fixtures_dir, output, "train.validate_before_training=true"), "rgb")


def test_training_raises_recall_and_writes_the_run(uninterrupted_run: Path) -> None:
    summary = json.loads((uninterrupted_run / "summary.json").read_text())
    history = summary["recall_history"]
    assert [entry["when"] for entry in history] == ["before training", "epoch 0", "epoch 1"]
    before, after = history[0]["recalls"], history[-1]["recalls"]
    # Measured: R@1 0.150 -> 0.225 and R@5 0.400 -> 0.650 (deterministic on CPU).
    assert after["1"] > before["1"] and after["5"] >= before["5"] + 0.1, (before, after)
    assert "nordland_64x32 winter->summer [0:40]" in summary["val_dataset"]
    assert summary["global_step"] == 6
    for name in ("config.yaml", "model.pt", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (uninterrupted_run / name).is_file(), name
    from structvpr.model.model_file import load_model_file

    model, metadata = load_model_file(uninterrupted_run / "model.pt")
    assert metadata["branch"] == "rgb" and metadata["stage"] == 1
    assert metadata["weights_from"].endswith("best.ckpt")
    best = network_state(uninterrupted_run / "checkpoints" / "best.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[f"network.{key}"]), key


def test_resume_continues_and_matches_uninterrupted(
    fixtures_dir: Path, tmp_path: Path, uninterrupted_run: Path
) -> None:
    fit_stage1(tiny_config(fixtures_dir, tmp_path, "train.epochs=1"), "rgb")
    last = stage1_run_dir(tiny_config(fixtures_dir, tmp_path), "rgb") / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, map_location="cpu", weights_only=True)
    assert (stopped["epoch"], stopped["global_step"]) == (0, 3)
    with pytest.raises(ValueError, match="already has checkpoints; pass --resume"):
        fit_stage1(tiny_config(fixtures_dir, tmp_path), "rgb")
    trainer, _ = fit_stage1(tiny_config(fixtures_dir, tmp_path, "train.resume=true"), "rgb")
    assert (trainer.current_epoch, trainer.global_step) == (2, 6)
    with open(last.parent.parent / "logs" / "metrics.csv", newline="") as handle:
        logged_epochs = {int(row["epoch"]) for row in csv.DictReader(handle)}
    assert logged_epochs == {0, 1}  # the rows of the epoch before the resume are kept
    resumed = network_state(last)
    reference = network_state(uninterrupted_run / "checkpoints" / "last.ckpt")
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key


def test_resume_without_checkpoint_is_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="last.ckpt: no checkpoint to resume from"):
        fit_stage1(tiny_config(fixtures_dir, tmp_path, "train.resume=true"), "rgb")


def test_unreadable_checkpoint_is_one_error_naming_it(fixtures_dir: Path, tmp_path: Path) -> None:
    last = stage1_run_dir(tiny_config(fixtures_dir, tmp_path), "rgb") / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{last}: refused to load: not a checkpoint of weights"):
        fit_stage1(tiny_config(fixtures_dir, tmp_path, "train.resume=true"), "rgb")


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = tmp_path / "nan.yaml"
    from structvpr.config import dump_config

    dump_config(tiny_config(fixtures_dir, tmp_path / "runs", "train.inject_nan_at_step=4"), config_path)
    exit_code = structvpr_main(["train", "--config", str(config_path), "--stage", "1", "--branch", "rgb"])
    assert exit_code == 1
    message = capsys.readouterr().err
    assert "non-finite training loss (nan) at global step 4 (epoch 1, batch 1" in message
    last = tmp_path / "runs" / "stage1-rgb" / "checkpoints" / "last.ckpt"
    assert f"last good checkpoint kept: {last}" in message
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 3)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def write_labelled_sequence(root: Path, frames: int = 30) -> None:
    """Two frame-aligned folders of 32x32 images with label maps (trainIds) in `<folder>_labels/`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("summer", "winter"):
        (root / folder).mkdir(parents=True)
        (root / f"{folder}_labels").mkdir()
        for frame in range(frames):
            # A sky/building/road layout whose horizon moves with the frame: places differ.
            labels = np.full((32, 32), 0, dtype=np.uint8)
            horizon = 6 + frame % 20
            labels[:horizon] = 10
            labels[horizon : horizon + 6, : 8 + frame % 24] = 2
            labels[0, 0] = 255
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / folder / f"{frame:05d}.png")
            Image.fromarray(labels).save(root / f"{folder}_labels" / f"{frame:05d}.png")


def test_seg_branch_trains_on_label_maps_and_writes_a_seg_branch_file(tmp_path: Path) -> None:
    from structvpr.model.branches import load_seg_branch

    write_labelled_sequence(tmp_path / "town")
    source = {
        "path": str(tmp_path / "town"),
        "layout": "sequence",
        "options": {"database_folder": "summer", "query_folder": "winter", "frame_tolerance": 1},
    }
    config = load_config(
        None,
        [
            f"data.train={json.dumps(source)}",
            f"data.val={json.dumps({**source, 'index_range': [0, 10]})}",
            "data.num_workers=0",
            "model.backbone=resnet18",
            "model.pretrained=false",
            "model.image_size=[32,32]",
            "train.places_per_batch=2",
            "train.images_per_place=2",
            "train.batches_per_epoch=2",
            "train.epochs=1",
            "train.accelerator=cpu",
            "train.devices=1",
            "train.validate_before_training=false",
            f"train.output_dir={tmp_path / 'runs'}",
        ],
    )
    run_dir = run_stage1(config, "seg")
    teacher, metadata = load_seg_branch(run_dir / "model.pt")
    assert teacher.config.in_channels == 6 and metadata["branch"] == "seg"  # structural-6 SLME input
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == 2 and 0.0 <= summary["best_val_r1"] <= 1.0
