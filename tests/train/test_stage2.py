"""Stage II end to end on a tiny on-disk dataset: partition -> cache -> student; export equality."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.config import config_to_dict, load_config
from structvpr.io_utils import sha256_of_file

model_file = pytest.importorskip("structvpr.model.model_file")

SIZE = 64  # scenes on disk; the models read them at INPUT x INPUT
INPUT = 32
# Cityscapes trainIds used by the fake scenes: road, building, vegetation, sky, car (dynamic).
ROAD, BUILDING, VEGETATION, SKY, CAR = 0, 2, 8, 10, 13


def _scene(place: int, view: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 RGB image and its trainId label map: sky / facade or trees / road, one car."""
    labels = np.full((SIZE, SIZE), ROAD, np.uint8)
    horizon = 18 + (place * 5) % 12
    labels[:horizon] = SKY
    middle = BUILDING if place % 2 else VEGETATION
    labels[horizon:44] = middle
    start = (place * 11 + view * 3) % 40
    labels[46:56, start : start + 16] = CAR
    palette = rng.integers(0, 255, size=(256, 3)).astype(np.uint8)
    place_palette = np.random.default_rng(place).integers(0, 255, size=(256, 3)).astype(np.uint8)
    image = place_palette[labels] // 2 + palette[labels] // 4 + rng.integers(0, 40, (SIZE, SIZE, 3)).astype(np.uint8)
    return image, labels


def _write_split(root: Path, split: str, places: int, db_per_place: int, rng: np.random.Generator) -> None:
    for folder, views in (("database", range(db_per_place)), ("queries", [db_per_place])):
        for place in range(places):
            for view in views:
                image, labels = _scene(place, view, rng)
                name = f"@{place * 100.0 + view * 0.5:.2f}@{1000.0:.2f}@{place}_{view}@"
                for sub, array, suffix in ((folder, image, ".jpg"), (f"{folder}_labels", labels, ".png")):
                    target = root / "images" / split / sub / f"{name}{suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(target)


pytestmark = pytest.mark.usefixtures("one_torch_thread_for_module")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    _write_split(root / "data", "train", places=6, db_per_place=3, rng=rng)
    _write_split(root / "data", "val", places=4, db_per_place=1, rng=rng)
    config = load_config(
        None,
        [
            f"data.train.path={root / 'data'}",
            "data.train.split=train",
            f"data.val.path={root / 'data'}",
            "data.val.split=val",
            "data.num_workers=0",
            "data.val_batch_size=8",
            "model.backbone=efficientnet_lite0",
            "model.pretrained=false",
            f"model.image_size=[{INPUT},{INPUT}]",
            "train.epochs=1",
            "train.batches_per_epoch=2",
            "train.places_per_batch=3",
            "train.images_per_place=2",
            "train.accelerator=cpu",
            "train.devices=1",
            f"train.output_dir={root / 'runs'}",
            "train.validate_before_training=false",
            "train.seed=0",
        ],
    )
    return root, config


def _write_stage1_models(config) -> tuple[Path, Path]:
    """Untrained Stage I models (the partition and Stage II only need frozen files)."""
    from structvpr.model.branches import build_seg_branch, save_seg_branch
    from structvpr.model.vpr_net import build_model
    from structvpr.segment.classes import load_merge_table

    torch.manual_seed(0)
    out = Path(config.train.output_dir)
    save_seg_branch(
        build_seg_branch(config, load_merge_table(config.structvpr.merge_table)),
        out / "stage1-seg" / "model.pt",
        {"stage": 1},
    )
    model_file.save_model_file(build_model(config.model), out / "stage1-rgb" / "model.pt", {"stage": 1})
    return out / "stage1-seg" / "model.pt", out / "stage1-rgb" / "model.pt"


def test_partition_cache_and_stage2_run(tiny_run) -> None:
    from structvpr.train.partition_file import load_partition
    from structvpr.train.partition_run import run_partition
    from structvpr.train.stage2 import run_stage2
    from structvpr.train.teacher_cache import load_teacher_cache

    _, config = tiny_run
    teacher_path, student_path = _write_stage1_models(config)
    outputs = run_partition(config)
    partition = load_partition(outputs.partition_file)
    assert len(partition.sample_paths) == 6 * 4
    assert set(partition.groups.tolist()) <= {1, 2, 3, 4}  # every image has a positive
    assert partition.metadata["teacher_sha256"] == sha256_of_file(teacher_path)
    assert partition.metadata["student_sha256"] == sha256_of_file(student_path)
    assert outputs.plot_file.is_file()
    cache = load_teacher_cache(outputs.cache_dir)
    assert cache.units.shape[0] == 24 and cache.unit_presence.shape == cache.units.shape[:2]
    # The dynamic class (car) is excluded; ground, construction or vegetation, and sky are present.
    assert cache.unit_presence.any(axis=0).sum() >= 3
    # The Stage II rate reaches the optimiser as given; the stored config keeps the user's train.lr.
    stage2_config = dataclasses.replace(config, structvpr=dataclasses.replace(config.structvpr, stage2_lr=3e-4))
    run_dir = run_stage2(stage2_config)
    network, metadata = model_file.load_model_file(run_dir / "model.pt")
    assert metadata["stage"] == 2
    assert metadata["learning_rate"] == pytest.approx(3e-4)
    assert metadata["config"]["train"]["lr"] == pytest.approx(config.train.lr)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert not any("label_head" in key for key in network.state_dict())


def test_a_cache_of_the_training_set_before_it_moved_names_what_differs(tiny_run, tmp_path: Path) -> None:
    """Stage II refuses a teacher cache of other samples and says how they differ: a moved folder
    (same count, other paths) names the first differing sample; a changed set names both counts."""
    import shutil

    from structvpr.train.datamodule import Stage2DataModule
    from structvpr.train.partition_file import PartitionFileError
    from structvpr.train.stage2 import run_stage2
    from structvpr.train.teacher_cache import save_teacher_cache

    root, config = tiny_run
    datamodule = Stage2DataModule(config)
    datamodule.setup("fit")
    assert datamodule.train_set is not None
    paths = [str(p) for p in datamodule.train_set.paths]
    places = np.asarray(datamodule.train_set.places, dtype=np.int64)
    moved = tmp_path / "moved"
    shutil.copytree(root / "data", moved)
    moved_config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, train=dataclasses.replace(config.data.train, path=str(moved))),
        train=dataclasses.replace(config.train, output_dir=str(tmp_path / "runs")),
    )
    metadata = {"target": config.structvpr.distill_target}
    count = len(paths)
    save_teacher_cache(tmp_path / "old", paths, np.zeros((count, 8)), places, np.ones(count), metadata)
    with pytest.raises(PartitionFileError) as error:
        run_stage2(moved_config, cache_dir=tmp_path / "old")
    message = str(error.value)
    assert f"same {count} samples, but sample 0 is {paths[0]} in the cache and {moved}/images/train/" in message
    assert message.endswith("in this training set); run `structvpr partition` again")

    save_teacher_cache(
        tmp_path / "fewer", paths[:-1], np.zeros((count - 1, 8)), places[:-1], np.ones(count - 1), metadata
    )
    with pytest.raises(PartitionFileError, match=f"the cache holds {count - 1} samples, this training set {count}"):
        run_stage2(moved_config, cache_dir=tmp_path / "fewer")


def _module_and_batch(config, weights: list[float]):
    from structvpr.train.datamodule import Stage2DataModule
    from structvpr.train.stage2 import Stage2Module
    from structvpr.train.teacher_cache import TeacherCache

    datamodule = Stage2DataModule(config)
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = Stage2Module(config_to_dict(config), {"target_dim": 3200, "unit_dim": 128, "label_dim": 1920})
    indices = [0, 1, 4, 5]
    batch = torch.utils.data.default_collate([datamodule.train_set[i] for i in indices])
    count = len(datamodule.train_set)
    generator = np.random.default_rng(1)
    cache = TeacherCache(
        Path("."),
        [str(p) for p in datamodule.train_set.paths],
        generator.normal(size=(count, 3200)).astype(np.float32),
        np.asarray(datamodule.train_set.places, dtype=np.int64),
        generator.normal(size=(count, 1920)).astype(np.float16),
        generator.normal(size=(count, 15, 128)).astype(np.float16),
        np.ones((count, 15), bool),
        np.zeros(count, np.float32),
        {},
    )
    cache.weights[indices] = weights
    module.attach_teacher(cache)
    return module, batch, cache, indices


def test_g4_sample_teacher_outputs_do_not_change_the_stage2_gradient(tiny_run) -> None:
    _, config = tiny_run
    module, batch, cache, indices = _module_and_batch(config, [1.0, 0.5, 0.0, 0.25])
    module.log = lambda *args, **kwargs: None  # no Trainer attached

    def gradients() -> list[torch.Tensor]:
        module.zero_grad()
        module.train()
        torch.manual_seed(0)
        module.training_step(batch, 0).backward()
        return [p.grad.clone() for p in module.network.parameters() if p.grad is not None]

    before = gradients()
    g4 = indices[2]  # weight 0: group G4
    cache.targets[g4] = -cache.targets[g4] + 3.0
    cache.units[g4] = np.random.default_rng(5).normal(size=cache.units[g4].shape).astype(np.float16)
    cache.label_descriptors[g4] = -cache.label_descriptors[g4]
    module.attach_teacher(cache)  # the contrastive bank is re-read
    after = gradients()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, after, strict=False))
    other = indices[0]  # weight 1: its teacher outputs do matter
    cache.targets[other] = -cache.targets[other]
    module.attach_teacher(cache)
    changed = gradients()
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after, changed, strict=False))


def test_exported_student_descriptor_equals_training_global_descriptor(tiny_run, tmp_path) -> None:
    _, config = tiny_run
    module, batch, _, _ = _module_and_batch(config, [1.0, 1.0, 1.0, 1.0])
    module.eval()
    with torch.no_grad():
        levels = module.network.forward_features(batch["image"])
        training_global = module.network.aggregate(levels)
        module.label_head(levels, torch.ones(4, 6, INPUT, INPUT) / 6)  # the training-only path runs too
    model_file.save_model_file(module.network, tmp_path / "student.pt", {"stage": 2})
    exported, _ = model_file.load_model_file(tmp_path / "student.pt")
    assert type(exported).__name__ == "VPRNet"
    assert not any("label" in name for name, _ in exported.named_modules())
    with torch.no_grad():
        assert torch.allclose(exported.eval()(batch["image"]), training_global, atol=1e-6)


@pytest.mark.slow
def test_run_all_writes_a_report_with_every_row(tiny_run, tmp_path) -> None:
    import json

    from structvpr.cli import main
    from structvpr.config import dump_config

    _, config = tiny_run
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, output_dir=str(tmp_path / "runs")))
    dump_config(config, tmp_path / "tiny.yaml")
    # Through the command line: `--ablations` chooses which ablations run besides student and baseline.
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--stage", "all", "--ablations", "no_weights"]) == 0
    root = tmp_path / "runs"
    rows = json.loads((root / "report.json").read_text())["rows"]
    assert [row["run"] for row in rows] == [
        "stage1-rgb",
        "stage1-seg",
        "stage2",
        "stage2-vpr-only",
        "stage2-no_weights",
    ]
    for row in rows:
        assert row["dataset"] and row["split"] == "val" and row["queries"] == 4 and row["database"] == 4
        assert 0.0 <= row["R@1"] <= row["R@5"] <= 100.0
    assert [row["epochs"] for row in rows] == [1, 1, 2, 2, 2]
    assert "| RGB baseline (same Stage II steps, VPR loss only) |" in (root / "report.md").read_text()
