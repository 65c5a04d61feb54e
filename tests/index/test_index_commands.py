"""`structvpr index build` (resumable) and `structvpr query` on real Corridor images."""

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


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    network = build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=32))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model_file(network, path, {"train_dataset": "none (random weights)"})
    return path


@pytest.mark.slow  # end-to-end: three CLI builds and a query (~15 s of CPU)
def test_interrupted_build_resumes_and_query_finds_the_map_images(
    small_model_file, fixtures_dir: Path, tmp_path: Path, capsys
) -> None:
    source = sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[:30]
    map_folder = tmp_path / "map"
    map_folder.mkdir()
    for path in source:
        shutil.copy(path, map_folder / path.name)
    # A truncated image in the 3rd chunk stops the build like a crash would, after 2 chunks.
    damaged = map_folder / source[25].name
    damaged.write_bytes(source[25].read_bytes()[:200])
    out = tmp_path / "index"
    common = [
        "index",
        "build",
        str(map_folder),
        "--model",
        str(small_model_file),
        "--kind",
        "flat",
        "--batch-size",
        "4",
        "--quiet",
    ]
    arguments = [*common, "--out", str(out), "--chunk-size", "10"]
    assert main(arguments) == 1
    assert "cannot decode image" in capsys.readouterr().err
    work = tmp_path / "index.partial"
    chunks = sorted(work.glob("chunk_*.npy"))
    assert [chunk.name for chunk in chunks] == ["chunk_000000.npy", "chunk_000001.npy"]
    first_chunk_times = [chunk.stat().st_mtime_ns for chunk in chunks]

    shutil.copy(source[25], damaged)  # repaired: the same build resumes
    assert main([*arguments, "--keep-descriptors"]) == 0
    # The two chunks from the interrupted run were reused, not recomputed.
    assert [chunk.stat().st_mtime_ns for chunk in chunks] == first_chunk_times
    assert len(list(work.glob("chunk_*.npy"))) == 3
    index = PlaceIndex.load(out)
    assert len(index) == 30 and index.metadata["paths"][25] == source[25].name

    # ...and the resumed index equals a from-scratch build (other chunking, work folder removed).
    fresh = tmp_path / "fresh"
    fresh_arguments = [*common, "--out", str(fresh), "--chunk-size", "7"]
    assert main(fresh_arguments) == 0 and not (tmp_path / "fresh.partial").exists()
    np.testing.assert_allclose(index.stored_vectors(), PlaceIndex.load(fresh).stored_vectors(), atol=1e-6)

    capsys.readouterr()
    queries = [str(map_folder / source[3].name), str(map_folder / source[17].name)]
    assert (
        main(
            [
                "query",
                *queries,
                "--index",
                str(out),
                "-k",
                "3",
                "--format",
                "json",
                "--save-preds",
                str(tmp_path / "preds"),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out.split("wrote")[0])
    top1 = [row for row in rows if row["rank"] == 1]
    assert [row["map_path"] for row in top1] == [source[3].name, source[17].name]
    assert all(row["score"] == pytest.approx(1.0, abs=1e-4) for row in top1)
    assert len(list((tmp_path / "preds").glob("*.jpg"))) == 2

    # A model with another descriptor size is refused with a clear message.
    other = tmp_path / "other.pt"
    save_model_file(
        build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=16)),
        other,
        {},
    )
    assert main(["query", queries[0], "--index", str(out), "--model", str(other)]) == 1
    assert "D = 16" in capsys.readouterr().err
