"""Offline partition: ranks of the best true positive, groups G1..G4, weights, the partition file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from structvpr.train.partition import (
    assign_groups,
    best_positive_ranks,
    group_weights,
    smooth_weights,
)
from structvpr.train.partition_file import (
    Partition,
    PartitionFileError,
    load_partition,
    save_histogram_plot,
    save_partition,
)


@pytest.mark.parametrize(
    "teacher_rank,student_rank,k,group",
    [
        (1, 2, 1, 1),
        (1, 30, 1, 1),
        (1, 1, 1, 2),
        (2, 2, 1, 3),
        (50, 3, 1, 3),
        (3, 1, 1, 4),
        (4, 7, 5, 1),
        (5, 5, 5, 2),
        (6, 9, 5, 3),
        (9, 5, 5, 4),
        (0, 1, 1, 0),
        (1, 0, 1, 0),
    ],
)
def test_hand_made_rank_pairs_land_in_the_right_group(teacher_rank: int, student_rank: int, k: int, group: int) -> None:
    groups = assign_groups(np.array([teacher_rank]), np.array([student_rank]), k=k)
    assert groups.tolist() == [group]


def test_group_weights_and_smooth_weights() -> None:
    groups = np.array([1, 2, 3, 4, 0])
    assert group_weights(groups).tolist() == [1.0, 0.5, 0.25, 0.0, 0.0]
    assert group_weights(groups, (2, 1, 1, 0)).tolist() == [2, 1, 1, 0, 0]
    smooth = smooth_weights(np.array([1, 3, 30, 1, 0]), np.array([30, 3, 1, 1, 4]))
    assert smooth[0] > 0.95 and smooth[2] < 0.05
    assert smooth[1] == pytest.approx(0.5) and smooth[3] == pytest.approx(0.5) and smooth[4] == 0.0


def test_best_positive_ranks_with_faiss() -> None:
    # 1-D "descriptors" on a circle: angle decides similarity, so the order is known by hand.
    angles = np.array([0.0, 0.1, 0.25, 1.0, 1.05, 3.0])
    descriptors = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    positives = [np.array([0, 2]), np.array([3]), np.array([0]), np.array([4]), np.array([3]), np.array([])]
    ranks = best_positive_ranks(descriptors, positives, search_depth=3)
    # 0: neighbours 1, 2 -> positive 2 at rank 2; 1: neighbours 0, 2, 3 -> 3 at rank 3;
    # 2: 1, 0 -> rank 2; 3: 4 -> rank 1; 4: 3 -> rank 1; 5: no positive -> 0.
    assert ranks.tolist() == [2, 3, 2, 1, 1, 0]
    assert best_positive_ranks(descriptors, positives, search_depth=2)[1] == 3  # beyond depth -> depth + 1


def test_partition_file_round_trip_and_errors(tmp_path) -> None:
    partition = Partition(
        sample_paths=["/a/x.jpg", "/a/y.jpg"],
        teacher_rank=np.array([1, 4]),
        student_rank=np.array([3, 1]),
        groups=np.array([1, 4], dtype=np.int8),
        weights=np.array([1.0, 0.0], dtype=np.float32),
        metadata={"k": 1, "teacher_sha256": "ab" * 32},
    )
    path = tmp_path / "partition.npz"
    save_partition(path, partition)
    loaded = load_partition(path)
    assert loaded.sample_paths == partition.sample_paths
    assert loaded.groups.tolist() == [1, 4] and loaded.weights.tolist() == [1.0, 0.0]
    assert loaded.metadata["teacher_sha256"] == "ab" * 32
    assert "G1 teacher right" in loaded.histogram_text()
    save_histogram_plot(loaded, tmp_path / "groups.png")
    assert (tmp_path / "groups.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(PartitionFileError, match="does not exist"):
        load_partition(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PartitionFileError, match="bad.npz"):
        load_partition(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "other.npz",
        metadata=np.asarray(json.dumps({"format": "x"})),
        sample_paths=np.array([]),
        teacher_rank=np.array([]),
        student_rank=np.array([]),
        groups=np.array([]),
        weights=np.array([]),
    )
    with pytest.raises(PartitionFileError, match="format"):
        load_partition(tmp_path / "other.npz")
