"""Evaluation: descriptor extraction, exact FAISS search, Recall@N, result files and prediction images."""

from structvpr.evaluate.descriptors import DescribeOptions, compute_descriptors
from structvpr.evaluate.evaluate import evaluate_dataset
from structvpr.evaluate.predictions import save_prediction_images
from structvpr.evaluate.recall import (
    RecallResult,
    recall_at_n,
    recall_from_predictions,
    search_top_k,
)

__all__ = [
    "DescribeOptions",
    "RecallResult",
    "compute_descriptors",
    "evaluate_dataset",
    "recall_at_n",
    "recall_from_predictions",
    "save_prediction_images",
    "search_top_k",
]
