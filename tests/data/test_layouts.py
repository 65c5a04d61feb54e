"""Every layout read from small fixtures written in the real on-disk format; positives checked."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
from layout_writers import (
    vpr_bench_ground_truth,
    write_gt_folders,
    write_image,
    write_msls_side,
    write_pitts,
    write_utm_split,
)

from structvpr.cli import main as structvpr_main
from structvpr.commands.dataset_args import add_dataset_arguments, dataset_from_args
from structvpr.data.layout_names import LAYOUT_NAMES
from structvpr.data.layouts import (
    LAYOUT_OPTIONS,
    LAYOUTS,
    convert_ground_truth_npy,
    detect_layout,
    drop_bad_images,
    open_dataset,
    skipped_summary,
)
from structvpr.data.layouts.sequences import FRAME_SPACING_M
from structvpr.data.place_dataset import DatasetError


def as_lists(positives: list[np.ndarray]) -> list[list[int]]:
    return [row.tolist() for row in positives]


# ---------------------------------------------------------------- UTM folder layout
def test_utm_layout_positives_within_25_m(tmp_path: Path) -> None:
    database = [(1000.0, 5000.0), (1010.0, 5000.0), (1030.0, 5000.0), (1100.0, 5000.0)]
    queries = [(1005.0, 5000.0), (1100.0, 5020.0), (2000.0, 2000.0)]
    write_utm_split(tmp_path / "pitts", "test", database, queries)
    dataset = open_dataset(tmp_path / "pitts")
    assert detect_layout(tmp_path / "pitts") == "utm"
    assert (dataset.name, dataset.split, dataset.num_database, dataset.num_queries) == ("pitts", "test", 4, 3)
    assert dataset.summary() == "pitts test: 3 queries, 4 database, threshold 25 m"
    # Paths are sorted by name; look positives up by the coordinates parsed from the names.
    assert sorted(map(tuple, dataset.database_coords.tolist())) == database
    east_of_database = dataset.database_coords[:, 0]
    positives_by_query_east = {
        float(east): sorted(east_of_database[row].tolist())
        for east, row in zip(dataset.query_coords[:, 0], dataset.positives_per_query(), strict=True)
    }
    assert positives_by_query_east == {1005.0: [1000.0, 1010.0, 1030.0], 1100.0: [1100.0], 2000.0: []}
    narrow = dict(zip(dataset.query_coords[:, 0], dataset.positives_per_query(6.0), strict=True))
    assert sorted(east_of_database[narrow[1005.0]].tolist()) == [1000.0, 1010.0]


def test_utm_layout_split_choice_and_images_paths_txt(tmp_path: Path) -> None:
    write_utm_split(tmp_path / "ds", "val", [(0, 0), (5, 0), (500, 0)], [(1, 0)])
    write_utm_split(tmp_path / "ds", "train", [(0, 0)], [(0, 0)])
    database_folder = tmp_path / "ds" / "images" / "val" / "database"
    listed = sorted(p.name for p in database_folder.iterdir())[:2]
    (database_folder.parent / "database_images_paths.txt").write_text("\n".join(listed) + "\n")
    dataset = open_dataset(tmp_path / "ds", split="val", threshold_m=10)
    assert dataset.split == "val" and dataset.num_database == 2 and dataset.threshold_m == 10
    assert [p.name for p in dataset.database_paths] == listed
    assert dataset.positives_per_query()[0].tolist() == [0, 1]
    # The split folder itself may be given as the root.
    direct = open_dataset(tmp_path / "ds" / "images" / "train")
    assert direct.name == "ds" and direct.num_queries == 1


def test_utm_layout_bad_names_error_or_skip_with_count(tmp_path: Path) -> None:
    folder = write_utm_split(tmp_path / "ds", "test", [(0, 0), (3, 0)], [(1, 0)])
    write_image(folder / "database" / "no_coordinates.jpg")
    write_image(folder / "database" / os.fsdecode(b"@1.0@2.0@\xff\xfe@.jpg"))
    with pytest.raises(DatasetError, match="no_coordinates.jpg|not valid UTF-8"):
        open_dataset(tmp_path / "ds")
    dataset = open_dataset(tmp_path / "ds", on_bad_name="skip")
    assert dataset.num_database == 2
    assert dataset.extra["skipped"] == {"bad_name": 2}
    assert skipped_summary(dataset) == "skipped 2 files: 2 bad_name"


# ---------------------------------------------------------------- MSLS
def _msls_fixture(root: Path) -> Path:
    city = root / "train_val" / "cph"
    write_msls_side(
        city / "query",
        [
            {"key": "q_official", "east": 100.0, "north": 0.0, "pano": False, "all": True},
            {"key": "q_pano", "east": 100.0, "north": 0.0, "pano": True, "all": True},
            {"key": "q_extra", "east": 300.0, "north": 0.0, "pano": False, "all": False},
            {"key": "q_far", "east": 9000.0, "north": 0.0, "pano": False, "all": True},
        ],
    )
    write_msls_side(
        city / "database",
        [
            {"key": "d_near", "east": 110.0, "north": 0.0, "pano": False, "all": True},
            {"key": "d_pano", "east": 100.0, "north": 0.0, "pano": True, "all": True},
            {"key": "d_extra", "east": 305.0, "north": 0.0, "pano": False, "all": False},
        ],
    )
    sf = root / "train_val" / "sf"
    # Same UTM numbers as the cph database image: a different city, so never a positive.
    write_msls_side(sf / "query", [{"key": "sf_q", "east": 110.0, "north": 0.0, "pano": False, "all": True}])
    write_msls_side(sf / "database", [{"key": "sf_d", "east": 130.0, "north": 0.0, "pano": False, "all": True}])
    return root


def test_msls_val_official_and_all_queries(tmp_path: Path) -> None:
    root = _msls_fixture(tmp_path / "msls")
    assert detect_layout(root) == "msls"
    official = open_dataset(root)
    assert official.split == "val-740"
    assert [p.stem for p in official.query_paths] == ["q_official", "q_far", "sf_q"]
    assert [p.stem for p in official.database_paths] == ["d_near", "sf_d"]
    assert all(p.is_file() for p in official.query_paths + official.database_paths)
    # q_far has no positive: kept, evaluation leaves it out. sf_q matches sf_d only (20 m).
    assert as_lists(official.positives_per_query()) == [[0], [], [1]]
    every = open_dataset(root, msls_queries="all")
    assert every.split == "val-all"
    assert [p.stem for p in every.query_paths] == ["q_official", "q_extra", "q_far", "sf_q"]
    assert [p.stem for p in every.database_paths] == ["d_near", "d_extra", "sf_d"]
    assert as_lists(every.positives_per_query()) == [[0], [1], [], [2]]
    assert open_dataset(root, split="val-all").num_queries == 4
    with pytest.raises(ValueError, match="contradicts"):
        open_dataset(root, split="val-740", msls_queries="all")


# ---------------------------------------------------------------- Pittsburgh .mat
@pytest.mark.parametrize("in_datasets_folder", [False, True])
def test_pitts_mat_dbstruct(tmp_path: Path, in_datasets_folder: bool) -> None:
    database = [
        ("000/000000_pitch1_yaw1.jpg", 100.0, 200.0),
        ("000/000000_pitch1_yaw2.jpg", 100.0, 200.0),
        ("001/000001_pitch1_yaw1.jpg", 160.0, 200.0),
    ]
    queries = [("000/q_0.jpg", 105.0, 200.0), ("000/q_1.jpg", 150.0, 200.0)]
    mat = write_pitts(
        tmp_path / "pitts", "pitts30k_test", database, queries, in_datasets_folder=in_datasets_folder, pos_dist_thr=12.0
    )
    assert detect_layout(tmp_path / "pitts") == "pitts"
    dataset = open_dataset(tmp_path / "pitts")
    assert (dataset.name, dataset.split, dataset.threshold_m) == ("pitts30k", "pitts30k-test", 12.0)
    assert dataset.database_paths[2] == tmp_path / "pitts" / "001" / "000001_pitch1_yaw1.jpg"
    assert dataset.query_paths[1] == tmp_path / "pitts" / "queries_real" / "000" / "q_1.jpg"
    np.testing.assert_allclose(dataset.query_coords, [[105, 200], [150, 200]])
    assert as_lists(dataset.positives_per_query()) == [[0, 1], [2]]
    assert as_lists(dataset.positives_per_query(60.0)) == [[0, 1, 2], [0, 1, 2]]
    assert open_dataset(mat, threshold_m=25).threshold_m == 25


# ---------------------------------------------------------------- ground-truth lists
def test_gt_list_npy_needs_allow_pickle_and_converts(tmp_path: Path) -> None:
    write_gt_folders(tmp_path / "gt", 3, 5)
    np.save(
        tmp_path / "gt" / "ground_truth_new.npy",
        vpr_bench_ground_truth([(0, [0, 1]), (1, [4, 2]), (2, [])]),
        allow_pickle=True,
    )
    assert detect_layout(tmp_path / "gt") == "gt_list"
    with pytest.raises(DatasetError, match="allow_pickle=True.*structvpr convert-gt"):
        open_dataset(tmp_path / "gt")
    dataset = open_dataset(tmp_path / "gt", allow_pickle=True)
    assert (dataset.num_queries, dataset.num_database, dataset.split) == (3, 5, "query->ref")
    assert as_lists(dataset.positives_per_query()) == [[0, 1], [2, 4], []]
    assert "explicit ground truth" in dataset.summary()
    # The converted .npz loads without pickles and gives the same positives.
    assert convert_ground_truth_npy(tmp_path / "gt" / "ground_truth_new.npy", tmp_path / "gt" / "gt.npz") == 3
    assert (
        structvpr_main(["convert-gt", str(tmp_path / "gt" / "ground_truth_new.npy"), str(tmp_path / "copy.npz")]) == 0
    )
    assert (
        structvpr_main(["convert-gt", str(tmp_path / "gt" / "query" / "0000000.jpg"), str(tmp_path / "bad.npz")]) == 1
    )
    (tmp_path / "gt" / "ground_truth_new.npy").unlink()
    converted = open_dataset(tmp_path / "gt")
    assert as_lists(converted.positives_per_query()) == [[0, 1], [2, 4], []]


def test_gt_list_npz_with_utm_and_name_files(tmp_path: Path) -> None:
    write_gt_folders(tmp_path / "gt", 2, 3, query_folder="queries", database_folder="database")
    (tmp_path / "gt" / "query_images.txt").write_text("0000001.jpg\n0000000.jpg\n")
    (tmp_path / "gt" / "database_images.txt").write_text("0000002.jpg\n0000000.jpg\n0000001.jpg\n")
    np.savez(
        tmp_path / "gt" / "gt.npz",
        utmQ=np.array([[0.0, 0.0], [50.0, 0.0]]),
        utmDb=np.array([[0.0, 5.0], [48.0, 0.0], [300.0, 0.0]]),
        posDistThr=np.array(10.0),
    )
    dataset = open_dataset(tmp_path / "gt")
    assert [p.name for p in dataset.query_paths] == ["0000001.jpg", "0000000.jpg"]
    assert dataset.database_paths[0].name == "0000002.jpg"
    assert dataset.threshold_m == 10.0
    assert as_lists(dataset.positives_per_query()) == [[0], [1]]


def test_gt_list_bool_matrix_npy(tmp_path: Path) -> None:
    write_gt_folders(tmp_path / "gt", 2, 3)
    np.save(tmp_path / "gt" / "gt.npy", np.array([[True, False, True], [False, False, False]]))
    assert as_lists(open_dataset(tmp_path / "gt").positives_per_query()) == [[0, 2], []]


# ---------------------------------------------------------------- frame-aligned sequences
def test_sequence_layout_frames_and_threshold(tmp_path: Path) -> None:
    for season in ("summer", "winter"):
        for frame in range(12):
            write_image(tmp_path / "seq" / season / f"images-{frame * 10:05d}.png", value=frame)
    assert detect_layout(tmp_path / "seq") == "sequence"
    dataset = open_dataset(tmp_path / "seq", frame_tolerance=2)
    assert dataset.split == "winter->summer"
    assert dataset.database_paths[0].parent.name == "summer"
    np.testing.assert_allclose(dataset.query_coords[:3], [[0, 0], [0, FRAME_SPACING_M], [0, 2 * FRAME_SPACING_M]])
    assert dataset.positives_per_query()[5].tolist() == [3, 4, 5, 6, 7]
    assert dataset.positives_per_query()[0].tolist() == [0, 1, 2]
    # 25 m is 10.5 frames: the tolerance derived from a threshold is 10 frames.
    wide = open_dataset(tmp_path / "seq", threshold_m=25.0)
    assert wide.extra["frame_tolerance"] == 10 and wide.positives_per_query()[0].tolist() == list(range(11))
    swapped = open_dataset(tmp_path / "seq", database_folder="winter", query_folder="summer", frame_tolerance=0)
    assert swapped.split == "summer->winter"
    assert swapped.positives_per_query()[7].tolist() == [7]


def test_sequence_queries_may_be_a_subset(tmp_path: Path) -> None:
    for frame in range(10):
        write_image(tmp_path / "seq" / "database" / f"{frame:03d}.png")
    for frame in (2, 7):
        write_image(tmp_path / "seq" / "queries" / f"{frame:03d}.png")
    dataset = open_dataset(tmp_path / "seq", layout="sequence", frame_tolerance=1)
    assert as_lists(dataset.positives_per_query()) == [[1, 2, 3], [6, 7, 8]]


# ---------------------------------------------------------------- plain folder
def test_plain_folder_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "photos" / f"img_{i}.jpg")
    write_image(tmp_path / "photos" / "sub" / "deeper.png")
    write_image(tmp_path / "photos" / "sub_labels" / "deeper.png")
    write_image(tmp_path / "photos" / "sub_labels_exact" / "deeper.png")  # a relabelled town's exact maps
    assert detect_layout(tmp_path / "photos") == "folder"
    dataset = open_dataset(tmp_path / "photos")
    assert dataset.num_database == 4 and dataset.num_queries == 0 and not dataset.is_labelled
    with pytest.raises(DatasetError, match="no coordinates or ground truth"):
        dataset.positives_per_query()


# ---------------------------------------------------------------- options, CLI flags, bad images
def test_dataset_from_cli_flags(tmp_path: Path) -> None:
    write_gt_folders(tmp_path / "gt", 2, 2)
    np.save(tmp_path / "gt" / "g.npy", vpr_bench_ground_truth([(0, [1]), (1, [0])]), allow_pickle=True)
    parser = argparse.ArgumentParser()
    add_dataset_arguments(parser)
    args = parser.parse_args(["--allow-pickle", "--layout", "gt_list", "--split", "custom"])
    dataset = dataset_from_args(tmp_path / "gt", args)
    assert dataset.split == "custom" and as_lists(dataset.positives_per_query()) == [[1], [0]]
    assert set(LAYOUTS) == set(LAYOUT_NAMES) == set(LAYOUT_OPTIONS)  # the flags' choices name every reader
    with pytest.raises(ValueError, match="unknown dataset option 'no_such_option'"):
        open_dataset(tmp_path / "gt", no_such_option=1)
    with pytest.raises(ValueError, match="'frame_tolerance' does not apply to layout 'gt_list'"):
        open_dataset(tmp_path / "gt", allow_pickle=True, frame_tolerance=2)
    with pytest.raises(ValueError, match="unknown layout"):
        open_dataset(tmp_path / "gt", layout="kitti")


def test_on_bad_image_skip_remaps_ground_truth(tmp_path: Path) -> None:
    write_gt_folders(tmp_path / "gt", 2, 4)
    (tmp_path / "gt" / "ref" / "0000001.jpg").write_bytes(b"")  # database image 1 is broken
    (tmp_path / "gt" / "query" / "0000000.jpg").write_bytes(b"\xff\xd8\xff")  # query 0 is broken
    np.save(tmp_path / "gt" / "g.npy", vpr_bench_ground_truth([(0, [0]), (1, [1, 2, 3])]), allow_pickle=True)
    dataset = open_dataset(tmp_path / "gt", allow_pickle=True, on_bad_image="skip")
    assert (dataset.num_queries, dataset.num_database) == (1, 3)
    # Query 1 keeps its positives 2 and 3, now at positions 1 and 2.
    assert as_lists(dataset.positives_per_query()) == [[1, 2]]
    assert dataset.extra["skipped"] == {"bad_image": 2}
    again = drop_bad_images(dataset)
    assert again.extra["skipped"] == {"bad_image": 2}


# ---------------------------------------------------------------- real data in tests/fixtures
def test_real_corridor(fixtures_dir: Path) -> None:
    dataset = open_dataset(fixtures_dir / "corridor", allow_pickle=True)
    assert (dataset.num_queries, dataset.num_database) == (111, 111)
    positives = dataset.positives_per_query()
    assert positives[0].tolist() == [0, 1, 2]
    assert positives[50].tolist() == [48, 49, 50, 51, 52]
    assert all(q in row for q, row in enumerate(positives))
    assert dataset.query_paths[50].name == "0000050.jpg" and dataset.database_paths[0].parent.name == "ref"


def test_real_nordland(fixtures_dir: Path) -> None:
    root = fixtures_dir / "nordland_64x32"
    assert detect_layout(root) == "sequence"
    dataset = open_dataset(root, frame_tolerance=2)
    assert (dataset.num_queries, dataset.num_database, dataset.split) == (100, 100, "winter->summer")
    positives = dataset.positives_per_query()
    assert positives[0].tolist() == [0, 1, 2]
    assert positives[50].tolist() == [48, 49, 50, 51, 52]
    assert positives[99].tolist() == [97, 98, 99]
    assert dataset.query_paths[50].name == dataset.database_paths[50].name == "images-00510.png"
    assert dataset.query_paths[50].parent.name == "winter" and dataset.database_paths[50].parent.name == "summer"
