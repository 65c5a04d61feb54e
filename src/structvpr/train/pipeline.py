"""`structvpr train --stage all`: Stage I (rgb + seg) -> partition -> Stage II -> evaluation -> report.

Run folders under `train.output_dir`: stage1-rgb, stage1-seg, partition, stage2 (the student),
stage2-vpr-only (the RGB baseline: the student's Stage II steps from the same Stage I weights,
VPR loss only), and one folder
per ablation. Finished runs (a `model.pt` present) are reused, so an interrupted pipeline resumes
at the first missing stage. The report (`report.md` + `report.json`) has one row per model with
the dataset, split, counts and Recall@N.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from structvpr.config import Config, DatasetSource, config_to_dict
from structvpr.io_utils import atomic_write_text

# Ablations of the student; "variants" retrains teacher + partition for every other label variant.
DEFAULT_ABLATIONS = ("no_weights", "no_label_features", "no_alignment", "variants")
ABLATION_SETTINGS = {
    "no_weights": ({"uniform_weights": True}, "all sample weights = 1"),
    "no_label_features": ({"lambda_l": 0.0, "lambda_a": 0.0}, "global distillation only"),
    "no_alignment": ({"lambda_a": 0.0}, "no semantic alignment"),
}
VPR_ONLY = {"lambda_g": 0.0, "lambda_l": 0.0, "lambda_a": 0.0}


def train_teacher(config: Config, run_name: str = "stage1-seg") -> Path:
    """Train the seg-branch teacher (a SegBranch: label features included) with the VPR loss in
    `<output_dir>/<run_name>` and write its model.pt; the run name separates the label variants."""
    from structvpr.train.stage1 import run_stage1

    return run_stage1(config, "seg", run_name)


def resuming_if_started(config: Config, run_dir: Path) -> Config:
    """`config` with train.resume set when `run_dir` holds the last.ckpt of an interrupted run, so a
    re-run pipeline continues that run instead of refusing its folder or starting it over."""
    started = (run_dir / "checkpoints" / "last.ckpt").is_file()
    return dataclasses.replace(config, train=dataclasses.replace(config.train, resume=started))


def _rank() -> int:
    """Global rank under DDP (every process runs the pipeline), else 0."""
    distributed = torch.distributed
    return distributed.get_rank() if distributed.is_available() and distributed.is_initialized() else 0


def _barrier() -> None:
    """Wait for every DDP process (no-op without a process group): rank 0 writes the files the next
    stage reads."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        distributed.barrier()


def _with_structvpr(config: Config, **changes) -> Config:
    return dataclasses.replace(config, structvpr=dataclasses.replace(config.structvpr, **changes))


def evaluation_items(dataset, config: Config, with_labels: bool):
    """A DataLoader over the database then the query images of `dataset` (with label maps if asked)."""
    from torch.utils.data import DataLoader

    from structvpr.data.training_set import PlaceTrainingSet

    paths = list(dataset.database_paths) + list(dataset.query_paths)
    items = PlaceTrainingSet(
        paths,
        np.arange(len(paths)),
        image_size=config.model.image_size,
        mean=config.model.mean,
        std=config.model.std,
        with_labels=with_labels,
    )
    return DataLoader(items, batch_size=config.data.val_batch_size, shuffle=False, num_workers=config.data.num_workers)


def describe_dataset(model, dataset, config: Config, device: str, teacher: bool = False) -> np.ndarray:
    """Descriptors float32 [Nd + Nq, D] of the database then the queries (teacher: from label maps)."""
    from structvpr.evaluate.descriptors import describe_batches
    from structvpr.segment.classes import load_merge_table
    from structvpr.segment.slme import teacher_input

    merge_table = load_merge_table(config.structvpr.merge_table) if teacher else None

    def inputs():
        for batch in evaluation_items(dataset, config, with_labels=teacher):
            if teacher:
                yield teacher_input(batch["label_map"], merge_table, model.config.in_channels, model.config.image_size)
            else:
                yield batch["image"]

    count = len(dataset.database_paths) + len(dataset.query_paths)
    return describe_batches(model.to(device), inputs(), count, device=device)


def evaluate_model(model, dataset, positives, config: Config, device: str, teacher: bool = False) -> dict:
    """Recall@N (percent) of one model on one split, with the split's name and counts."""
    from structvpr.evaluate.recall import recall_at_n

    descriptors = describe_dataset(model, dataset, config, device, teacher)
    recalls = recall_at_n(
        descriptors[dataset.num_database :],
        descriptors[: dataset.num_database],
        positives,
        ns=tuple(config.data.recall_values),
    )
    return {
        "dataset": dataset.name,
        "split": dataset.split,
        "queries": dataset.num_queries,
        "database": dataset.num_database,
        "summary": dataset.summary(),
        **{f"R@{n}": round(100.0 * value, 2) for n, value in recalls.items()},
    }


def report_markdown(rows: Sequence[dict], recall_values: Sequence[int]) -> str:
    """The report table: one row per model."""
    header = ["model", "dataset", "split", "queries", "database", *[f"R@{n}" for n in recall_values], "epochs", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key in header) + " |")
    return "\n".join(lines) + "\n"


def run_all(
    config: Config,
    ablations: Sequence[str] | None = None,
    device: str | None = None,
    eval_sources: Sequence[DatasetSource] | None = None,
) -> Path:
    """The whole recipe; returns `train.output_dir`. See the module docstring for the run folders.

    ablations: subset of DEFAULT_ABLATIONS (default all). eval_sources: dataset splits to report on
    (default `data.val`). device: for evaluation and the partition (default: cuda if available).
    """
    from structvpr.model.branches import load_seg_branch
    from structvpr.model.model_file import load_model_file
    from structvpr.train.datamodule import open_source
    from structvpr.train.partition_run import run_partition
    from structvpr.train.stage1 import run_stage1
    from structvpr.train.stage2 import run_stage2, stage2_epochs

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(config.train.output_dir)
    ablations = list(DEFAULT_ABLATIONS if ablations is None else ablations)
    unknown = sorted(set(ablations) - set(DEFAULT_ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablations {unknown} (choose from {', '.join(DEFAULT_ABLATIONS)})")
    stage1_epochs = config.train.epochs
    stage2_epoch_count = stage2_epochs(config)

    timings: dict[str, float] = {}  # seconds per stage run in this call (reused stages are absent)

    def done(run_name: str) -> bool:
        return (root / run_name / "model.pt").is_file()

    def timed(name: str, work, *args, **kwargs) -> None:
        start = time.perf_counter()
        work(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)

    if not done("stage1-rgb"):
        timed("stage1-rgb", run_stage1, resuming_if_started(config, root / "stage1-rgb"), "rgb")
    _barrier()
    runs = []  # (name, run folder, kind, epochs, notes)
    runs.append(("RGB baseline (Stage I)", root / "stage1-rgb", "rgb", stage1_epochs, "VPR loss only"))
    variants = [config.structvpr.variant]
    if "variants" in ablations:
        variants += [v for v in ("lmc", "lc", "mc", "mlp") if v != config.structvpr.variant]
    for variant in variants:
        suffix = "" if variant == config.structvpr.variant else f"-{variant}"
        variant_config = _with_structvpr(config, variant=variant)
        if not done(f"stage1-seg{suffix}"):
            timed(
                f"stage1-seg{suffix}",
                train_teacher,
                resuming_if_started(variant_config, root / f"stage1-seg{suffix}"),
                f"stage1-seg{suffix}",
            )
        _barrier()
        cache_ready = (root / f"partition{suffix}" / "teacher_cache" / "cache.json").is_file()
        if not cache_ready and _rank() == 0:
            timed(
                f"partition{suffix}",
                run_partition,
                variant_config,
                teacher_path=root / f"stage1-seg{suffix}" / "model.pt",
                output_dir=root / f"partition{suffix}",
                device=device,
            )
        _barrier()
        if not suffix:
            runs.append(
                (
                    f"teacher: seg-branch ({variant}, needs labels)",
                    root / "stage1-seg",
                    "teacher",
                    stage1_epochs,
                    "input = SLME label maps",
                )
            )
        label = f"StructVPR++ student ({variant})" if not suffix else f"ablation: variant {variant}"
        jobs = [(f"stage2{suffix}", {}, label, "teacher and student use this label variant" if suffix else "")]
        if not suffix:
            jobs.append(
                (
                    "stage2-vpr-only",
                    VPR_ONLY,
                    "RGB baseline (same Stage II steps, VPR loss only)",
                    "Stage I + Stage II epochs, VPR loss only",
                )
            )
            jobs += [
                (f"stage2-{name}", ABLATION_SETTINGS[name][0], f"ablation: {name}", ABLATION_SETTINGS[name][1])
                for name in ablations
                if name in ABLATION_SETTINGS
            ]
        for run_name, settings, label, notes in jobs:
            if not done(run_name):
                timed(
                    run_name,
                    run_stage2,
                    resuming_if_started(variant_config, root / run_name),
                    run_name,
                    cache_dir=root / f"partition{suffix}" / "teacher_cache",
                    settings_overrides=settings,
                )
            _barrier()
            runs.append((label, root / run_name, "rgb", stage1_epochs + stage2_epoch_count, notes))
    if _rank() != 0:
        return root  # evaluation and the report: rank 0 only
    rows = []
    for source in eval_sources or [config.data.val]:
        dataset = open_source(source, "evaluation")
        positives = dataset.positives_per_query(config.data.val_threshold_m)
        for label, run_dir, kind, epochs, notes in runs:
            if kind == "teacher":
                model, _ = load_seg_branch(run_dir / "model.pt")
            else:
                model, _ = load_model_file(run_dir / "model.pt")
            result = evaluate_model(model, dataset, positives, config, device, teacher=kind == "teacher")
            rows.append({"model": label, "run": run_dir.name, "epochs": epochs, "notes": notes, **result})
            print(f"[report] {label}: {result['summary']}: R@1 {result.get('R@1')}", flush=True)
    report = {"rows": rows, "timings": timings, "config": config_to_dict(config)}
    atomic_write_text(root / "report.json", json.dumps(report, indent=2))
    atomic_write_text(root / "report.md", "# StructVPR++ report\n\n" + report_markdown(rows, config.data.recall_values))
    print(report_markdown(rows, config.data.recall_values), flush=True)
    return root
