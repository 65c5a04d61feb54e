"""int8 ONNX export: static quantisation calibrated on map images, checked against fp32 before it is kept.

The fp32 ONNX export (checked against PyTorch by `export.export_model`) is quantised with ONNX
Runtime's static quantisation: per-channel int8 weights, uint8 activations whose ranges come from
running the calibration images (map images, as the deployed model will see them); the first three
convolutions, the last one and the pooling stay in float (`float_nodes`). Some of the map
images are held out of calibration and used to check the result: the int8 descriptors' cosine to
the fp32 ones, and a retrieval check (each held-out image searched among the calibration images
must find, in its int8 top 5, the image the fp32 model ranks first). A model that fails is refused
with the numbers and nothing is written. The file loads with `structvpr.load` like any .onnx.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structvpr.dataclass_dict import to_plain_dict
from structvpr.export import INPUT_NAME, OUTPUT_NAME, ExportError, check_images_tensor, export_model
from structvpr.export_int8_args import CALIBRATION_METHODS, FLOAT_FIRST_CONVOLUTIONS
from structvpr.export_int8_args import MIN_COSINE as DEFAULT_MIN_COSINE
from structvpr.export_int8_args import MIN_RETRIEVAL as DEFAULT_MIN_RETRIEVAL
from structvpr.io_utils import atomic_write_bytes
from structvpr.model.vpr_net import VPRNet

RETRIEVAL_TOP = 5
MIN_MAP_IMAGES = 12
CALIBRATION_BATCH = 8


def float_nodes(graph: Any, first_convolutions: int = FLOAT_FIRST_CONVOLUTIONS) -> list[str]:
    """Names of the nodes left in float: the first `first_convolutions` convolutions (the stem sees
    raw pixels; with EfficientNet-Lite0 keeping the first depthwise and projection convolutions in
    float too is what brings int8 Corridor R@1 back to fp32's, docs/deployment.md), the last
    convolution (it feeds the pooling) and everything after it (pooling and L2 norm)."""
    nodes = list(graph.node)
    convolutions = [number for number, node in enumerate(nodes) if node.op_type == "Conv"]
    if not convolutions:
        return []
    first = [nodes[number].name for number in convolutions[:first_convolutions]]
    return list(dict.fromkeys(first + [node.name for node in nodes[convolutions[-1] :]]))


def check_int8_settings(float_first: int, calibration: str) -> None:
    """Raise ValueError naming the problem when float_first < 0 or calibration is unknown."""
    if calibration not in CALIBRATION_METHODS:
        raise ValueError(
            f"unknown int8 calibration method {calibration!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
        )
    if float_first < 0:
        raise ValueError(f"float_first must be >= 0, got {float_first}")


def quantization_options(
    graph: Any,
    reduce_range: bool = False,
    float_first: int = FLOAT_FIRST_CONVOLUTIONS,
    calibration: str = "minmax",
) -> dict[str, Any]:
    """The keyword arguments structvpr passes to onnxruntime.quantization.quantize_static for `graph`.

    QDQ format, per-channel int8 weights, uint8 asymmetric activations, `float_nodes` kept in float.
    calibration: "minmax" (default; the graph reduces each activation to its min and max, so memory
    stays small), "entropy" or "percentile" (99.999; both keep every calibration activation in
    memory). (ONNX Runtime 1.32's CalibMaxIntermediateOutputs drops all but the last chunk of
    batches, so it is not used.) On the
    measured data neither histogram method beat MinMax (docs/deployment.md). reduce_range keeps
    weights to 7 bits, for CPUs without VNNI: they multiply u8 x s8 with 16-bit intermediate sums
    that saturate with full-range weights (a previous measurement on such a CPU: descriptor cosine
    to fp32 0.91 with full-range weights, 0.99 with 7 bits). On a CPU with VNNI 7-bit weights only
    lose precision (Nordland, EfficientNet-Lite0: cosine 0.87 vs 0.96).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    check_int8_settings(float_first, calibration)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    return {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "reduce_range": reduce_range,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "calibrate_method": methods[calibration],
        "nodes_to_exclude": float_nodes(graph, float_first),
        "extra_options": {},
    }


@dataclass
class Int8Check:
    """How the int8 model compares with fp32 on the held-out map images."""

    mean_cosine: float
    min_cosine: float
    retrieval: float  # fraction of held-out images whose fp32 top-1 map image is in the int8 top 5
    held_out: int
    calibration: int

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"descriptor cosine to fp32 mean {self.mean_cosine:.4f} (min {self.min_cosine:.4f}), fp32 top-1 in int8 "
            f"top-{RETRIEVAL_TOP} {100 * self.retrieval:.1f}% on {self.held_out} held-out map images "
            f"({self.calibration} calibration images)"
        )


@dataclass
class Int8Report:
    """What `export_int8_onnx` wrote: the file, its check and the fp32 export's difference to PyTorch."""

    path: Path
    check: Int8Check
    fp32_max_abs_diff: float

    def summary(self) -> str:
        """One line for the console."""
        return f"exported int8 onnx to {self.path}: {self.check.summary()}"


class CalibrationBatches:
    """onnxruntime CalibrationDataReader over preprocessed images float32 [N, 3, H, W], for the
    `calibrate_method` of `quantization_options`.

    Batches of CALIBRATION_BATCH for MinMax, of 1 for the histogram methods: they stack every
    batch's activations, so all batches must have the same size."""

    def __init__(self, images: torch.Tensor, calibrate_method: Any) -> None:
        from onnxruntime.quantization import CalibrationMethod

        batch_size = CALIBRATION_BATCH if calibrate_method == CalibrationMethod.MinMax else 1
        self._batches = iter(
            [{INPUT_NAME: images[i : i + batch_size].numpy()} for i in range(0, len(images), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _describe(session: Any, images: torch.Tensor) -> np.ndarray:
    return np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + 32].numpy()})[0] for i in range(0, len(images), 32)]
    )


def compare_int8(fp32: Any, int8: Any, calibration: torch.Tensor, held_out: torch.Tensor) -> Int8Check:
    """Int8Check of two ONNX Runtime sessions: cosine on the held-out images, and whether each
    held-out image's fp32 nearest calibration image is in its int8 top 5 (both searched with their
    own model's descriptors)."""
    held32, held8 = _describe(fp32, held_out), _describe(int8, held_out)
    map32, map8 = _describe(fp32, calibration), _describe(int8, calibration)
    cosine = np.sum(held32 * held8, axis=1) / (np.linalg.norm(held32, axis=1) * np.linalg.norm(held8, axis=1))
    fp32_first = np.argmax(held32 @ map32.T, axis=1)
    int8_top = np.argsort(-(held8 @ map8.T), axis=1)[:, :RETRIEVAL_TOP]
    retrieval = float(np.mean([first in top for first, top in zip(fp32_first, int8_top, strict=True)]))
    return Int8Check(float(cosine.mean()), float(cosine.min()), retrieval, len(held_out), len(calibration))


def split_map_images(count: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, held-out indices) of `count` map images, a seeded random split."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    held = max(4, round(count * held_out_fraction))
    return np.sort(order[held:]), np.sort(order[:held])


def export_int8_onnx(
    model: VPRNet,
    path: str | Path,
    map_images: Sequence[str | Path] | torch.Tensor,
    *,
    held_out_fraction: float = 0.25,
    min_cosine: float = DEFAULT_MIN_COSINE,
    min_retrieval: float = DEFAULT_MIN_RETRIEVAL,
    reduce_range: bool = False,
    float_first: int = FLOAT_FIRST_CONVOLUTIONS,
    calibration_method: str = "minmax",
    seed: int = 0,
) -> Int8Report:
    """Export `model` to an int8 ONNX file at `path`, calibrated on `map_images` and checked.

    map_images: image files (or a preprocessed tensor [N, 3, H, W]) of the map the model will
    serve, at least MIN_MAP_IMAGES; `held_out_fraction` of them check the result and the rest
    calibrate. Raises ExportError, writing nothing, when the held-out mean cosine to fp32 is below
    `min_cosine` or the retrieval check below `min_retrieval`. reduce_range (7-bit weights, for
    deployment on CPUs without VNNI), float_first (convolutions kept in float at the start) and
    calibration_method ("minmax", "entropy", "percentile"): see `quantization_options`. The
    preprocessing metadata of the fp32 export is kept, so `structvpr.load(path)` describes images like the fp32 model.
    """
    try:
        import onnx
        from onnxruntime.quantization import quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise RuntimeError("int8 export needs onnx and onnxruntime: pip install 'structvpr[export]'") from error
    path = Path(path)
    check_int8_settings(float_first, calibration_method)
    model = model.cpu().eval()
    images = check_images_tensor(model, map_images)
    if len(images) < MIN_MAP_IMAGES:
        raise ValueError(
            f"{path}: int8 calibration needs at least {MIN_MAP_IMAGES} map images, got {len(images)} "
            "(pass more with --calibration-images)"
        )
    calibration, held_out = split_map_images(len(images), held_out_fraction, seed)
    with tempfile.TemporaryDirectory(prefix="structvpr-int8-") as folder:
        fp32_path, prepared, int8_path = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32_report = export_model(model, fp32_path, "onnx", check_images=images[held_out[:7]])
        # Symbolic shape inference fails on the L2 norm's Expand with this exporter; ONNX's own
        # shape inference is enough for quantisation.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        options = quantization_options(onnx.load(str(prepared)).graph, reduce_range, float_first, calibration_method)
        batches = CalibrationBatches(images[calibration], options["calibrate_method"])
        quantize_static(str(prepared), str(int8_path), batches, **options)
        check = compare_int8(_session(fp32_path), _session(int8_path), images[calibration], images[held_out])
        print(check.summary())
        if check.mean_cosine < min_cosine or check.retrieval < min_retrieval:
            raise ExportError(
                f"{path}: int8 model refused, nothing written: {check.summary()}; needs mean cosine >= "
                f"{min_cosine} and retrieval >= {min_retrieval} (keep more early convolutions in float with "
                f"--int8-float-first / float_first above {float_first}, calibrate on more map images, or use the "
                "fp32 export)"
            )
        proto = onnx.load(str(int8_path))
        fp32_metadata = {entry.key: entry.value for entry in onnx.load(str(fp32_path)).metadata_props}
    del proto.metadata_props[:]
    fp32_metadata["structvpr.quantization"] = json.dumps(
        {
            "format": "int8 static QDQ",
            "reduce_range": reduce_range,
            "float_first_convolutions": float_first,
            "calibration_method": calibration_method,
            **to_plain_dict(check),
        }
    )
    for key, value in fp32_metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write_bytes(path, proto.SerializeToString())
    report = Int8Report(path, check, fp32_report.max_abs_diff)
    print(report.summary())
    return report
