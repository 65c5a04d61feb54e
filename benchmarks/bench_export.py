"""int8 ONNX vs fp32 ONNX vs PyTorch eager: throughput at 1 thread and Recall@1 on real data.

For each dataset, ImageNet EfficientNet-Lite0 + GeM (no VPR training) at the dataset's size is
exported to fp32 ONNX (`export.export_model`) and to int8 ONNX (`export_int8.export_int8_onnx`,
calibrated on the dataset's map images, a quarter held out for its check), once per int8 variant:
every combination of --float-first, --calibration and --seeds (the calibration/held-out split).
Database and queries are described by every runtime; R@1 is printed for each. Throughput: the
same batch of 8 map images, all runtimes interleaved batch by batch (so other load affects them
alike), 1 thread each; ratios come from the same run. Corridor: query -> ref with its ground-truth list (320x240).
Nordland: winter -> summer, the first `--nordland-frames` frames, +/- 2 frames (128x64).
Run at low priority: `setsid sh -c 'echo 5 > /proc/self/autogroup; exec python benchmarks/bench_export.py
--corridor DIR --nordland DIR'` (on this machine `nice` alone does not lower a job's share).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from structvpr.data.images import image_transform, load_rgb
from structvpr.data.layouts import open_dataset
from structvpr.evaluate.recall import recall_from_predictions
from structvpr.export import export_model
from structvpr.export_int8 import export_int8_onnx
from structvpr.export_int8_args import CALIBRATION_METHODS, FLOAT_FIRST_CONVOLUTIONS
from structvpr.model import ModelConfig, build_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corridor", type=Path, default=Path("tests/fixtures/corridor"))
    parser.add_argument("--nordland", type=Path, default=None, help="nordland_64x32 root (skipped when absent)")
    parser.add_argument("--nordland-frames", type=int, default=300)
    parser.add_argument("--num-batches", type=int, default=8, help="timed batches of 8 images per runtime")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit int8 weights (CPUs without VNNI)")
    parser.add_argument(
        "--float-first",
        type=int,
        nargs="+",
        default=[FLOAT_FIRST_CONVOLUTIONS],
        help="int8 variants: convolutions kept in float at the start",
    )
    parser.add_argument("--calibration", choices=CALIBRATION_METHODS, nargs="+", default=["minmax"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="int8 variants: calibration split seeds")
    return parser.parse_args(argv)


def single_thread_session(path: Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on one thread (intra and inter op), warnings silenced."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(model: torch.nn.Module | onnxruntime.InferenceSession) -> Callable[[torch.Tensor], np.ndarray]:
    """A function batch [B, 3, H, W] -> descriptors [B, D] for a PyTorch model or an ONNX session."""
    if isinstance(model, torch.nn.Module):

        def run_eager(batch: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return model(batch).numpy()

        return run_eager
    return lambda batch: model.run(None, {"images": batch.numpy()})[0]


def describe(run: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor) -> np.ndarray:
    """Descriptors of `images` from `run`, in batches of 32."""
    return np.concatenate([run(images[i : i + 32]) for i in range(0, len(images), 32)])


def top1_recall(database: np.ndarray, queries: np.ndarray, positives: list[np.ndarray]) -> float:
    """Fraction of queries whose most similar map image (dot product) is one of their positives."""
    predictions = np.argmax(queries @ database.T, axis=1)[:, None]
    return recall_from_predictions(predictions, positives, (1,)).recalls[1]


def interleaved_seconds(
    runners: dict[str, Callable[[torch.Tensor], np.ndarray]], batch: torch.Tensor, batches: int
) -> dict[str, float]:
    """Seconds each runner spends on `batches` runs of `batch`, all runners interleaved batch by batch
    (so other load affects them alike), after one warm-up run each."""
    seconds = dict.fromkeys(runners, 0.0)
    for run in runners.values():
        run(batch)
    for _ in range(batches):
        for label, run in runners.items():
            start = time.perf_counter()
            run(batch)
            seconds[label] += time.perf_counter() - start
    return seconds


def imagenet_model(image_size: tuple[int, int]) -> torch.nn.Module:
    """ImageNet EfficientNet-Lite0 + GeM at `image_size`, in eval mode."""
    config = ModelConfig(backbone="efficientnet_lite0", aggregator="gem", pretrained=True, image_size=image_size)
    return build_model(config).eval()


def load_benchmark(
    database_paths: list[Path], query_paths: list[Path], image_size: tuple[int, int]
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(ImageNet model at `image_size`, map images, query images), the images as model-ready tensors."""
    model = imagenet_model(image_size)
    transform = image_transform(image_size, model.config.mean, model.config.std)
    database = torch.stack([transform(load_rgb(p)) for p in database_paths])
    queries = torch.stack([transform(load_rgb(p)) for p in query_paths])
    return model, database, queries


Benchmark = tuple[str, list[Path], list[Path], list[np.ndarray], tuple[int, int]]


def benchmark_datasets(corridor: Path | None, nordland: Path | None, frames: int) -> Iterator[Benchmark]:
    """(name, map paths, query paths, positives per query, image size) of Corridor (query -> ref, its
    ground-truth list, 320x240) and of Nordland winter -> summer over the first `frames` frames
    (+/- 2 frames, 128x64); a None root is skipped."""
    if corridor is not None:
        dataset = open_dataset(corridor, allow_pickle=True)  # the VPR-Bench .npy is trusted
        yield "Corridor", dataset.database_paths, dataset.query_paths, dataset.positives_per_query(), (240, 320)
    if nordland is not None:
        dataset = open_dataset(nordland, layout="sequence", database_folder="summer", query_folder="winter")
        within_two = [np.arange(max(0, i - 2), min(frames, i + 3)) for i in range(frames)]
        name = f"Nordland winter -> summer, frames 0-{frames}"
        yield name, dataset.database_paths[:frames], dataset.query_paths[:frames], within_two, (64, 128)


def bench_dataset(
    name: str,
    database_paths: list[Path],
    query_paths: list[Path],
    positives: list[np.ndarray],
    image_size: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    """Export, describe, time and print one dataset's rows (positives: map indices per query)."""
    model, database, queries = load_benchmark(database_paths, query_paths, image_size)
    with tempfile.TemporaryDirectory() as folder:
        fp32_path = Path(folder) / "fp32.onnx"
        export_model(model, fp32_path, "onnx", check_images=database[:7])
        runners = {"PyTorch eager": runner(model), "fp32 ONNX": runner(single_thread_session(fp32_path))}
        for float_first, method, seed in itertools.product(args.float_first, args.calibration, args.seeds):
            label = f"int8 ONNX f{float_first} {method} s{seed}"
            int8_path = Path(folder) / f"int8_{len(runners)}.onnx"
            print(f"{name}, {label}:", end=" ")
            export_int8_onnx(
                model,
                int8_path,
                database,
                reduce_range=args.reduce_range,
                float_first=float_first,
                calibration_method=method,
                seed=seed,
            )
            runners[label] = runner(single_thread_session(int8_path))
        recall = {
            label: top1_recall(describe(run, database), describe(run, queries), positives)
            for label, run in runners.items()
        }
        seconds = interleaved_seconds(runners, database[:8].contiguous(), args.num_batches)
    rates = {label: 8 * args.num_batches / value for label, value in seconds.items()}
    print(
        f"{name}: {len(queries)} queries, {len(database)} map images, "
        f"{image_size[1]}x{image_size[0]}, 1 thread, batch 8 x {args.num_batches}"
    )
    for label in runners:
        print(
            f"  {label:30s} {rates[label]:7.1f} images/s  x{rates[label] / rates['fp32 ONNX']:.2f} of fp32 ONNX  "
            f"R@1 {100 * recall[label]:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    for benchmark in benchmark_datasets(args.corridor, args.nordland, args.nordland_frames):
        bench_dataset(*benchmark, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
