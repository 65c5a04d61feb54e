"""Evaluate a descriptor model on one PlaceDataset: Recall@N, one printed line, JSON + CSV + images."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from structvpr.data.place_dataset import DatasetError, PlaceDataset
from structvpr.dataclass_dict import to_plain_dict
from structvpr.evaluate.descriptors import DescribeOptions, DescriptorNetwork, compute_descriptors
from structvpr.evaluate.predictions import save_prediction_images
from structvpr.evaluate.recall import (
    RecallResult,
    recall_from_predictions,
    search_top_k,
)
from structvpr.io_utils import atomic_write_text
from structvpr.model.vpr_net import ModelConfig


def output_stem(dataset: PlaceDataset) -> str:
    """File-name-safe '<name>_<split>' used for every file written for this dataset."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dataset.name}_{dataset.split}").strip("-")


def format_result_line(dataset: PlaceDataset, result: RecallResult) -> str:
    """'<name> <split>: <Nq> queries, <Nd> database, threshold <T> m | R@1: 73.0, ... | <n> excluded'."""
    recalls = ", ".join(f"R@{n}: {100 * value:.1f}" for n, value in result.recalls.items())
    return f"{dataset.summary()} | {recalls} | {result.num_excluded} queries without positives excluded"


def _write_predictions_csv(
    path: Path,
    dataset: PlaceDataset,
    predictions: np.ndarray,
    scores: np.ndarray,
    positives_per_query: Sequence[np.ndarray],
) -> None:
    """One row per query: its path, number of positives, then path/correct/score per rank."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    k = predictions.shape[1]
    header = ["query_index", "query_path", "num_positives"]
    for rank in range(1, k + 1):
        header += [f"pred{rank}_path", f"pred{rank}_correct", f"pred{rank}_score"]
    writer.writerow(header)
    for query_index, query_path in enumerate(dataset.query_paths):
        positives = positives_per_query[query_index]
        row: list[object] = [query_index, str(query_path), len(positives)]
        for database_index, score in zip(predictions[query_index], scores[query_index], strict=False):
            row += [
                str(dataset.database_paths[database_index]),
                int(np.isin(database_index, positives)),
                f"{score:.6f}",
            ]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def describe_dataset_images(
    model: DescriptorNetwork,
    dataset: PlaceDataset,
    options: DescribeOptions | None = None,
    *,
    out_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries) descriptors of `dataset`, each float32 [N, D] in its list's order, made
    by `compute_descriptors` with `options`. With `out_dir`, each is kept as
    `<name>_<split>_database.npy` / `<name>_<split>_queries.npy` there."""
    described = []
    for paths, role in ((dataset.database_paths, "database"), (dataset.query_paths, "queries")):
        out_file = out_dir / f"{output_stem(dataset)}_{role}.npy" if out_dir is not None else None
        described.append(compute_descriptors(model, paths, options, out_file=out_file, desc=f"{dataset.name} {role}"))
    return described[0], described[1]


def evaluate_dataset(
    model: DescriptorNetwork,
    dataset: PlaceDataset,
    options: DescribeOptions | None = None,
    *,
    recall_values: Sequence[int] = (1, 5, 10, 20),
    out_dir: str | Path | None = None,
    save_descriptors: bool = False,
    num_preds_to_save: int = 0,
) -> dict:
    """Extract descriptors, search exactly, print one result line and return the result dict.

    `options` (default DescribeOptions()): preprocessing (image_size (H, W), mean, std; None = the
    model's `config`), batch size, device, workers, bad images, progress bar. With `out_dir`, writes
    `<name>_<split>.json` (result) and `<name>_<split>_predictions.csv` (top-k per query, k = max
    recall value); `save_descriptors` keeps `..._queries.npy` / `..._database.npy` (float32 [N, D]);
    `num_preds_to_save` > 0 writes one image per query with its top-N predictions.
    Recall values in the dict are fractions; queries without positives are excluded and counted.
    """
    options = (options or DescribeOptions()).for_model(model)
    assert options.image_size is not None and options.mean is not None and options.std is not None
    config = getattr(model, "config", None)  # VPRNet and SegBranch carry a ModelConfig
    if (save_descriptors or num_preds_to_save > 0) and out_dir is None:
        raise ValueError("save_descriptors and num_preds_to_save need an output folder (out_dir)")
    if dataset.num_queries == 0 or dataset.num_database == 0:
        advice = (
            "; this is a plain folder with no ground truth: give database/ and queries/ images named "
            "@UTM_east@UTM_north@...jpg (layout utm), query/ + ref/ + a ground-truth .npy/.npz (gt_list), "
            "or two folders of the same frame names (sequence); see docs/datasets.md, Layouts"
            if not dataset.is_labelled
            else ""
        )
        raise DatasetError(
            f"{dataset.root}: {dataset.name} {dataset.split} has {dataset.num_queries} queries "
            f"and {dataset.num_database} database images; both must be non-empty{advice}"
        )
    positives_per_query = dataset.positives_per_query()  # fails early, before extraction, if unlabelled
    out_dir = Path(out_dir) if out_dir is not None else None
    stem = output_stem(dataset)

    start = time.perf_counter()
    database_descriptors, query_descriptors = describe_dataset_images(
        model, dataset, options, out_dir=out_dir if save_descriptors else None
    )
    extraction_seconds = time.perf_counter() - start
    k = max(max(recall_values), num_preds_to_save)
    scores, predictions = search_top_k(query_descriptors, database_descriptors, k)
    result = recall_from_predictions(predictions, positives_per_query, recall_values)
    print(format_result_line(dataset, result), flush=True)

    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "split": dataset.split,
        "root": str(dataset.root),
        "num_queries": dataset.num_queries,
        "num_database": dataset.num_database,
        "positives": "ground_truth" if dataset.ground_truth is not None else "threshold",
        "threshold_m": None if dataset.ground_truth is not None else dataset.threshold_m,
        "recalls": {str(n): (None if math.isnan(v) else v) for n, v in result.recalls.items()},
        "num_evaluated": result.num_evaluated,
        "num_excluded": result.num_excluded,
        "descriptor_dim": int(query_descriptors.shape[1]),
        "image_size": list(options.image_size),
        "mean": list(options.mean),
        "std": list(options.std),
        "model": to_plain_dict(config) if isinstance(config, ModelConfig) else None,
        "extraction_seconds": round(extraction_seconds, 3),
        "device": str(options.device),
        "files": {},
    }
    if out_dir is not None:
        csv_path = out_dir / f"{stem}_predictions.csv"
        top = max(recall_values)
        _write_predictions_csv(csv_path, dataset, predictions[:, :top], scores[:, :top], positives_per_query)
        summary["files"]["predictions_csv"] = str(csv_path)
        if save_descriptors:
            summary["files"]["query_descriptors"] = str(out_dir / f"{stem}_queries.npy")
            summary["files"]["database_descriptors"] = str(out_dir / f"{stem}_database.npy")
        if num_preds_to_save > 0:
            images_dir = out_dir / f"{stem}_preds"
            save_prediction_images(
                dataset.query_paths,
                dataset.database_paths,
                predictions,
                positives_per_query,
                images_dir,
                num_preds_to_save,
            )
            summary["files"]["prediction_images"] = str(images_dir)
        json_path = out_dir / f"{stem}.json"
        summary["files"]["result_json"] = str(json_path)
        atomic_write_text(json_path, json.dumps(summary, indent=2) + "\n")
    return summary
