"""Recall@N of sequence matching on a labelled dataset whose images form routes (one line per length)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from structvpr.data.place_dataset import PlaceDataset
from structvpr.evaluate.descriptors import DescribeOptions, DescriptorNetwork
from structvpr.evaluate.recall import recall_from_predictions
from structvpr.io_utils import atomic_write_text
from structvpr.sequence.matcher import match_sequences
from structvpr.sequence.settings import DEFAULT_CONTRAST_WINDOW, DEFAULT_SPEEDS

# Field of the capture time in UTM-layout names:
# @east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@timestamp@note@.jpg
TIMESTAMP_FIELD = 13


def travel_order(paths: Sequence[Path]) -> np.ndarray:
    """int64 permutation putting images in travel order: by the timestamp field of UTM-layout names
    when every name has a numeric one, else the layout's own order (sorted names = frame order)."""
    stamps = []
    for path in paths:
        fields = Path(path).name.split("@")
        try:
            stamps.append(float(fields[TIMESTAMP_FIELD]))
        except (IndexError, ValueError):
            return np.arange(len(paths), dtype=np.int64)
    return np.argsort(np.asarray(stamps), kind="stable").astype(np.int64)


def sequence_recalls(
    query_descriptors: np.ndarray,
    database_descriptors: np.ndarray,
    positives_per_query: Sequence[np.ndarray],
    lengths: Sequence[int],
    *,
    recall_values: Sequence[int] = (1, 5, 10, 20),
    speeds: Sequence[float] = DEFAULT_SPEEDS,
    candidates: int | None = None,
    contrast_window: int | None = DEFAULT_CONTRAST_WINDOW,
) -> dict[int, dict[int, float]]:
    """{L: {N: Recall@N}} of sequence matching for each length L (descriptors in travel order;
    positives: database indices per query). Queries without positives are left out, as in Recall@N."""
    results = {}
    for length in lengths:
        matches = match_sequences(
            query_descriptors,
            database_descriptors,
            int(length),
            speeds,
            candidates=candidates,
            contrast_window=contrast_window,
            top_n=max(recall_values),
        )
        results[int(length)] = recall_from_predictions(matches.positions, positives_per_query, recall_values).recalls
    return results


def evaluate_sequences(
    dataset: PlaceDataset,
    query_descriptors: np.ndarray,
    database_descriptors: np.ndarray,
    lengths: Sequence[int],
    *,
    recall_values: Sequence[int] = (1, 5, 10, 20),
    speeds: Sequence[float] = DEFAULT_SPEEDS,
    candidates: int | None = None,
    contrast_window: int | None = DEFAULT_CONTRAST_WINDOW,
    out_file: str | Path | None = None,
) -> dict[str, Any]:
    """Sequence Recall@N of `dataset` for every length; prints one line per length, returns (and
    optionally writes as JSON) a dict. Descriptors are in the dataset's order, float32 [N, D]."""
    query_order = travel_order(dataset.query_paths)
    database_order = travel_order(dataset.database_paths)
    new_index = np.empty_like(database_order)
    new_index[database_order] = np.arange(len(database_order))
    positives = dataset.positives_per_query()
    positives = [np.sort(new_index[positives[i]]) for i in query_order]
    recalls = sequence_recalls(
        np.asarray(query_descriptors)[query_order],
        np.asarray(database_descriptors)[database_order],
        positives,
        lengths,
        recall_values=recall_values,
        speeds=speeds,
        candidates=candidates,
        contrast_window=contrast_window,
    )
    for length, values in recalls.items():
        text = ", ".join(f"R@{n}: {100 * value:.1f}" for n, value in values.items())
        print(f"{dataset.summary()} | sequence length {length}: {text}", flush=True)
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "split": dataset.split,
        "speeds": [float(v) for v in speeds],
        "candidates": candidates,
        "contrast_window": contrast_window,
        "recalls": {
            str(length): {str(n): (None if math.isnan(v) else v) for n, v in values.items()}
            for length, values in recalls.items()
        },
    }
    if out_file is not None:
        atomic_write_text(Path(out_file), json.dumps(summary, indent=2) + "\n")
    return summary


def evaluate_model_sequences(
    model: DescriptorNetwork,
    dataset: PlaceDataset,
    lengths: Sequence[int],
    options: DescribeOptions | None = None,
    *,
    recall_values: Sequence[int] = (1, 5, 10, 20),
    candidates: int | None = None,
    contrast_window: int | None = DEFAULT_CONTRAST_WINDOW,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Describe `dataset` with `model` ([B, 3, H, W] -> [B, D]; `options` as in evaluate_dataset)
    and run `evaluate_sequences`; with out_dir, writes `<name>_<split>_sequences.json` there."""
    from structvpr.evaluate.evaluate import describe_dataset_images, output_stem

    dataset.positives_per_query()  # an unlabelled dataset fails here, before describing
    database_descriptors, query_descriptors = describe_dataset_images(model, dataset, options)
    out_file = Path(out_dir) / f"{output_stem(dataset)}_sequences.json" if out_dir is not None else None
    return evaluate_sequences(
        dataset,
        query_descriptors,
        database_descriptors,
        lengths,
        recall_values=recall_values,
        candidates=candidates,
        contrast_window=contrast_window,
        out_file=out_file,
    )
