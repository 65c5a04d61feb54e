"""`structvpr evaluate --sequence-length` on real Nordland frames and `structvpr query --sequence`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import structvpr
from structvpr.cli import main
from structvpr.index.place_index import PlaceIndex
from structvpr.model import ModelConfig, build_model
from structvpr.model.model_file import save_model_file
from structvpr.sequence import match_sequences


def test_evaluate_with_sequences_beats_single_frames_on_real_nordland(
    fixtures_dir: Path, tmp_path: Path, capsys, one_torch_thread
) -> None:
    code = main(
        [
            "evaluate",
            str(fixtures_dir / "nordland_64x32"),
            "--layout",
            "sequence",
            "--database-folder",
            "summer",
            "--query-folder",
            "winter",
            "--frame-tolerance",
            "2",
            "--image-size",
            "64",
            "128",
            "--sequence-length",
            "1",
            "10",
            "--recall-values",
            "1",
            "5",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "sequence length" in line]
    assert len(lines) == 2 and "sequence length 10: R@1:" in lines[1]
    result = json.loads((tmp_path / "nordland_64x32_winter--summer_sequences.json").read_text())
    recalls = result["recalls"]
    # 100 frames of ImageNet EfficientNet-Lite0 + GeM at 128x64: about 0.24 alone, 0.66 with 10 frames.
    assert recalls["10"]["1"] > recalls["1"]["1"] + 0.2
    assert recalls["10"]["1"] > 0.5


def test_sequence_length_must_be_positive(fixtures_dir: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", str(fixtures_dir / "nordland_64x32"), "--sequence-length", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_query_sequence_prints_the_batch_matches_with_a_confidence(
    fixtures_dir: Path, tmp_path: Path, capsys, one_torch_thread
) -> None:
    torch.manual_seed(0)
    network = build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=32))
    model_path = tmp_path / "model.pt"
    save_model_file(network, model_path, {"train_dataset": "none (random weights)"})
    map_paths = sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[:40]
    route_folder = tmp_path / "route"
    route_folder.mkdir()
    for path in sorted((fixtures_dir / "corridor" / "query").glob("*.jpg"))[:15]:
        shutil.copy(path, route_folder / path.name)
    model = structvpr.load(model_path)
    index = PlaceIndex.build(model.describe(map_paths), kind="flat", metadata={"paths": [p.name for p in map_paths]})
    index.save(tmp_path / "index")
    route = model.describe(sorted(route_folder.iterdir()))
    expected = match_sequences(route, index, 5, candidates=6, top_n=3)

    query = ["query", str(route_folder), "--index", str(tmp_path / "index"), "--model", str(model_path), "-k", "3"]
    code = main([*query, "--sequence", "--sequence-length", "5", "--sequence-candidates", "6", "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 15 * 3
    ids = np.array([row["id"] for row in rows]).reshape(15, 3)
    np.testing.assert_array_equal(ids, expected.ids)
    confidence = np.array([row["confidence"] for row in rows]).reshape(15, 3)[:, 0]
    np.testing.assert_allclose(confidence, expected.confidence, atol=1e-6)
    assert rows[0]["map_path"] == map_paths[int(ids[0, 0])].name
