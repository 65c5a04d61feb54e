"""Patch-NetVLAD's image lists and ground-truth files read where and as that repository ships them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from layout_writers import write_image

from structvpr.cli import main as structvpr_main
from structvpr.data.layouts import detect_layout, open_dataset
from structvpr.data.place_dataset import DatasetError


def write_pnv_tree(
    root: Path, name: str, gt_stem: str | None, database: list[str], queries: list[str], threshold: float = 25.0
) -> None:
    """`dataset_imagenames/<name>_imageNames_{index,query}.txt` ('./'-prefixed paths relative to root)
    and `dataset_gt_files/<gt_stem>.npz` (utmQ, utmDb, posDistThr); image i of each side lies at
    (0, 100 i), so query i's only positive is database image i."""
    lists = root / "dataset_imagenames"
    lists.mkdir(parents=True)
    for kind, paths in (("index", database), ("query", queries)):
        (lists / f"{name}_imageNames_{kind}.txt").write_text("".join(f"./{p}\n" for p in paths))
        for i, path in enumerate(paths):
            write_image(root / path, value=40 * i)
    if gt_stem is not None:
        (root / "dataset_gt_files").mkdir()
        coords = lambda n: np.stack([np.zeros(n), 100.0 * np.arange(n)], axis=1)
        np.savez(
            root / "dataset_gt_files" / f"{gt_stem}.npz",
            utmQ=coords(len(queries)),
            utmDb=coords(len(database)),
            posDistThr=np.array(threshold),
        )


PITTS_DATABASE = [f"Pittsburgh250k/000/000829_pitch1_yaw{i}.jpg" for i in range(1, 5)]
PITTS_QUERIES = [f"queries_real/000/00000{i}_pitch1_yaw1.jpg" for i in range(3)]


def test_pitts30k_lists_under_their_shipped_names_are_detected(tmp_path: Path) -> None:
    write_pnv_tree(tmp_path / "pnv", "pitts30k", "pitts30k_test", PITTS_DATABASE, PITTS_QUERIES)
    assert detect_layout(tmp_path / "pnv") == "gt_list"
    dataset = open_dataset(tmp_path / "pnv")
    assert (dataset.name, dataset.split, dataset.num_queries, dataset.num_database) == (
        "pitts30k",
        "pitts30k_test",
        3,
        4,
    )
    assert dataset.database_paths[2] == tmp_path / "pnv" / PITTS_DATABASE[2]
    assert [row.tolist() for row in dataset.positives_per_query()] == [[0], [1], [2]]
    assert dataset.summary() == "pitts30k pitts30k_test: 3 queries, 4 database, threshold 25 m"


def test_lists_beside_a_ground_truth_file_outside_the_image_root(tmp_path: Path) -> None:
    """As Patch-NetVLAD is used: its repository holds the lists, the images live elsewhere."""
    write_pnv_tree(tmp_path / "repo", "tokyo247", "tokyo247", ["database/a.png", "database/b.png"], ["query/q.jpg"])
    images = tmp_path / "tokyo"
    images.mkdir()
    for side in ("database", "query"):
        (tmp_path / "repo" / side).rename(images / side)
    dataset = open_dataset(images, layout="gt_list", ground_truth=str(tmp_path / "repo/dataset_gt_files/tokyo247.npz"))
    assert (dataset.name, dataset.num_queries, dataset.num_database) == ("tokyo247", 1, 2)
    assert dataset.query_paths == [images / "query" / "q.jpg"]


def test_nordland_threshold_is_in_frames_and_msls_needs_a_ground_truth(tmp_path: Path) -> None:
    frames = [f"summer/{i:05d}.png" for i in range(3)]
    write_pnv_tree(tmp_path / "nl", "nordland", "nordland", frames, [f.replace("summer", "winter") for f in frames], 10)
    dataset = open_dataset(tmp_path / "nl", layout="gt_list", pnv_name="nordland")
    assert dataset.summary() == "nordland nordland: 3 queries, 3 database, threshold +/- 10 frames"
    msls = tmp_path / "msls"
    write_pnv_tree(msls, "mapillarycph", None, ["cph/database/images/k1.jpg"], ["cph/query/images/k2.jpg"])
    with pytest.raises(DatasetError, match="mapillarycph.npz: .*ships none for the MSLS cities"):
        open_dataset(msls, layout="gt_list", pnv_name="mapillarycph")
    np.savez(msls / "cph_gt.npz", utmQ=np.zeros((1, 2)), utmDb=np.ones((1, 2)), posDistThr=np.array(25.0))
    dataset = open_dataset(msls, layout="gt_list", pnv_name="mapillarycph", ground_truth=str(msls / "cph_gt.npz"))
    assert (dataset.name, dataset.split) == ("mapillarycph", "cph_gt")
    assert [row.tolist() for row in dataset.positives_per_query()] == [[0]]
    with pytest.raises(DatasetError, match="unknown Patch-NetVLAD dataset name 'pitts250k'"):
        open_dataset(msls, layout="gt_list", pnv_name="pitts250k")


def test_a_list_that_names_a_missing_image_is_refused(tmp_path: Path) -> None:
    write_pnv_tree(tmp_path / "pnv", "pitts30k", "pitts30k_test", PITTS_DATABASE, PITTS_QUERIES)
    (tmp_path / "pnv" / PITTS_QUERIES[1]).unlink()
    with pytest.raises(DatasetError, match=r"pitts30k_imageNames_query.txt: 1 listed image\(s\) not found"):
        open_dataset(tmp_path / "pnv")


def test_cli_evaluate_reads_the_shipped_tree_with_paths_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, one_torch_thread: None
) -> None:
    write_pnv_tree(tmp_path / "data" / "pnv", "pitts30k", "pitts30k_test", PITTS_DATABASE, PITTS_QUERIES)
    monkeypatch.chdir(tmp_path)
    # Before: "--ground-truth data/pnv/..." was joined to the dataset root (data/pnv/data/pnv/...).
    gt = "data/pnv/dataset_gt_files/pitts30k_test.npz"
    args = ["--model", "imagenet-efficientnet_lite0-gem", "--image-size", "32", "32", "--recall-values", "1"]
    code = structvpr_main(["evaluate", "data/pnv", "--layout", "gt_list", "--ground-truth", gt, *args, "--out", "res"])
    assert code == 0
    assert "pitts30k pitts30k_test: 3 queries, 4 database, threshold 25 m | R@1: 100.0" in capsys.readouterr().out
    result = json.loads((tmp_path / "res" / "pitts30k_pitts30k_test.json").read_text())
    assert result["image_size"] == [32, 32] and result["num_queries"] == 3
