"""`kill -9` at seeded random moments and at chosen commit points (the renames of atomic writes)
of training, the partition and index building; then resume. Real child processes, real files,
real SIGKILL (see faults.py).

After each kill: every file on disk loads (checkpoints with torch.load(weights_only=True), PNG,
npz/npy, index) or is refused as incomplete with a clear error; the resumed run completes; and
its results equal an uninterrupted run.

Already covered elsewhere and not repeated here: synth killed (tests/data/test_synth.py), segment
cache killed (tests/segment/test_segment_command.py), demo killed (tests/test_demo.py), Stage I
clean stop + resume and NaN stop (tests/train/test_stage1.py), index build stopped by a bad image
(tests/index/test_index_commands.py).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import (
    kill_group,
    run_killed_at_replace,
    run_structvpr,
    start,
    temporary_files,
    wait_until,
)
from PIL import Image
from tiny_runs import write_tiny_config

KILL_SEED = 8  # seeded random delays: a failure can be replayed


def load_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint, read the only way structvpr reads one."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_run_files_load(run_dir: Path) -> None:
    """Every file a (possibly killed) Stage I run wrote can be read back."""
    from structvpr.config import load_config

    load_config(run_dir / "config.yaml")
    for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):
        content = load_checkpoint(checkpoint)
        assert {"state_dict", "optimizer_states", "epoch", "global_step"} <= content.keys(), checkpoint
        assert all(torch.isfinite(v).all() for v in content["state_dict"].values() if v.is_floating_point())
    for name in ("summary.json",):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    if (run_dir / "model.pt").exists():
        from structvpr.model.model_file import load_model_file

        load_model_file(run_dir / "model.pt")


# ----------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def training_runs(town: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Stage I (3 epochs x 3 steps) twice, side by side (one thread each): uninterrupted, and
    SIGKILLed at a seeded random moment after its first checkpoint, then resumed with --resume."""
    root = tmp_path_factory.mktemp("training")
    reference_config = write_tiny_config(root / "reference.yaml", town, root / "reference")
    reference_log = root / "reference.log"
    reference = start("train", "--config", reference_config, log=reference_log)
    config = write_tiny_config(root / "killed.yaml", town, root / "killed")
    run_dir = root / "killed" / "stage1-rgb"
    log = root / "killed.log"
    process = start("train", "--config", config, log=log)
    wait_until(process, (run_dir / "checkpoints" / "last.ckpt").is_file, timeout=240, log=log)
    time.sleep(random.Random(KILL_SEED).uniform(0.0, 0.4))  # in epoch 1 or its checkpoint save
    assert kill_group(process), "the run finished before the kill: nothing was interrupted"
    assert not (run_dir / "model.pt").exists() and not (run_dir / "summary.json").exists()
    assert_run_files_load(run_dir)  # nothing torn by the kill
    killed_at_epoch = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"]
    resumed = run_structvpr("train", "--config", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait(timeout=300) == 0, reference_log.read_text(errors="replace")[-3000:]
    return {"run_dir": run_dir, "killed_at_epoch": killed_at_epoch, "reference": root / "reference" / "stage1-rgb"}


@pytest.mark.slow  # three Stage I processes, two of them side by side
def test_killed_training_resumes_to_completion_and_every_file_loads(training_runs: dict) -> None:
    run_dir, uninterrupted_training = training_runs["run_dir"], training_runs["reference"]
    assert training_runs["killed_at_epoch"] < 2
    assert_run_files_load(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((uninterrupted_training / "summary.json").read_text())
    steps = (summary["epochs_run"], summary["global_step"])
    assert steps == (reference["epochs_run"], reference["global_step"]) == (3, 9)
    # The recall history of the epochs before the kill is kept (it travels in last.ckpt).
    assert [entry["when"] for entry in summary["recall_history"]] == ["epoch 0", "epoch 1", "epoch 2"]
    final = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert (final["epoch"], final["global_step"]) == (2, 9)


@pytest.mark.slow
def test_killed_training_reaches_the_uninterrupted_weights_and_recalls(training_runs: dict) -> None:
    """Exact on CPU: stochastic depth is reseeded per batch (lightning_vpr.on_train_batch_start), so
    the RNG draws Lightning makes around a resume cannot shift the masks (it did, when the reseed was
    per epoch)."""
    run_dir, uninterrupted_training = training_runs["run_dir"], training_runs["reference"]
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    reference = load_checkpoint(uninterrupted_training / "checkpoints" / "last.ckpt")["state_dict"]
    assert resumed.keys() == reference.keys()
    different = [key for key in reference if not torch.equal(resumed[key], reference[key])]
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = json.loads((uninterrupted_training / "summary.json").read_text())
    assert summary["recall_history"] == expected["recall_history"]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_resumed_training_keeps_the_metrics_of_the_epochs_before_the_kill(training_runs: dict) -> None:
    """Lightning's CSVLogger deletes metrics.csv when a resumed run starts; stage1 puts the rows of
    the epochs saved in last.ckpt back."""
    import csv

    def logged_values(run_dir: Path) -> set[tuple[str, str, str, str]]:
        with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
            return {
                (row["epoch"], row["step"], key, value)
                for row in csv.DictReader(handle)
                for key, value in row.items()
                if value and key not in ("epoch", "step")
            }

    resumed, reference = logged_values(training_runs["run_dir"]), logged_values(training_runs["reference"])
    assert sorted({int(epoch) for epoch, *_ in resumed}) == [0, 1, 2]
    assert resumed == reference  # the same losses and recalls, logged once each


# ----------------------------------------------------------------------------------- partition
def _write_stage1_models(config_path: Path, seed: int) -> tuple[Path, Path]:
    """Untrained Stage I teacher (seg-branch) and student files: the partition only needs frozen models."""
    from structvpr.config import load_config
    from structvpr.model.branches import build_seg_branch, save_seg_branch
    from structvpr.model.model_file import save_model_file
    from structvpr.model.vpr_net import build_model
    from structvpr.segment.classes import load_merge_table

    config = load_config(config_path)
    torch.manual_seed(seed)
    out = Path(config.train.output_dir)
    teacher = build_seg_branch(config, load_merge_table(config.structvpr.merge_table), load_pretrained_weights=False)
    save_seg_branch(teacher, out / "stage1-seg" / "model.pt", {"stage": 1, "seed": seed})
    save_model_file(build_model(config.model), out / "stage1-rgb" / "model.pt", {"stage": 1})
    return out / "stage1-seg" / "model.pt", out / "stage1-rgb" / "model.pt"


def _partition_outputs(folder: Path) -> dict[str, np.ndarray]:
    """The partition's arrays and the teacher cache's arrays, for comparing two runs."""
    from structvpr.train.partition import load_partition, load_teacher_cache

    partition = load_partition(folder / "partition.npz")
    cache = load_teacher_cache(folder / "teacher_cache")
    return {
        "ranks": np.stack([partition.teacher_rank, partition.student_rank]),
        "groups": partition.groups,
        "weights": partition.weights,
        "paths": np.asarray(partition.sample_paths),
        "cache_global": np.asarray(cache.global_descriptors),
        "cache_weights": np.asarray(cache.weights),
        "cache_units": np.asarray(cache.units, dtype=np.float32),
    }


def _assert_partition_state_readable(folder: Path) -> None:
    """After a kill, each partition output is either absent, complete, or refused as incomplete."""
    from structvpr.train.partition import (
        PartitionFileError,
        load_partition,
        load_teacher_cache,
    )

    if (folder / "partition.npz").exists():
        load_partition(folder / "partition.npz")
    if (folder / "groups.png").exists():
        Image.open(folder / "groups.png").load()
    if (folder / "teacher_cache" / "cache.json").exists():
        load_teacher_cache(folder / "teacher_cache")
    else:
        with pytest.raises(PartitionFileError, match="teacher cache is missing or incomplete"):
            load_teacher_cache(folder / "teacher_cache")
    for array_file in (folder / "teacher_cache").glob("*.npy"):
        np.load(array_file, allow_pickle=False)


@pytest.fixture(scope="module")
def partition_setup(town: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config + Stage I models, and the outputs of one uninterrupted partition (in this process)."""
    from structvpr.cli import main

    root = tmp_path_factory.mktemp("partition")
    config = write_tiny_config(root / "config.yaml", town, root / "runs")
    teacher, student = _write_stage1_models(config, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the one-thread child processes
    try:
        assert main(["partition", "--config", str(config), "--output", str(root / "reference")]) == 0
    finally:
        torch.set_num_threads(threads)
    return {
        "root": root,
        "config": config,
        "teacher": teacher,
        "student": student,
        "reference": _partition_outputs(root / "reference"),
    }


@pytest.mark.slow  # three partition processes (~8 s each)
def test_partition_killed_at_each_commit_point_then_rerun_gives_the_same_outputs(partition_setup: dict) -> None:
    config, out = partition_setup["config"], partition_setup["root"] / "killed"
    arguments = ("partition", "--config", config, "--output", out)
    # 1: partition.npz written, plot and cache not; 2: every cache array written, cache.json not.
    for pattern, when in ((r"/partition\.npz$", "after"), (r"/cache\.json$", "before")):
        run_killed_at_replace(*arguments, pattern=pattern, when=when)
        _assert_partition_state_readable(out)
    assert not (out / "teacher_cache" / "cache.json").exists()
    stale = temporary_files(out)
    assert [path.name.split(".")[1] for path in stale] == ["cache"], stale  # the unrenamed cache.json
    result = run_structvpr(*arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_partition_state_readable(out)
    outputs = _partition_outputs(out)
    for key, expected in partition_setup["reference"].items():
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(outputs[key], expected, rtol=0, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(outputs[key], expected, err_msg=key)


@pytest.mark.slow
def test_partition_killed_while_rewriting_the_cache_never_leaves_a_mixed_cache(
    partition_setup: dict, tmp_path: Path
) -> None:
    from structvpr.io_utils import sha256_of_file
    from structvpr.model.branches import load_seg_branch, save_seg_branch
    from structvpr.train.partition import PartitionFileError, load_teacher_cache

    out = tmp_path / "partition"
    shutil.copytree(partition_setup["root"] / "reference", out)  # a complete cache of teacher A
    config = partition_setup["config"]
    teacher_b = tmp_path / "teacher_b.pt"  # a retrained teacher: same architecture, other weights
    branch, metadata = load_seg_branch(partition_setup["teacher"])
    with torch.no_grad():
        for parameter in branch.parameters():
            parameter.mul_(1.5)
    save_seg_branch(branch, teacher_b, metadata)
    run_killed_at_replace(
        "partition",
        "--config",
        config,
        "--output",
        out,
        "--teacher",
        teacher_b,
        pattern=r"/global_descriptors\.npy$",
        when="after",
    )
    try:
        cache = load_teacher_cache(out / "teacher_cache")
    except PartitionFileError:
        return  # refused as incomplete: acceptable
    assert cache.metadata["teacher_sha256"] == sha256_of_file(teacher_b), (
        "the cache loads as complete, but its manifest names the previous teacher while its global "
        "descriptors come from the new one"
    )


# ----------------------------------------------------------------------------------- index build
@pytest.fixture(scope="module")
def index_setup(town: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A map folder of the town's 64 JPEGs, a tiny model file, and a reference index (in this process)."""
    from structvpr.cli import main
    from structvpr.index import PlaceIndex
    from structvpr.model import ModelConfig, build_model
    from structvpr.model.model_file import save_model_file

    root = tmp_path_factory.mktemp("index")
    map_folder = root / "map"
    map_folder.mkdir()
    for image in sorted(town.glob("images/*/*/*.jpg")):
        shutil.copy(image, map_folder / image.name)
    torch.manual_seed(0)
    model_path = root / "model.pt"
    save_model_file(
        build_model(
            ModelConfig(backbone="efficientnet_lite0", pretrained=False, image_size=(32, 48), descriptor_dim=32)
        ),
        model_path,
        {},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert (
            main(
                [
                    "index",
                    "build",
                    str(map_folder),
                    "--model",
                    str(model_path),
                    "--out",
                    str(root / "reference"),
                    "--quiet",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    return {
        "root": root,
        "map": map_folder,
        "model": model_path,
        "reference": PlaceIndex.load(root / "reference").stored_vectors(),
    }


def _index_build_arguments(setup: dict, out: Path) -> tuple:
    return (
        "index",
        "build",
        setup["map"],
        "--model",
        setup["model"],
        "--out",
        out,
        "--chunk-size",
        "8",
        "--batch-size",
        "4",
        "--quiet",
    )


def _assert_same_index(out: Path, setup: dict) -> None:
    from structvpr.index import PlaceIndex

    index = PlaceIndex.load(out)
    assert len(index) == len(setup["reference"]) == len(list(setup["map"].glob("*.jpg")))
    np.testing.assert_allclose(index.stored_vectors(), setup["reference"], rtol=0, atol=1e-6)
    result = index.search(setup["reference"][:5], k=1)  # exact search: best = max inner product
    best = (setup["reference"][:5] @ setup["reference"].T).max(axis=1)
    np.testing.assert_allclose(result.scores[:, 0], best, rtol=0, atol=1e-5)


@pytest.mark.slow  # two index-build processes (~8 s each)
def test_index_build_killed_at_a_random_point_resumes_with_its_chunks(index_setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "index"
    work = tmp_path / "index.partial"
    log = tmp_path / "killed.log"
    process = start(*_index_build_arguments(index_setup, out), log=log)
    wait_until(process, (work / "chunk_000000.npz").is_file, timeout=240, log=log)
    first = time.monotonic()
    wait_until(process, (work / "chunk_000001.npz").is_file, timeout=240, log=log)
    chunk_seconds = time.monotonic() - first
    # Within the next two chunks' time: six chunks and the index save are still ahead, on any machine.
    time.sleep(random.Random(KILL_SEED).uniform(0.0, 2 * chunk_seconds))
    assert kill_group(process), "the build finished before the kill: nothing was interrupted"
    assert not (out / "manifest.json").exists()
    chunks = sorted(work.glob("chunk_*.npz"))
    assert 2 <= len(chunks) < 8
    for chunk in chunks:  # every chunk on disk is whole
        assert np.load(chunk, allow_pickle=False)["descriptors"].shape == (8, 32), chunk
    kept = {chunk.name: chunk.stat().st_mtime_ns for chunk in chunks}
    result = run_structvpr(*_index_build_arguments(index_setup, out), "--keep-descriptors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {name: (work / name).stat().st_mtime_ns for name in kept} == kept  # reused, not recomputed
    _assert_same_index(out, index_setup)


@pytest.mark.slow
def test_index_build_killed_before_a_chunk_rename_and_inside_the_save_resumes(
    index_setup: dict, tmp_path: Path
) -> None:
    out = tmp_path / "index"
    arguments = _index_build_arguments(index_setup, out)
    # A chunk fully written to its temporary file, not renamed: the resume must recompute it.
    run_killed_at_replace(*arguments, pattern=r"chunk_000003\.npz$", when="before")
    assert sorted(p.name for p in (tmp_path / "index.partial").glob("chunk_*.npz")) == [
        f"chunk_{n:06d}.npz" for n in range(3)
    ]
    # Then killed in the middle of saving the index (ids written into the staging folder).
    run_killed_at_replace(*arguments, pattern=r"/\.index\.[^/]+\.tmp/ids\.npy$", when="after")
    assert not out.exists() and len(list(tmp_path.glob(".index.*.tmp"))) == 1
    result = run_structvpr(*arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_index(out, index_setup)
    assert not (tmp_path / "index.partial").exists()


@pytest.mark.slow
def test_rebuilding_an_existing_index_killed_mid_swap_keeps_an_index_at_the_path(
    index_setup: dict, tmp_path: Path
) -> None:
    from structvpr.index import PlaceIndex

    out = tmp_path / "index"
    shutil.copytree(index_setup["root"] / "reference", out)  # the index users are querying today
    run_killed_at_replace(*_index_build_arguments(index_setup, out), pattern=r"\.index\.old-\d+$", when="after")
    assert len(PlaceIndex.load(out)) == len(index_setup["reference"])
