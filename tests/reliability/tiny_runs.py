"""Tiny, deterministic Stage I configs on the synthetic town, shared by the reliability tests."""

from __future__ import annotations

from pathlib import Path

import yaml

# Tiny but real: EfficientNet-Lite0 (random init) at 32x48 on 12 places of the synthetic town.
IMAGE_SIZE = (32, 48)  # (H, W)


def write_tiny_config(path: Path, town: Path, output_dir: Path, epochs: int = 3) -> Path:
    """A YAML config for a deterministic CPU Stage I run of `epochs` x 3 steps on the town."""
    config = {
        "data": {
            "train": {"path": str(town), "split": "train"},
            "val": {"path": str(town), "split": "val"},
            "num_workers": 0,
            "val_batch_size": 16,
        },
        "model": {
            "backbone": "efficientnet_lite0",
            "pretrained": False,
            "image_size": list(IMAGE_SIZE),
            "descriptor_dim": 32,
        },
        "train": {
            "epochs": epochs,
            "batches_per_epoch": 3,
            "places_per_batch": 3,
            "images_per_place": 2,
            "lr": 1e-3,
            "seed": 0,
            "accelerator": "cpu",
            "devices": 1,
            "deterministic": True,
            "validate_before_training": False,
            "output_dir": str(output_dir),
        },
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
