"""Benchmark of the synthetic town: rendering speed, and how hard its retrieval task is.

    python benchmarks/bench_synth.py                      # frames/s at 224x224
    python benchmarks/bench_synth.py --workers 1 2        # + whole-dataset images/s
    python benchmarks/bench_synth.py --recall DIR         # R@1 on DIR (made by `structvpr synth`)

Speed: wall-clock frames/s and single-core CPU ms/frame (the machine may be shared, so the CPU
time is the stable figure). Recall: R@1 of a descriptor computed from the label maps alone
(area-pooled one-hot, cosine) and of an ImageNet EfficientNet-Lite0 + GeM descriptor without
VPR training, for same-condition and cross-condition queries of the test split.
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from structvpr.data.synth import CONDITIONS, build_town, generate_town, plan_visits, render_visit


def bench_speed(frames: int, size: tuple[int, int], seed: int = 0) -> dict[str, float]:
    """Render `frames` frames cycling over all conditions; wall fps and CPU ms per frame."""
    town = build_town(60, seed)
    visits = plan_visits(town, "day", tuple(c for c in CONDITIONS if c != "day"), 0.0, seed)
    render_visit(town, visits[0], size, seed)  # warm-up (imports, caches)
    wall, cpu = time.perf_counter(), time.process_time()
    encode_cpu = 0.0
    for index in range(frames):
        frame = render_visit(town, visits[index % len(visits)], size, seed)
        start = time.process_time()
        Image.fromarray(frame.rgb).save(io.BytesIO(), "JPEG", quality=90)
        Image.fromarray(frame.labels).save(io.BytesIO(), "PNG")
        encode_cpu += time.process_time() - start
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "frames_per_s_wall": frames / wall,
        "cpu_ms_per_frame": 1000 * cpu / frames,
        "encode_cpu_ms_per_frame": 1000 * encode_cpu / frames,
        "frames_per_s_one_core": frames / cpu,
    }


def bench_dataset(places: int, size: tuple[int, int], workers: int) -> float:
    """Wall-clock images/s of `generate_town` (render, encode, atomic writes) into a temp folder."""
    with tempfile.TemporaryDirectory() as folder:
        result = generate_town(Path(folder) / "town", places, image_size=size, progress=False, workers=workers)
    return result.num_images / result.seconds


def _label_descriptor(label_path: Path, grid: tuple[int, int] = (6, 8)) -> np.ndarray:
    """Area-pooled one-hot of the 19 trainIds on a grid, L2-normalised: float32 [19 * gh * gw]."""
    labels = np.asarray(Image.open(label_path))
    gh, gw = grid
    h, w = labels.shape[0] // gh * gh, labels.shape[1] // gw * gw
    one_hot = (labels[:h, :w, None] == np.arange(19)).astype(np.float32)
    pooled = one_hot.reshape(gh, h // gh, gw, w // gw, 19).mean(axis=(1, 3))
    return (pooled / max(np.linalg.norm(pooled), 1e-12)).ravel()


def _imagenet_descriptors(paths: list[Path], device: str = "cpu") -> np.ndarray | None:
    try:
        import torch

        from structvpr.data.images import image_transform, load_rgb
        from structvpr.model import ModelConfig, build_model
    except ImportError as error:  # the model package is optional for this benchmark
        print(f"(no ImageNet descriptor: {error})")
        return None
    with Image.open(paths[0]) as first:
        size = (max(32, first.height), max(32, first.width))
    model = build_model(ModelConfig(image_size=size)).to(device).eval()
    transform = image_transform(size, model.config.mean, model.config.std)
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), 64):
            batch = torch.stack([transform(load_rgb(p)) for p in paths[start : start + 64]])
            out.append(model(batch.to(device)).cpu().numpy())
    return np.concatenate(out)


def _recall_at_1(
    query: np.ndarray, database: np.ndarray, q_xy: np.ndarray, db_xy: np.ndarray, threshold_m: float = 25.0
) -> float:
    best = np.argmax(query @ database.T, axis=1)
    return float(np.mean(np.linalg.norm(q_xy - db_xy[best], axis=1) <= threshold_m))


def bench_recall(root: Path, split: str = "test") -> dict[str, float]:
    """R@1 per descriptor and query group (same condition, cross condition, each condition)."""
    with open(root / "metadata.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    database = [r for r in rows if r["role"] == "database"]
    queries = [r for r in rows if r["role"] == "queries"]
    db_xy = np.array([[float(r["east"]), float(r["north"])] for r in database])
    q_xy = np.array([[float(r["east"]), float(r["north"])] for r in queries])
    positives = (np.linalg.norm(q_xy[:, None] - db_xy[None], axis=2) <= 25.0).sum(axis=1)
    groups = {
        "same-condition": np.array([r["same_condition"] == "1" for r in queries]),
        "cross-condition": np.array([r["same_condition"] == "0" for r in queries]),
    }
    for name in sorted({r["condition"] for r in queries}):
        groups[name] = np.array([r["condition"] == name for r in queries])
    print(
        f"{root.name} {split}: {len(queries)} queries, {len(database)} database, threshold 25 m, "
        f"chance R@1 ~ {np.mean(positives) / len(database):.3f}"
    )
    descriptors = {
        "labels one-hot 6x8": (
            np.stack([_label_descriptor(root / r["label_path"]) for r in queries]),
            np.stack([_label_descriptor(root / r["label_path"]) for r in database]),
        )
    }
    paths = [root / r["path"] for r in queries + database]
    imagenet = _imagenet_descriptors(paths)
    if imagenet is not None:
        descriptors["ImageNet EfficientNet-Lite0 GeM"] = (imagenet[: len(queries)], imagenet[len(queries) :])
    results = {}
    for name, (q, d) in descriptors.items():
        line = []
        for group, mask in groups.items():
            if mask.any():
                value = _recall_at_1(q[mask], d, q_xy[mask], db_xy)
                results[f"{name} / {group}"] = value
                line.append(f"{group} {value:.3f} ({mask.sum()})")
        print(f"R@1 {name}: " + ", ".join(line))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--recall", type=Path, help="dataset folder made by `structvpr synth`")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[], help="also time whole-dataset generation with these worker counts"
    )
    args = parser.parse_args()
    if args.recall is not None:
        bench_recall(args.recall, args.split)
        return
    result = bench_speed(args.frames, tuple(args.size))
    print(
        f"synth render {args.size[0]}x{args.size[1]}: {result['frames_per_s_wall']:.1f} frames/s "
        f"wall; {result['cpu_ms_per_frame']:.1f} ms CPU per frame incl. JPEG+PNG encoding "
        f"({result['encode_cpu_ms_per_frame']:.1f} ms of it) = "
        f"{result['frames_per_s_one_core']:.1f} frames/s on one uncontended core"
    )
    for workers in args.workers:
        rate = bench_dataset(20, tuple(args.size), workers)
        print(
            f"generate_town 20 places {args.size[0]}x{args.size[1]}, {workers} worker(s): "
            f"{rate:.1f} images/s wall (render + encode + atomic writes)"
        )


if __name__ == "__main__":
    main()
