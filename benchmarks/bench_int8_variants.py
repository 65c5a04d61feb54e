"""int8 quantisation variants vs fp32 ONNX: R@1, descriptor cosine and speed ratio at 1 thread.

The diagnosis behind `export --int8`'s defaults (docs/deployment.md). For each dataset, ImageNet
EfficientNet-Lite0 + GeM at the dataset's size is exported to fp32 ONNX once; each variant then
quantises it with ONNX Runtime (`export_int8.quantization_options` with the variant's changes),
calibrated on three quarters of the map images (the same seeded split as `export --int8`; "map + queries"
adds the queries). Printed per variant: R@1 of fp32 and int8, the mean descriptor cosine to fp32 on
the held-out map images and on the queries, and the int8 / fp32 images/s ratio (batch 8, the two
interleaved batch by batch, 1 thread). Corridor: query -> ref (320x240); Nordland: winter -> summer,
the first `--nordland-frames` frames, +/- 2 frames (128x64). No export check: variants that
`export --int8` would refuse are measured too. Run at low priority (see bench_export.py).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from bench_export import (
    benchmark_datasets,
    describe,
    interleaved_seconds,
    load_benchmark,
    runner,
    single_thread_session,
    top1_recall,
)
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from structvpr.export import export_model
from structvpr.export_int8 import CalibrationBatches, float_nodes, quantization_options, split_map_images

Options = dict[str, Any]


def _float_first(count: int) -> Callable[[Any, Options], None]:
    def change(graph: Any, options: Options) -> None:
        options["nodes_to_exclude"] = float_nodes(graph, count)

    return change


def _quantise_last_convolution(graph: Any, options: Options) -> None:
    last = [node.name for node in graph.node if node.op_type == "Conv"][-1]
    options["nodes_to_exclude"] = [name for name in float_nodes(graph, 1) if name != last]


def _quantise_everything_after_stem(graph: Any, options: Options) -> None:
    options["nodes_to_exclude"] = float_nodes(graph, 1)[:1]


def _float_projections(graph: Any, options: Options) -> None:
    projections = [node.name for node in graph.node if node.op_type == "Conv" and "_project_conv" in node.input[1]]
    options["nodes_to_exclude"] = float_nodes(graph, 1) + projections


def _set(**changes: Any) -> Callable[[Any, Options], None]:
    def change(graph: Any, options: Options) -> None:
        for key, value in changes.items():
            if key == "extra_options":
                options[key] = {**options[key], **value}
            else:
                options[key] = value

    return change


# name -> (change of `quantization_options(graph, float_first=1)`, calibrate on map + queries too)
VARIANTS: dict[str, tuple[Callable[[Any, Options], None], bool]] = {
    "stem float (previous default)": (_float_first(1), False),
    "stem float, calibrated on map + queries": (_float_first(1), True),
    "stem float, entropy calibration": (_set(calibrate_method=CalibrationMethod.Entropy), False),
    "stem float, percentile 99.999": (_set(calibrate_method=CalibrationMethod.Percentile), False),
    "stem float, QOperator format": (_set(quant_format=QuantFormat.QOperator), False),
    "stem float, symmetric int8 activations": (
        _set(activation_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True}),
        False,
    ),
    "stem float, per-tensor weights": (_set(per_channel=False), False),
    "stem float, last convolution quantised": (_quantise_last_convolution, False),
    "stem float, last convolution + GeM + L2 quantised": (_quantise_everything_after_stem, False),
    "stem float, all projection convolutions float": (_float_projections, False),
    "nothing float (stem quantised too)": (_float_first(0), False),
    "first 2 convolutions float": (_float_first(2), False),
    "first 3 convolutions float (default)": (_float_first(3), False),
    "first 4 convolutions float": (_float_first(4), False),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corridor", type=Path, default=Path("tests/fixtures/corridor"))
    parser.add_argument("--no-corridor", action="store_true", help="only Nordland")
    parser.add_argument("--nordland", type=Path, default=None, help="nordland_64x32 root (skipped when absent)")
    parser.add_argument("--nordland-frames", type=int, default=300)
    parser.add_argument("--num-batches", type=int, default=8, help="timed batches of 8 images per runtime")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    return parser.parse_args(argv)


def _mean_cosine(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.mean(np.sum(first * second, axis=1)))  # both L2-normalised


def bench_dataset(
    name: str,
    database_paths: list[Path],
    query_paths: list[Path],
    positives: list[np.ndarray],
    image_size: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    """Quantise, describe, time and print one dataset's variants (positives: map indices per query)."""
    model, database, queries = load_benchmark(database_paths, query_paths, image_size)
    calibration, held_out = split_map_images(len(database), 0.25, 0)

    def recall_at_1(database_descriptors: np.ndarray, query_descriptors: np.ndarray) -> float:
        return 100 * top1_recall(database_descriptors, query_descriptors, positives)

    print(f"{name}: {len(queries)} queries, {len(database)} map images, {image_size[1]}x{image_size[0]}")
    with tempfile.TemporaryDirectory() as folder:
        fp32_path, prepared = Path(folder) / "fp32.onnx", Path(folder) / "prepared.onnx"
        export_model(model, fp32_path, "onnx", check_images=database[:7])
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        fp32 = runner(single_thread_session(fp32_path))
        database32, queries32 = describe(fp32, database), describe(fp32, queries)
        margins = _margins(queries32 @ database32.T, positives)
        print(
            f"  fp32 ONNX R@1 {recall_at_1(database32, queries32):.1f}; queries whose best positive and best "
            f"negative map image differ by < 0.01 in cosine: {int(np.sum(np.abs(margins) < 0.01))} "
            f"({int(np.sum((margins > 0) & (margins < 0.01)))} of them right at top-1)"
        )
        for variant in args.variants:
            change, with_queries = VARIANTS[variant]
            options = quantization_options(graph, float_first=1)
            change(graph, options)
            images = torch.cat([database[calibration], queries]) if with_queries else database[calibration]
            batches = CalibrationBatches(images, options["calibrate_method"])
            int8_path = Path(folder) / "int8.onnx"
            quantize_static(str(prepared), str(int8_path), batches, **options)
            int8 = runner(single_thread_session(int8_path))
            database8, queries8 = describe(int8, database), describe(int8, queries)
            seconds = interleaved_seconds({"fp32": fp32, "int8": int8}, database[:8].contiguous(), args.num_batches)
            speed = seconds["fp32"] / seconds["int8"]
            print(
                f"  {variant:52s} R@1 {recall_at_1(database8, queries8):5.1f}  cosine held-out "
                f"{_mean_cosine(database8[held_out], database32[held_out]):.4f} queries "
                f"{_mean_cosine(queries8, queries32):.4f}  x{speed:.2f} of fp32 ONNX",
                flush=True,
            )


def _margins(similarity: np.ndarray, positives: list[np.ndarray]) -> np.ndarray:
    """Per query: best positive score - best negative score (> 0: right at top-1)."""
    margins = np.empty(len(similarity))
    for query, row in enumerate(similarity):
        negative = np.ones(len(row), dtype=bool)
        negative[positives[query]] = False
        margins[query] = row[positives[query]].max() - row[negative].max()
    return margins


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    corridor = None if args.no_corridor else args.corridor
    for benchmark in benchmark_datasets(corridor, args.nordland, args.nordland_frames):
        bench_dataset(*benchmark, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
