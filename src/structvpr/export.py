"""Export the RGB model's global-descriptor path to ONNX or TorchScript, checked against PyTorch.

Input: float32 [B, 3, H, W] images already resized to the model's image_size and normalised with
its mean/std (the preprocessing is written into the ONNX file's metadata and printed); output:
float32 [B, D] L2-normalised descriptors. The batch dimension is dynamic in both formats. Every
export is re-loaded and run at two batch sizes on the check images, and the largest absolute
difference to PyTorch eager is returned and printed.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from structvpr.io_utils import atomic_write_bytes
from structvpr.model.vpr_net import VPRNet

FORMATS = ("onnx", "torchscript")
INPUT_NAME = "images"
OUTPUT_NAME = "descriptors"
ONNX_OPSET = 18


class ExportError(RuntimeError):
    """The exported model could not be written or does not reproduce PyTorch's descriptors."""


@dataclass
class ExportReport:
    """What `export_model` wrote and how closely it matches PyTorch (max abs descriptor difference)."""

    path: Path
    format: str
    max_abs_diff: float
    batch_sizes: tuple[int, ...]

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"exported {self.format} to {self.path}: max abs diff vs PyTorch {self.max_abs_diff:.2e} "
            f"(batch sizes {', '.join(map(str, self.batch_sizes))})"
        )


def preprocessing_of(model: VPRNet) -> dict:
    """image_size [H, W], mean, std and descriptor_dim of `model`, as stored beside exports."""
    config = model.config
    return {
        "image_size": list(config.image_size),
        "mean": list(config.mean),
        "std": list(config.std),
        "descriptor_dim": int(model.descriptor_dim),
        "input": f"{INPUT_NAME} float32 [B, 3, H, W], normalised",
        "output": f"{OUTPUT_NAME} float32 [B, D], L2-normalised",
    }


def check_images_tensor(
    model: VPRNet, images: Sequence[str | Path] | torch.Tensor | None, count: int = 7, seed: int = 0
) -> torch.Tensor:
    """Preprocessed check images float32 [N, 3, H, W]: the given files (or tensor), else seeded noise."""
    if isinstance(images, torch.Tensor):
        return images.float()
    height, width = model.config.image_size
    if not images:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(count, 3, height, width, generator=generator)
    from structvpr.data.images import image_transform, load_rgb

    transform = image_transform((height, width), model.config.mean, model.config.std)
    return torch.stack([transform(load_rgb(path)) for path in images])


def _export_onnx_bytes(model: VPRNet, example: torch.Tensor) -> bytes:
    """ONNX bytes with a dynamic batch axis (the torch.export-based exporter; legacy as fallback)."""
    with tempfile.TemporaryDirectory(prefix="structvpr-onnx-") as folder:
        target = Path(folder) / "model.onnx"
        try:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"images": {0: batch}},
                dynamo=True,
                opset_version=ONNX_OPSET,
                verbose=False,
            )
            program.save(str(target))
        except Exception as error:
            print(f"torch.export-based ONNX export failed ({type(error).__name__}); using the legacy exporter")
            torch.onnx.export(
                model,
                (example,),
                str(target),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamo=False,
                opset_version=17,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        import onnx

        # Weights may be in a side file: load them in, so the export is one self-contained file.
        proto = onnx.load(str(target), load_external_data=True)
    for key, value in preprocessing_of(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"structvpr.{key}", json.dumps(value)
    return proto.SerializeToString()


def _torchscript_bytes(model: VPRNet, example: torch.Tensor) -> bytes:
    traced = torch.jit.trace(model, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"structvpr.json": json.dumps(preprocessing_of(model))})
    return buffer.getvalue()


def _run_exported(path: Path, fmt: str, batch: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0]
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return loaded(batch).numpy()


def export_model(
    model: VPRNet,
    path: str | Path,
    fmt: str = "onnx",
    *,
    check_images: Sequence[str | Path] | torch.Tensor | None = None,
    batch_sizes: tuple[int, ...] = (1, 7),
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export `model` (a VPRNet) to `path` in format "onnx" | "torchscript" and verify it.

    check_images: image files (or a preprocessed tensor [N, 3, H, W]) run through both PyTorch and
    the exported file at each batch size (images repeat if fewer than a batch). Raises ExportError
    when the max abs difference exceeds `tolerance`; the file is written atomically either way
    (and removed on failure). Export runs on the CPU.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    model = model.cpu().eval()
    images = check_images_tensor(model, check_images, count=max(batch_sizes))
    with torch.no_grad():
        example = images[:2] if len(images) >= 2 else images.repeat(2, 1, 1, 1)
        data = _export_onnx_bytes(model, example) if fmt == "onnx" else _torchscript_bytes(model, example)
    atomic_write_bytes(path, data)
    max_diff = 0.0
    for batch_size in batch_sizes:
        indices = torch.arange(batch_size) % len(images)
        batch = images[indices].contiguous()
        with torch.inference_mode():
            expected = model(batch).numpy()
        produced = _run_exported(path, fmt, batch)
        if produced.shape != expected.shape:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"{path}: exported model gives shape {produced.shape} at batch {batch_size}, PyTorch {expected.shape}"
            )
        max_diff = max(max_diff, float(np.abs(produced - expected).max()))
    report = ExportReport(path, fmt, max_diff, tuple(batch_sizes))
    print(report.summary())
    if not max_diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{path}: exported descriptors differ from PyTorch by {max_diff:.2e} "
            f"(> tolerance {tolerance:.0e}); file removed"
        )
    return report
