"""Label-map cache throughput vs the bare ESPNetv2 forward on the same tensors.

    .venv/bin/python benchmarks/bench_segment.py [--num-images 64] [--width 2.0] [--batch-size 8]
        [--num-workers 2] [--device cpu]

Writes synthetic 512x256 JPEGs to a temporary folder, times `segmenter.segment` on the pre-decoded
batches (bare forward, includes argmax), then times `build_label_cache` over the same files from
scratch (decode in workers + forward + PNG writes), and prints both rates and their ratio
(target >= 0.8: decoding and writing overlap with compute).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from structvpr.data.images import load_rgb
from structvpr.segment.cache import build_label_cache, default_compute_threads
from structvpr.segment.segmenters import build_segmenter

WIDTH, HEIGHT = 512, 256


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Smooth random scenes (compress like photos, unlike white noise) as JPEGs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC)
        path = folder / f"frame_{index:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--width", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both measurements (default: cores minus workers)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements; medians reported")
    args = parser.parse_args()
    threads = args.threads or default_compute_threads(args.num_workers)
    torch.set_num_threads(threads)

    segmenter = build_segmenter("espnetv2", device=args.device, width=args.width, input_size=(HEIGHT, WIDTH))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp) / "images", args.num_images)
        transform = segmenter.transform()
        tensors = torch.stack([transform(load_rgb(p)) for p in paths])
        segmenter.segment(tensors[: args.batch_size])  # warm-up (allocator, oneDNN kernels)

        bare_rates, cache_rates = [], []
        for _ in range(args.repeats):  # alternate so load changes on a shared machine hit both
            start = time.perf_counter()
            for first in range(0, len(tensors), args.batch_size):
                segmenter.segment(tensors[first : first + args.batch_size])
            bare_rates.append(len(tensors) / (time.perf_counter() - start))

            for label_file in (Path(tmp) / "images_labels").glob("*.png"):
                label_file.unlink()  # start each cache run from scratch
            start = time.perf_counter()
            summary = build_label_cache(
                paths,
                segmenter,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                progress=False,
                compute_threads=threads,
            )
            cache_rates.append(len(paths) / (time.perf_counter() - start))
            assert summary.written == len(paths), summary.format()
    bare_rate, cache_rate = float(np.median(bare_rates)), float(np.median(cache_rates))

    print(
        f"ESPNetv2 s={args.width} at {WIDTH}x{HEIGHT}, batch {args.batch_size}, "
        f"{args.num_workers} workers, device {args.device}, {threads} torch threads, "
        f"{args.num_images} images, median of {args.repeats}"
    )
    print(
        f"bare forward: {bare_rate:.2f} images/s; label-map cache: {cache_rate:.2f} images/s; "
        f"ratio cache/bare = {cache_rate / bare_rate:.2f} (target >= 0.8)"
    )
    print(
        json.dumps(
            {
                "bench": "segment_cache",
                "width": args.width,
                "bare_images_per_s": round(bare_rate, 3),
                "cache_images_per_s": round(cache_rate, 3),
                "ratio": round(cache_rate / bare_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
