"""Benchmark: cost of a Stage II step vs a Stage I RGB step, and student inference throughput.

Both training steps run on the same batch (P x K images with label maps): Stage I = VPR loss on
the RGB VPRNet; Stage II = VPR loss + the recipe's contrastive distillation (projector, bank), label
distillation and alignment, with the
teacher outputs read from an on-disk teacher cache (memory-mapped). Each step is forward + backward
+ optimiser step; the fastest of interleaved repeats are compared (on a shared machine the minimum
is the least disturbed estimate of a step's own cost; medians are printed too). Inference: the exported student
(plain VPRNet) against backbone + aggregator alone on the same images.

    .venv/bin/python benchmarks/bench_stage2.py [--device cpu] [--batch 32] [--size 96 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from structvpr.config import config_to_dict, load_config
from structvpr.train.stage2 import Stage2Module
from structvpr.train.teacher_cache import load_teacher_cache, save_teacher_cache
from structvpr.train.vpr_module import VPRLightningModule


def _batch(places: int, per_place: int, size: tuple[int, int], device: str) -> dict:
    """Random images, block-structured trainId label maps (road, building, sky, car), place labels."""
    generator = torch.Generator().manual_seed(0)
    count = places * per_place
    height, width = size
    labels = torch.zeros(count, height, width, dtype=torch.uint8)
    for i in range(count):
        horizon = int(torch.randint(height // 5, height // 2, (1,), generator=generator))
        labels[i, :horizon] = 10
        labels[i, horizon : int(0.7 * height)] = 2 if i % 2 else 8
        start = int(torch.randint(0, width // 2, (1,), generator=generator))
        labels[i, int(0.75 * height) : int(0.9 * height), start : start + width // 4] = 13
    return {
        "image": torch.randn(count, 3, height, width, generator=generator).to(device),
        "label_map": labels.to(device),
        "place": torch.arange(places).repeat_interleave(per_place).to(device),
        "index": torch.arange(count).to(device),
    }


def _stage1_loss(module: VPRLightningModule, batch: dict) -> torch.Tensor:
    """What the Stage I RGB training step computes (its Trainer-only bookkeeping left out)."""
    return module.vpr_loss(module(batch), batch["place"])


def _timed_step(loss_function, module, optimiser, batch: dict, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    loss_function(module, batch).backward()
    optimiser.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _timed_forward(function, images: torch.Tensor, device: str) -> float:
    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--places", type=int, default=8, help="P places per batch")
    parser.add_argument("--per-place", type=int, default=4, help="K images per place")
    parser.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    config = load_config(
        None, [f"model.backbone={args.backbone}", f"model.image_size={list(args.size)}", "model.pretrained=false"]
    )
    batch = _batch(args.places, args.per_place, tuple(args.size), device)
    count = len(batch["index"])
    torch.manual_seed(0)
    stage1 = VPRLightningModule(config_to_dict(config), "rgb").to(device).train()
    global_dim = stage1.network.descriptor_dim
    with tempfile.TemporaryDirectory() as folder:
        probe = Stage2Module(config_to_dict(config), {"target_dim": global_dim, "unit_dim": 128, "label_dim": 128})
        num_units = len(probe.label_config.levels) * len(probe.label_config.kept_classes)
        label_dim = probe.label_head.descriptor_dim if probe.label_head is not None else 128
        target_dim = global_dim + label_dim  # the combined teacher descriptor [g ; l]
        rng = np.random.default_rng(0)
        save_teacher_cache(
            Path(folder),
            [f"{i}.jpg" for i in range(count)],
            rng.normal(size=(count, target_dim)).astype(np.float32),
            batch["place"].cpu().numpy(),
            rng.random(count).astype(np.float32),
            {"target": "combined"},
            label_descriptors=rng.normal(size=(count, label_dim)).astype(np.float16),
            units=rng.normal(size=(count, num_units, 128)).astype(np.float16),
            unit_presence=rng.random((count, num_units)) > 0.2,
        )
        cache = load_teacher_cache(folder)
        teacher_dims = {"target_dim": target_dim, "unit_dim": 128, "label_dim": label_dim}
        stage2 = Stage2Module(config_to_dict(config), teacher_dims).to(device).train()
        stage2.network.load_state_dict(stage1.network.state_dict())
        stage2.attach_teacher(cache)
        for module in (stage1, stage2):
            module.log = lambda *a, **k: None  # no Trainer: logging is not part of the measured step
        optimisers = [torch.optim.AdamW(m.parameters(), lr=1e-5) for m in (stage1, stage2)]
        stage1_times, stage2_times = [], []
        for repeat in range(args.repeats + 2):  # 2 warm-up rounds, interleaved to share the noise
            t1 = _timed_step(_stage1_loss, stage1, optimisers[0], batch, device)
            t2 = _timed_step(lambda module, b: module.training_step(b, 0), stage2, optimisers[1], batch, device)
            if repeat >= 2:
                stage1_times.append(t1)
                stage2_times.append(t2)
    step_ratio = min(stage2_times) / min(stage1_times)
    student = stage2.network.eval()
    plain = lambda images: student.aggregator(student.backbone(images)[-1])
    images = batch["image"]
    student_times, plain_times = [], []
    for repeat in range(args.repeats + 2):
        ts, tp = _timed_forward(student, images, device), _timed_forward(plain, images, device)
        if repeat >= 2:
            student_times.append(ts)
            plain_times.append(tp)
    throughput_ratio = min(plain_times) / min(student_times)
    print(
        f"device {device}, batch {args.places}x{args.per_place} at {args.size[0]}x{args.size[1]}, "
        f"backbone {args.backbone}, {args.repeats} repeats (min / median)"
    )
    print(f"Stage I RGB step   {1000 * min(stage1_times):8.1f} / {1000 * statistics.median(stage1_times):8.1f} ms")
    print(
        f"Stage II step      {1000 * min(stage2_times):8.1f} / {1000 * statistics.median(stage2_times):8.1f} ms "
        "(teacher from cache)"
    )
    print(f"stage2_step_ratio = {step_ratio:.3f}  (target <= 1.2)")
    print(
        f"student inference  {count / min(student_times):8.1f} img/s; "
        f"backbone+aggregator {count / min(plain_times):8.1f} img/s (best of {args.repeats})"
    )
    print(f"inference_throughput_ratio = {throughput_ratio:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
