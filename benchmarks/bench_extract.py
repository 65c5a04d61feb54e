"""Descriptor extraction speed: backbone only vs the full model (backbone + aggregation + L2 norm).

Both run on the same in-memory batches in one process, interleaved batch by batch so that load from
other processes affects them alike; the rate uses the median batch time (robust to a busy machine).
Prints images/s for each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from structvpr.model import AGGREGATOR_NAMES, BACKBONE_NAMES, ModelConfig, build_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", choices=BACKBONE_NAMES, default="efficientnet_lite0")
    parser.add_argument("--aggregator", choices=AGGREGATOR_NAMES, default="gem")
    parser.add_argument("--image-size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-batches", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = ModelConfig(
        backbone=args.backbone,
        aggregator=args.aggregator,
        image_size=tuple(args.image_size),
        pretrained=args.backbone == "efficientnet_lite0",
    )
    model = build_model(config).to(args.device).eval()
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, *config.image_size, device=args.device)
    synchronise = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    seconds: dict[str, list[float]] = {"backbone": [], "full": []}
    with torch.inference_mode():
        model(batch)  # warm-up: allocator, kernels, oneDNN primitive cache
        for _ in range(args.num_batches):
            for name, forward in (("backbone", model.forward_features), ("full", model)):
                synchronise()
                start = time.perf_counter()
                forward(batch)
                synchronise()
                seconds[name].append(time.perf_counter() - start)
    images = args.batch_size * args.num_batches
    backbone_rate = args.batch_size / statistics.median(seconds["backbone"])
    full_rate = args.batch_size / statistics.median(seconds["full"])
    print(
        f"bench_extract: {args.backbone} + {args.aggregator}, {args.image_size[0]}x{args.image_size[1]} (HxW), "
        f"batch {args.batch_size}, {images} images, {args.device}, {torch.get_num_threads()} threads"
    )
    print(f"  backbone only: {backbone_rate:8.1f} images/s")
    print(f"  full model:    {full_rate:8.1f} images/s")
    print(f"  ratio full / backbone-only throughput: {full_rate / backbone_rate:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
