"""ONNX Runtime (CPU) vs PyTorch eager: descriptor throughput of the same exported RGB model.

The model is exported with `structvpr.export.export_model` (checked against PyTorch), then both
run the same in-memory batches, interleaved batch by batch so that load from other processes
affects them alike, with the same number of threads. Prints images/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from structvpr.export import export_model
from structvpr.model import AGGREGATOR_NAMES, BACKBONE_NAMES, ModelConfig, build_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", choices=BACKBONE_NAMES, default="efficientnet_lite0")
    parser.add_argument("--aggregator", choices=AGGREGATOR_NAMES, default="gem")
    parser.add_argument("--image-size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-batches", type=int, default=6)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for both runtimes (1: on a shared machine, OpenMP spin-waiting "
        "under contention slows PyTorch far more than ONNX Runtime's own pool)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    args = parse_args(argv)
    # EfficientNet-Lite0's ImageNet weights ship with a pip package (nothing is downloaded). Randomly
    # initialised weights would not do: its activations decay to denormal floats, which PyTorch
    # computes ~10x slower while ONNX Runtime flushes them to zero, a meaningless comparison.
    config = ModelConfig(
        backbone=args.backbone,
        aggregator=args.aggregator,
        pretrained=args.backbone == "efficientnet_lite0",
        image_size=tuple(args.image_size),
    )
    model = build_model(config).eval()
    torch.set_num_threads(args.threads)
    threads = args.threads
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model(model, path, "onnx", batch_sizes=(1, args.batch_size))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        batch = torch.randn(args.batch_size, 3, *config.image_size, generator=torch.Generator().manual_seed(0))
        runners = {"pytorch": lambda: model(batch), "onnxruntime": lambda: session.run(None, {"images": batch.numpy()})}
        seconds = dict.fromkeys(runners, 0.0)
        with torch.inference_mode():
            for run in runners.values():
                run()  # warm-up
            for _ in range(args.num_batches):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run()
                    seconds[name] += time.perf_counter() - start
    images = args.batch_size * args.num_batches
    rates = {name: images / value for name, value in seconds.items()}
    print(
        f"bench_export: {args.backbone} + {args.aggregator}, {args.image_size[0]}x{args.image_size[1]} (HxW), "
        f"batch {args.batch_size}, {images} images, CPU, {threads} threads"
    )
    print(f"  PyTorch eager:    {rates['pytorch']:8.1f} images/s")
    print(f"  ONNX Runtime CPU: {rates['onnxruntime']:8.1f} images/s")
    print(f"  ratio ONNX Runtime / PyTorch eager throughput: {rates['onnxruntime'] / rates['pytorch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
