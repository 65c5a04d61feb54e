"""Tables and plots of the demo report built from its stage records: example retrievals with scores
and file names, the index as a readable table, every stage's time."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from structvpr.report.builder import ReportTable


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} GiB"


def readable_image_name(name: str) -> str:
    """A short name for a map or query image: `@east@north@...@label@...@.jpg` (UTM layout) becomes
    `label (east E, north N)`; other names are returned as they are."""
    fields = [field for field in Path(name).stem.split("@") if field]
    try:
        east, north = float(fields[0]), float(fields[1])
    except (IndexError, ValueError):
        return name
    words = [field for field in fields[2:] if not field.replace(".", "", 1).lstrip("-").isdigit() and len(field) > 1]
    label = max(words, key=len) if words else Path(name).stem
    return f"{label} ({east:.1f} E, {north:.1f} N)"


def examples_table(examples: Sequence[Mapping[str, Any]]) -> ReportTable:
    """One row per example (query, model): each rank's map image, cosine score and verdict."""
    rows = []
    for example in examples:
        names, scores, correct = example.get("names", []), example.get("scores", []), example.get("correct", [])
        ranks = [
            f"{'right' if good else 'wrong'} {score:.3f} {readable_image_name(name)}"
            for name, score, good in zip(names, scores, correct, strict=False)
        ]
        query = readable_image_name(str(example.get("query_name", "")))
        rows.append([f"{example['query']}: {query}", str(example["model"]), *ranks])
    width = max((len(row) for row in rows), default=2)
    columns = ["query", "model", *[f"rank {rank}: verdict, score, map image" for rank in range(1, width - 1)]]
    return ReportTable(columns, [row + [""] * (width - len(row)) for row in rows])


def index_tables(index: Mapping[str, Any]) -> list[ReportTable]:
    """The index (kind, parameters, size, build time, memory) and the example queries it answered."""
    params = ", ".join(f"{key}={value}" for key, value in index.get("params", {}).items()) or "-"
    build = f"{index['build_seconds']:.2f} s" if "build_seconds" in index else "-"
    memory = _size(index["memory_bytes"]) if "memory_bytes" in index else "-"
    disk = _size(index["disk_bytes"]) if "disk_bytes" in index else "-"
    summary = ReportTable(
        ["kind", "parameters", "descriptors", "build time", "index memory", "folder on disk"],
        [[str(index.get("kind", "-")), params, str(index.get("size", "-")), build, memory, disk]],
        f"index folder: {index.get('index', 'index')}/ (search it with `structvpr query IMAGES --index ...`)",
    )
    answers = index.get("answers", [])
    queries = ReportTable(
        ["query image", "top-1 map image", "score"],
        [[readable_image_name(query), readable_image_name(best), f"{score:.3f}"] for query, best, score in answers],
        "example queries answered by the saved index",
    )
    return [summary, queries] if answers else [summary]


def timings_table(
    stages: Mapping[str, Mapping[str, Any]], training_steps: Mapping[str, float], report_start: float
) -> ReportTable:
    """Every demo stage with its wall time (the report stage: up to writing this page), the training
    steps inside stage 3, and the total."""
    rows, total = [], 0.0
    for name, record in sorted(stages.items(), key=lambda item: str(item[1].get("title", item[0]))):
        if name == "report":
            continue
        rows.append([str(record.get("title", name)), f"{record['seconds']:.1f} s"])
        total += float(record["seconds"])
        if name == "train":
            rows += [[f"    {step}", f"{seconds:.1f} s"] for step, seconds in training_steps.items()]
    report_seconds = time.perf_counter() - report_start
    total += report_seconds
    rows.append(["7/7 report (up to writing this page)", f"{report_seconds:.1f} s"])
    rows.append(["total", f"{total:.1f} s"])
    return ReportTable(["stage", "wall time"], rows, "times of earlier runs are kept when the demo is resumed")


def plot_partition_groups(partition_npz: Path, out_png: Path) -> Path:
    """Bar plot of training samples per group G1..G4 read from a partition.npz (arrays only)."""
    import numpy as np

    from structvpr.report.figures import plot_group_counts

    with np.load(partition_npz, allow_pickle=False) as content:
        groups = content["groups"]
    counts = {f"G{group}": int((groups == group).sum()) for group in (1, 2, 3, 4)}
    return plot_group_counts(counts, out_png, "StructVPR++ partition of the training samples")
