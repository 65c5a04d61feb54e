"""Offline group partition of the training samples and their distillation weights (StructVPR++).

With both Stage I models frozen, every training image is a query against all other training
images; r_T and r_S are the 1-based ranks of its best true positive for teacher and student.
With threshold k a model is "right" when its rank <= k:

  G1 teacher right, student wrong -> the knowledge the student lacks       (weight 1.0)
  G2 both right                                                           (weight 0.5)
  G3 both wrong                                                           (weight 0.25)
  G4 teacher wrong, student right -> distilling would hurt                 (weight 0.0)

Group 0 marks samples without any positive in the training set (weight 0). Ranks beyond the search
depth are stored as depth + 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

GROUP_NAMES = (
    "no positive",
    "G1 teacher right, student wrong",
    "G2 both right",
    "G3 both wrong",
    "G4 teacher wrong, student right",
)
DEFAULT_GROUP_WEIGHTS = (1.0, 0.5, 0.25, 0.0)


def best_positive_ranks(
    descriptors: np.ndarray, positives: Sequence[np.ndarray], search_depth: int = 100, batch_size: int = 4096
) -> np.ndarray:
    """1-based rank of each sample's best true positive among all other samples (FAISS, inner product).

    descriptors: float32 [N, D], L2-normalised; positives[i]: indices of i's positives (i itself is
    ignored). Returns int64 [N]: the rank, search_depth + 1 when no positive is in the top
    search_depth, and 0 when sample i has no positive at all.
    """
    descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
    count = len(descriptors)
    if len(positives) != count:
        raise ValueError(f"{len(positives)} positive lists for {count} descriptors")
    index = faiss.IndexFlatIP(descriptors.shape[1])
    index.add(descriptors)
    depth = min(search_depth + 1, count)  # +1: the query itself is in the index
    ranks = np.zeros(count, dtype=np.int64)
    for start in range(0, count, batch_size):
        _, neighbours = index.search(descriptors[start : start + batch_size], depth)
        for offset, row in enumerate(neighbours):
            query = start + offset
            positive_set = {int(p) for p in positives[query]} - {query}
            if not positive_set:
                continue
            others = [int(n) for n in row if n != query and n >= 0][:search_depth]
            hit = next((rank for rank, n in enumerate(others, 1) if n in positive_set), search_depth + 1)
            ranks[query] = hit
    return ranks


def assign_groups(teacher_rank: np.ndarray, student_rank: np.ndarray, k: int = 1) -> np.ndarray:
    """Groups 1..4 from ranks (see module docstring); 0 where a rank is 0 (no positive). int8 [N]."""
    teacher_rank, student_rank = np.asarray(teacher_rank), np.asarray(student_rank)
    teacher_right, student_right = teacher_rank <= k, student_rank <= k
    groups = np.select(
        [
            teacher_right & ~student_right,
            teacher_right & student_right,
            ~teacher_right & ~student_right,
            ~teacher_right & student_right,
        ],
        [1, 2, 3, 4],
    ).astype(np.int8)
    groups[(teacher_rank <= 0) | (student_rank <= 0)] = 0
    return groups


def group_weights(groups: np.ndarray, weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS) -> np.ndarray:
    """Per-sample weights float32 [N] from the per-group constants (G1..G4); group 0 -> 0."""
    if len(weights) != 4:
        raise ValueError(f"need 4 group weights (G1..G4), got {list(weights)}")
    table = np.asarray([0.0, *weights], dtype=np.float32)
    return table[np.asarray(groups, dtype=np.int64)]


def smooth_weights(teacher_rank: np.ndarray, student_rank: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Smooth option: w = sigmoid((log r_S - log r_T) / temperature), float32 [N] in (0, 1).

    0.5 when both models rank the positive alike, -> 1 when the teacher is much better (G1-like),
    -> 0 when the student is much better (G4-like). Log ranks: going from rank 1 to 2 matters more
    than from 50 to 51. Samples without a positive (rank 0) get 0.
    """
    teacher_rank = np.asarray(teacher_rank, dtype=np.float64)
    student_rank = np.asarray(student_rank, dtype=np.float64)
    valid = (teacher_rank > 0) & (student_rank > 0)
    gap = np.log(np.maximum(student_rank, 1)) - np.log(np.maximum(teacher_rank, 1))
    weights = 1.0 / (1.0 + np.exp(-gap / temperature))
    return np.where(valid, weights, 0.0).astype(np.float32)


def same_place_positives(place_labels: np.ndarray) -> list[np.ndarray]:
    """Indices of the other images of each image's place."""
    place_labels = np.asarray(place_labels)
    order = np.argsort(place_labels, kind="stable")
    boundaries = np.flatnonzero(np.diff(place_labels[order])) + 1
    members = {int(place_labels[group[0]]): group for group in np.split(order, boundaries)}
    return [members[int(label)][members[int(label)] != index] for index, label in enumerate(place_labels)]
