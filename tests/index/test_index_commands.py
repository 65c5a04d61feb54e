"""`structvpr index build` (resumable, checked up front) and `structvpr query` on real Corridor images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from structvpr.cli import main
from structvpr.index import PlaceIndex
from structvpr.model import ModelConfig, build_model
from structvpr.model.model_file import save_model_file


def _save_model(path: Path, seed: int, descriptor_dim: int = 32) -> Path:
    torch.manual_seed(seed)
    network = build_model(
        ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=descriptor_dim)
    )
    save_model_file(network, path, {"train_dataset": "none (random weights)"})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random models: a and b (D = 32, different weights), d16 (D = 16)."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "a": _save_model(folder / "a.pt", 0),
        "b": _save_model(folder / "b.pt", 1),
        "d16": _save_model(folder / "d16.pt", 2, descriptor_dim=16),
    }


def _map_folder(fixtures_dir: Path, tmp_path: Path, count: int) -> tuple[Path, list[Path]]:
    source = sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[:count]
    folder = tmp_path / "map"
    folder.mkdir()
    for path in source:
        shutil.copy(path, folder / path.name)
    return folder, [folder / path.name for path in source]


def _build(folder: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["index", "build", str(folder), "--model", str(model), "--out", str(out), "--quiet", *extra])


def _chunk_times(work: Path) -> dict[str, int]:
    return {chunk.name: chunk.stat().st_mtime_ns for chunk in work.glob("chunk_*.npz")}


def test_interrupted_build_resumes_and_query_finds_the_map_images(
    models: dict[str, Path], fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, images = _map_folder(fixtures_dir, tmp_path, 20)
    # A truncated image in the 3rd chunk stops the build like a crash would, after 2 chunks.
    damaged = images[13]
    original = damaged.read_bytes()
    damaged.write_bytes(original[:200])
    out = tmp_path / "index"
    arguments = ["--chunk-size", "6", "--batch-size", "3"]
    assert _build(folder, models["a"], out, *arguments) == 1
    error = capsys.readouterr().err
    assert f"{damaged}: cannot decode image" in error and "--on-bad-image skip" in error
    work = tmp_path / "index.partial"
    kept = _chunk_times(work)
    assert sorted(kept) == ["chunk_000000.npz", "chunk_000001.npz"]

    damaged.write_bytes(original)  # repaired: the same build resumes
    assert _build(folder, models["a"], out, *arguments, "--keep-descriptors") == 0
    assert "reused 12 descriptors" in capsys.readouterr().out
    assert {name: _chunk_times(work)[name] for name in kept} == kept  # reused, not recomputed
    index = PlaceIndex.load(out)
    assert len(index) == 20 and index.metadata["paths"][13] == damaged.name

    # ...and the resumed index equals a from-scratch build (other chunking, work folder removed).
    fresh = tmp_path / "fresh"
    assert _build(folder, models["a"], fresh, "--chunk-size", "7") == 0 and not (tmp_path / "fresh.partial").exists()
    np.testing.assert_allclose(index.stored_vectors(), PlaceIndex.load(fresh).stored_vectors(), atol=1e-6)

    capsys.readouterr()
    queries = [str(images[3]), str(images[17])]
    assert main(["query", *queries, "--index", str(out), "-k", "3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    top1 = [row for row in rows if row["rank"] == 1]
    assert [row["map_path"] for row in top1] == [images[3].name, images[17].name]
    assert all(row["score"] == pytest.approx(1.0, abs=1e-4) for row in top1)

    # A model with another descriptor size is refused with a clear message.
    assert main(["query", queries[0], "--index", str(out), "--model", str(models["d16"])]) == 1
    assert "not the model this index was built with" in capsys.readouterr().err


def test_a_corrected_rerun_keeps_the_finished_chunks_and_bad_images_can_be_skipped(
    models: dict[str, Path], fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 13 item 2: a typo in --model, or deleting a corrupt image, used to meet "an unfinished
    build with a different model / images_sha256 is here; delete the folder" and lose every chunk."""
    folder, images = _map_folder(fixtures_dir, tmp_path, 16)
    images[9].write_bytes(b"not a jpeg")
    out, work = tmp_path / "index", tmp_path / "index.partial"
    assert _build(folder, models["a"], out, "--chunk-size", "4", "--batch-size", "4") == 1
    kept = _chunk_times(work)
    assert len(kept) == 2
    # A typo in --model: one line naming the file; the finished chunks stay.
    assert _build(folder, tmp_path / "a_typo.pt", out, "--chunk-size", "4") == 1
    assert "a_typo.pt: no such model file" in capsys.readouterr().err
    assert _chunk_times(work) == kept
    # Another model on the same work folder: its rows are computed, the first model's are not used.
    assert _build(folder, models["b"], tmp_path / "index_b", "--chunk-size", "4") == 1
    capsys.readouterr()
    # The corrupt image is deleted: 8 rows reused, 7 described, nothing to delete by hand.
    images[9].unlink()
    assert _build(folder, models["a"], out, "--chunk-size", "4", "--keep-descriptors") == 0
    assert "reused 8 descriptors" in capsys.readouterr().out
    assert {name: _chunk_times(work)[name] for name in kept} == kept
    index = PlaceIndex.load(out)
    assert len(index) == 15 and images[9].name not in set(index.metadata["paths"])
    # --restart throws the kept descriptors away on purpose.
    assert _build(folder, models["a"], out, "--chunk-size", "4", "--restart", "--keep-descriptors") == 0
    assert "reused" not in capsys.readouterr().out
    assert not set(_chunk_times(work)) & set(kept) or all(_chunk_times(work)[n] != t for n, t in kept.items())


def test_on_bad_image_skip_leaves_bad_files_out_and_counts_them(
    models: dict[str, Path], fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 13 item 2: `index build` and `query` had no --on-bad-image skip."""
    folder, images = _map_folder(fixtures_dir, tmp_path, 10)
    images[4].write_bytes(images[4].read_bytes()[:100])
    out = tmp_path / "index"
    assert _build(folder, models["a"], out, "--on-bad-image", "skip") == 0
    assert f"skipped 1 files: 1 bad_image (first: {images[4]}: cannot decode image" in capsys.readouterr().out
    index = PlaceIndex.load(out)
    assert len(index) == 9 and list(index.metadata["paths"]) == [p.name for p in images if p != images[4]]
    queries = [str(images[4]), str(images[7])]
    assert main(["query", *queries, "--index", str(out), "-k", "1", "--format", "json"]) == 1
    assert f"{images[4]}: cannot decode image" in capsys.readouterr().err
    assert main(["query", *queries, "--index", str(out), "-k", "1", "--format", "json", "--on-bad-image", "skip"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 files: 1 bad_image" in captured.err
    assert [row["map_path"] for row in json.loads(captured.out)] == [images[7].name]


def test_query_with_another_model_of_the_same_dimension_is_refused_naming_both(
    models: dict[str, Path], fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 13 item 3: another model of the same D returned results (scores ~0.66) with no warning."""
    folder, images = _map_folder(fixtures_dir, tmp_path, 6)
    out = tmp_path / "index"
    assert _build(folder, models["a"], out) == 0
    capsys.readouterr()
    query = ["query", str(images[2]), "--index", str(out), "-k", "1", "--model", str(models["b"])]
    assert main(query) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"{models['b']}: not the model this index was built with" in error and str(models["a"]) in error
    assert main([*query, "--allow-model-mismatch", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["score"] < 0.999


def test_index_parameters_and_output_are_checked_before_any_image_is_described(
    models: dict[str, Path], fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 13 item 6: --pq-m not dividing D, ivfpq on too small a map (a raw FAISS message) and an
    --out that is not an index folder were found only after every image was described."""
    folder, _ = _map_folder(fixtures_dir, tmp_path, 12)
    out = tmp_path / "index"
    cases = [
        (
            ["--kind", "ivfpq", "--pq-m", "7", "--nlist", "1", "--pq-nbits", "2"],
            "pq-m=7 must divide the descriptor dimension 32",
        ),
        (["--kind", "ivfpq"], "needs at least 256 training descriptors, got 12 (of 12): use --kind flat or hnsw"),
        (
            ["--kind", "ivfflat", "--nlist", "50"],
            "ivfflat with nlist=50 needs at least 50 descriptors to train, got 12",
        ),
    ]
    for extra, message in cases:
        assert _build(folder, models["a"], out, *extra) == 1
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, error
        assert not (tmp_path / "index.partial").exists()  # nothing was described
    not_an_index = tmp_path / "photos"
    not_an_index.mkdir()
    (not_an_index / "holiday.jpg").write_bytes(b"keep me")
    assert _build(folder, models["a"], not_an_index) == 1
    assert f"{not_an_index}: exists, is not empty and is not a structvpr index folder" in capsys.readouterr().err
    assert (not_an_index / "holiday.jpg").read_bytes() == b"keep me"
    assert not (tmp_path / "photos.partial").exists()
    # Search parameters below 1 are refused by the parser.
    with pytest.raises(SystemExit) as stop:
        main(["query", str(folder), "--index", str(out), "--ef-search", "-5"])
    assert stop.value.code == 2 and "--ef-search: must be >= 1, got -5" in capsys.readouterr().err
