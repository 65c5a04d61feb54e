"""build_segmenter names, the precomputed reader and the Hugging Face adapter (tiny random SegFormer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.data.label_maps import LabelMapError, write_label_map
from structvpr.segment.classes import CITYSCAPES_CLASSES
from structvpr.segment.segmenters import build_segmenter


def test_unknown_segmenter_name() -> None:
    with pytest.raises(ValueError, match="unknown segmenter 'deeplab'"):
        build_segmenter("deeplab")


def test_precomputed_reads_and_checks_label_maps(tmp_path: Path) -> None:
    image = tmp_path / "town" / "f0.png"
    image.parent.mkdir()
    Image.new("RGB", (8, 4)).save(image)
    labels = np.arange(32, dtype=np.uint8).reshape(4, 8) % 19
    write_label_map(tmp_path / "town_labels" / "f0.png", labels)
    segmenter = build_segmenter("precomputed")
    assert np.array_equal(segmenter.segment([image])[0].numpy(), labels)
    write_label_map(tmp_path / "town_labels" / "f0.png", labels[:, :4])
    with pytest.raises(LabelMapError, match="town_labels/f0.png: label map is 4x4"):
        segmenter.label_map(image)


def _tiny_segformer(folder: Path, labels: list[str]) -> torch.nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(folder)
    return model


def test_hf_segformer_adapter_maps_labels_to_train_ids(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    # label order differs from trainIds and one extra class must become ignore
    labels = ["void", *reversed(CITYSCAPES_CLASSES)]
    model = _tiny_segformer(tmp_path / "segformer", labels)
    segmenter = build_segmenter("hf", model=tmp_path / "segformer", input_size=(64, 96), local_files_only=True)
    batch = torch.randn(2, 3, 64, 96)
    result = segmenter.segment(batch)
    assert result.shape == (2, 64, 96) and result.dtype == torch.uint8

    with torch.no_grad():
        logits = torch.nn.functional.interpolate(
            model(pixel_values=batch).logits, size=(64, 96), mode="bilinear", align_corners=False
        )
    predicted = logits.argmax(1)
    expected = torch.where(predicted == 0, 255, 19 - predicted)  # "void" -> 255, reversed order
    assert torch.equal(result.long(), expected)


def test_hf_model_without_cityscapes_labels_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    _tiny_segformer(tmp_path / "ade", ["wall", "floor", "sky", "car"])
    with pytest.raises(ValueError, match="lack the Cityscapes classes.*'road'"):
        build_segmenter("hf", model=tmp_path / "ade", local_files_only=True)
    with pytest.raises(FileNotFoundError, match="missing_model"):
        build_segmenter("hf", model=tmp_path / "missing_model", local_files_only=True)


def test_hf_mask2former_adapter_runs_the_query_path(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    backbone = transformers.SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=10,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        num_attention_heads=2,
        num_labels=19,
        id2label=dict(enumerate(CITYSCAPES_CLASSES)),
        label2id={name: i for i, name in enumerate(CITYSCAPES_CLASSES)},
    )
    transformers.Mask2FormerForUniversalSegmentation(config).save_pretrained(tmp_path / "m2f")
    segmenter = build_segmenter("hf", model=tmp_path / "m2f", input_size=(64, 96), local_files_only=True)
    assert segmenter.universal
    batch = torch.randn(1, 3, 64, 96)
    scores = segmenter.class_scores(batch)
    assert scores.shape == (1, 19, 64, 96) and bool((scores >= 0).all())  # probabilities, no "no object" column
    labels = segmenter.segment(batch)
    assert torch.equal(labels[0].long(), scores[0].argmax(0))  # labels already in trainId order
