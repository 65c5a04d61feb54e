"""Where a model argument points (file, run folder, demo folder, built-in name) and its identity,
without importing torch: the CLI checks a model against an index before loading anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from structvpr.io_utils import sha256_of_file

# Models that need no file: untrained-for-VPR baselines whose weights ship with a pip package.
BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    # The sanity baseline of shared/data/README.md: ImageNet EfficientNet-Lite0 + GeM (p = 3), 320x240.
    "imagenet-efficientnet_lite0-gem": {
        "backbone": "efficientnet_lite0",
        "aggregator": "gem",
        "pretrained": True,
        "image_size": (240, 320),
    },
}

# Model files looked for, in order, when a folder is given: a training run's model.pt, then the
# student.pt that `structvpr demo` writes.
MODEL_FILE_NAMES = ("model.pt", "student.pt")


def resolve_model_path(path: str | Path) -> Path:
    """The model file a path argument means: the path itself, or a folder's model.pt / student.pt."""
    path = Path(path)
    if path.is_dir():
        for name in MODEL_FILE_NAMES:
            if (path / name).is_file():
                return path / name
    return path


def model_fingerprint(path_or_name: str | Path) -> str:
    """sha256 of the model file (after `resolve_model_path`), or `name:<name>` for a built-in
    model. Recorded in an index, so the index can refuse descriptors of another model."""
    if isinstance(path_or_name, str) and path_or_name in BUILTIN_MODELS:
        return f"name:{path_or_name}"
    path = resolve_model_path(path_or_name)
    if path.is_file():
        return sha256_of_file(path)
    return f"name:{path_or_name}"
