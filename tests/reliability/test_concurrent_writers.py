"""Two writers on one output, and a writer killed while holding the lock (issue 13 item 1).

Real `structvpr index build` processes run side by side; nothing is mocked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import kill_group, run_structvpr, start, wait_until

from structvpr.io_utils import sha256_of_file


@pytest.fixture(scope="module")
def two_models_and_a_map(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tiny models of the same descriptor size (different weights) and 24 Corridor map images."""
    from structvpr.model import ModelConfig, build_model
    from structvpr.model.model_file import save_model_file

    root = tmp_path_factory.mktemp("concurrent")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        network = build_model(
            ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=32)
        )
        save_model_file(network, root / f"model_{seed}.pt", {})
        models.append(root / f"model_{seed}.pt")
    folder = root / "map"
    folder.mkdir()
    for path in sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[:24]:
        shutil.copy(path, folder / path.name)
    return {"models": models, "map": folder}


def _build_arguments(setup: dict, model: Path, out: Path) -> list[str]:
    return [
        "index",
        "build",
        str(setup["map"]),
        "--model",
        str(model),
        "--out",
        str(out),
        "--chunk-size",
        "4",
        "--batch-size",
        "4",
        "--quiet",
    ]


def _reference_descriptors(model: Path, images: list[Path]) -> np.ndarray:
    import structvpr

    return structvpr.load(model).describe(images)


def test_two_builds_with_different_models_started_together_give_one_unmixed_index(
    two_models_and_a_map: dict, tmp_path: Path, one_torch_thread: None
) -> None:
    from structvpr.index import PlaceIndex

    setup = two_models_and_a_map
    out = tmp_path / "index"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [
        start(*_build_arguments(setup, model, out), log=log) for model, log in zip(setup["models"], logs, strict=True)
    ]
    for process in processes:
        process.wait(timeout=240)
    codes = [process.returncode for process in processes]
    texts = [log.read_text(errors="replace") for log in logs]
    # Either one waited for nothing and was refused naming the holder, or (a slow start) they ran
    # one after the other; never two writers at once.
    assert sorted(codes) in ([0, 1], [0, 0]), texts
    for code, text in zip(codes, texts, strict=True):
        if code == 1:
            assert f"{out}: another structvpr process is writing here: pid" in text, text
            assert "Traceback" not in text and text.count("\n") == 1, text
    index = PlaceIndex.load(out)
    by_hash = {sha256_of_file(model): model for model in setup["models"]}
    model = by_hash[index.info["model_sha256"]]
    images = [setup["map"] / name for name in index.metadata["paths"]]
    assert len(index) == 24 == len(images)
    expected = _reference_descriptors(model, images)
    np.testing.assert_allclose(index.stored_vectors(), expected, rtol=0, atol=1e-5)
    other = _reference_descriptors(next(m for m in setup["models"] if m != model), images)
    assert np.abs(index.stored_vectors() - other).max() > 0.1  # the comparison can tell the models apart
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name not in ("index", ".index.lock", *[log.name for log in logs])
    ]
    assert leftovers == [], leftovers  # no work folder, staging folder or old index left


@pytest.mark.slow  # two index-build processes (~10 s each on 2 loaded cores)
def test_the_lock_of_a_killed_build_is_taken_over_and_its_chunks_reused(
    two_models_and_a_map: dict, tmp_path: Path
) -> None:
    from structvpr.index import PlaceIndex
    from structvpr.locks import read_lock_holder

    setup = two_models_and_a_map
    out, work = tmp_path / "index", tmp_path / "index.partial"
    arguments = _build_arguments(setup, setup["models"][0], out)
    log = tmp_path / "killed.log"
    process = start(*arguments, log=log)
    wait_until(process, lambda: len(list(work.glob("chunk_*.npz"))) >= 2, timeout=240, log=log)
    assert kill_group(process), "the build finished before the kill: nothing was interrupted"
    assert read_lock_holder(out)["pid"] == process.pid  # the killed holder never released it
    kept = {chunk.name: chunk.stat().st_mtime_ns for chunk in work.glob("chunk_*.npz")}
    result = run_structvpr(*arguments, "--keep-descriptors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{out}: taking over the lock of pid {process.pid}" in result.stderr
    assert f"reused {4 * len(kept)} descriptors" in result.stdout
    assert {name: (work / name).stat().st_mtime_ns for name in kept} == kept
    assert len(PlaceIndex.load(out)) == 24
    assert read_lock_holder(out) == {}  # released cleanly this time


def test_every_writing_command_refuses_an_output_another_process_holds(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock guards run folders, segment caches, synth output, exports and evaluation results too.
    The lock is held here on another open file description, exactly as another process would."""
    from structvpr.cli import main
    from structvpr.locks import output_lock, run_folder_lock

    runs, town, export, results = tmp_path / "runs", tmp_path / "town", tmp_path / "m.onnx", tmp_path / "results"
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(fixtures_dir / "corridor" / "ref" / "0000000.jpg", images / "0000000.jpg")
    config = tmp_path / "config.yaml"
    config.write_text(f"train:\n  output_dir: {runs}\n", encoding="utf-8")
    cases = [
        ("train", runs, None, ["train", "--config", str(config), "--stage", "1"]),
        ("synth", town, None, ["synth", "--out", str(town), "--places", "1"]),
        ("export", export, None, ["export", "--model", "m.pt", "--out", str(export)]),
        ("evaluate", results, None, ["evaluate", str(images), "--out", str(results)]),
        ("segment", images, images / ".structvpr-segment.lock", ["segment", str(images)]),
    ]
    for command, target, lock_file, arguments in cases:
        with output_lock(target, lock_file=lock_file):
            assert main(arguments) == 1, command
        error = capsys.readouterr().err
        assert f"structvpr {command}: error: {target}: another structvpr process is writing here: pid" in error
    assert not town.exists() and not export.exists() and not results.exists()
    # Secondary ranks of a distributed run (same command line, LOCAL_RANK >= 1) do not take the lock.
    with output_lock(runs):
        monkeypatch.setenv("LOCAL_RANK", "1")
        with run_folder_lock(runs):
            pass
