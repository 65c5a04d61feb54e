"""The three-line user path: `load` a model, `describe` images, search a `PlaceIndex`.

import structvpr
model = structvpr.load("runs/stage2/model.pt")
index = structvpr.PlaceIndex.build(model.describe(map_images), kind="hnsw")
scores, ids = index.search(model.describe(query_images), k=5)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from structvpr.data.images import image_transform, load_rgb
from structvpr.evaluate.descriptors import describe_batches
from structvpr.index.place_index import PlaceIndex
from structvpr.model_source import BUILTIN_MODELS

__all__ = ["BUILTIN_MODELS", "PlaceIndex", "StructVPRModel", "load"]

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


class StructVPRModel:
    """A loaded RGB descriptor model (PyTorch VPRNet, or an ONNX Runtime session for .onnx files).

    `describe(images)` -> float32 [N, D] L2-normalised global descriptors. `info` holds the model
    file's metadata (preprocessing, training data names, code version, ...). `sha256` identifies
    the model (its file's sha256, or `name:<built-in name>`); indexes record it.
    """

    def __init__(
        self,
        image_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        descriptor_dim: int,
        info: dict[str, Any],
        device: str | torch.device = "cpu",
        network: torch.nn.Module | None = None,
        onnx_session: Any = None,
    ) -> None:
        if (network is None) == (onnx_session is None):
            raise ValueError("StructVPRModel needs exactly one of network or onnx_session")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.descriptor_dim = int(descriptor_dim)
        self.info = info
        self.device = torch.device(device)
        self.network = network.to(self.device).eval() if network is not None else None
        self.onnx_session = onnx_session
        self.sha256 = ""  # set by load()
        self._transform = image_transform(self.image_size, self.mean, self.std)

    @property
    def backend(self) -> str:
        """Backend name: pytorch or onnxruntime."""
        return "pytorch" if self.network is not None else "onnxruntime"

    def __repr__(self) -> str:
        return (
            f"StructVPRModel({self.backend}, D={self.descriptor_dim}, image_size={self.image_size}, "
            f"device={self.device})"
        )

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """One image -> float32 [3, H, W] resized to image_size and normalised.

        Paths are decoded with EXIF orientation (BadImageError names a bad file); PIL images and
        uint8 [H, W, 3] / [H, W] arrays are resized with PIL bilinear like training; tensors are
        [3, H, W] RGB, uint8 0..255 or float 0..1, resized with antialiased bilinear interpolation.
        """
        if isinstance(image, (str, Path)):
            return self._transform(load_rgb(image))
        if isinstance(image, Image.Image):
            return self._transform(image.convert("RGB"))
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
                raise ValueError(
                    f"numpy images must be uint8 [H, W, 3] (or [H, W] grey), got {image.dtype} {list(image.shape)}"
                )
            return self._transform(Image.fromarray(image).convert("RGB"))
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"tensor images must be [3, H, W] RGB, got shape {list(image.shape)}")
            pixels = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
            if pixels.shape[1:] != self.image_size:
                pixels = F.interpolate(
                    pixels[None], size=self.image_size, mode="bilinear", align_corners=False, antialias=True
                )[0]
            mean = torch.tensor(self.mean).view(3, 1, 1)
            std = torch.tensor(self.std).view(3, 1, 1)
            return (pixels.cpu() - mean) / std
        raise TypeError(
            f"cannot describe an object of type {type(image).__name__}: pass paths, PIL images, "
            "uint8 numpy arrays or tensors"
        )

    def describe_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Descriptors float32 [B, D] of a batch already preprocessed (float32 [B, 3, H, W], as
        `preprocess` gives, stacked), on either backend: for callers with their own image loading."""
        if self.network is not None:
            with torch.inference_mode():
                return self.network(batch.to(self.device)).float().cpu().numpy()
        input_name = self.onnx_session.get_inputs()[0].name
        return self.onnx_session.run(None, {input_name: batch.numpy()})[0].astype(np.float32)

    def describe(
        self, images: ImageLike | Iterable[ImageLike], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Descriptors float32 [N, D] (L2-normalised), row i for images[i].

        images: one image or a sequence of paths / PIL images / uint8 numpy arrays [H, W, 3] /
        tensors [3, H, W]; a batched uint8 array [N, H, W, 3] or tensor [N, 3, H, W] also works.
        Images are decoded and preprocessed batch by batch (memory stays bounded).
        """
        items = _as_items(images)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not items:
            return np.empty((0, self.descriptor_dim), np.float32)
        batches = (
            torch.stack([self.preprocess(item) for item in items[start : start + batch_size]])
            for start in range(0, len(items), batch_size)
        )
        return describe_batches(self.describe_batch, batches, len(items), progress=progress, desc="describe")

    __call__ = describe


def _as_items(images: Any) -> list[ImageLike]:
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Iterable):
        return list(images)
    raise TypeError(f"cannot describe an object of type {type(images).__name__}")


def _load_onnx(path: Path, device: str | torch.device) -> StructVPRModel:
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError(
            f"{path}: loading .onnx models needs onnxruntime: pip install 'structvpr[export]'"
        ) from error
    device = torch.device(device)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise RuntimeError(
                f"{path}: device={device} asked for, but onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            )
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:
        raise ValueError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    props = session.get_modelmeta().custom_metadata_map
    try:
        preprocessing = {
            key[len("structvpr.") :]: json.loads(value) for key, value in props.items() if key.startswith("structvpr.")
        }
        image_size, mean, std = preprocessing["image_size"], preprocessing["mean"], preprocessing["std"]
        descriptor_dim = preprocessing["descriptor_dim"]
    except (KeyError, json.JSONDecodeError):
        raise ValueError(
            f"{path}: ONNX model has no structvpr preprocessing metadata; export it with `structvpr export`"
        ) from None
    return StructVPRModel(
        image_size, mean, std, descriptor_dim, {"preprocessing": preprocessing}, device=device, onnx_session=session
    )


def load(path_or_name: str | Path, device: str | torch.device = "cpu") -> StructVPRModel:
    """Load a model for `describe`: a structvpr model file (.pt, weights_only), a run folder with
    model.pt, a `structvpr demo` folder (its student.pt), an exported .onnx file (runs on ONNX
    Runtime), or a name in BUILTIN_MODELS.

    Raises ModelFileError (a ValueError naming the file) for files that are not structvpr models,
    including pickles that would run code: they are refused before anything executes.
    """
    from structvpr.model_source import model_fingerprint

    model = _load(path_or_name, device)
    model.sha256 = model_fingerprint(path_or_name)
    return model


def _load(path_or_name: str | Path, device: str | torch.device) -> StructVPRModel:
    from structvpr.model.model_file import load_model_file
    from structvpr.model.vpr_net import ModelConfig, build_model
    from structvpr.model_source import MODEL_FILE_NAMES, resolve_model_path

    if isinstance(path_or_name, str) and path_or_name in BUILTIN_MODELS:
        network = build_model(ModelConfig(**BUILTIN_MODELS[path_or_name]))
        info: dict[str, Any] = {"name": path_or_name, "training_data": ["ImageNet (no VPR training)"]}
    else:
        path = resolve_model_path(path_or_name)
        if path.is_dir():
            raise FileNotFoundError(
                f"{path}: a folder without a model file (looked for {' or '.join(MODEL_FILE_NAMES)})"
            )
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model file (built-in names: {', '.join(BUILTIN_MODELS)})")
        if path.suffix.lower() == ".onnx":
            return _load_onnx(path, device)
        network, info = load_model_file(path, map_location="cpu")
    if network.config.in_channels != 3:
        raise ValueError(
            f"{path_or_name}: model takes {network.config.in_channels} input channels, "
            "not RGB (a seg-branch teacher?); describe() needs an RGB model"
        )
    config = network.config
    assert config.mean is not None and config.std is not None  # filled in by ModelConfig.__post_init__
    return StructVPRModel(
        config.image_size, config.mean, config.std, network.descriptor_dim, info, device=device, network=network
    )
