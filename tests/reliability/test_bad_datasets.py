"""Malformed datasets on disk: each gives one DatasetError that names the file and the problem."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from structvpr.data.layouts import open_dataset
from structvpr.data.place_dataset import DatasetError


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


def utm_split(root: Path, database: int = 2, queries: int = 1) -> Path:
    folder = root / "images" / "test"
    for i in range(database):
        image(folder / "database" / f"@{i}.0@0.0@17@T@@@@@@@@@d{i}@.jpg")
    for i in range(queries):
        image(folder / "queries" / f"@{i}.5@0.0@17@T@@@@@@@@@q{i}@.jpg")
    (folder / "queries").mkdir(parents=True, exist_ok=True)
    return folder


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: dataset folder does not exist"):
        open_dataset(tmp_path / "nowhere")


def test_utm_empty_split_names_the_folder(tmp_path: Path) -> None:
    folder = utm_split(tmp_path / "ds", queries=0)
    with pytest.raises(DatasetError, match=rf"{folder / 'queries'}: no query images \(empty split\)"):
        open_dataset(tmp_path / "ds", layout="utm")


def test_utm_missing_split(tmp_path: Path) -> None:
    utm_split(tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"images/val: split 'val' does not exist \(available: \['test'\]\)"):
        open_dataset(tmp_path / "ds", split="val")


@pytest.mark.parametrize(
    "line, problem",
    [
        ("../../../../etc/passwd@1@2@.jpg", "points outside the dataset root"),
        ("/etc/@1@2@.jpg", "points outside the dataset root"),
        ("DUPLICATE", "duplicate image path"),
        ("@9@9@missing@.jpg", "listed image\\(s\\) not found"),
    ],
)
def test_utm_images_paths_txt_problems(tmp_path: Path, line: str, problem: str) -> None:
    folder = utm_split(tmp_path / "ds")
    first = sorted(p.name for p in (folder / "database").iterdir())[0]
    listing = folder / "database_images_paths.txt"
    listing.write_text(f"{first}\n{first if line == 'DUPLICATE' else line}\n")
    with pytest.raises(DatasetError, match=rf"database_images_paths.txt: .*{problem}"):
        open_dataset(tmp_path / "ds")


def test_mat_without_dbstruct(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "pitts30k_test.mat", {"something": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat: no dbStruct struct \(variables: \['something'\]\)"):
        open_dataset(tmp_path)


def test_mat_with_missing_fields_and_wrong_counts(tmp_path: Path) -> None:
    scipy.io.savemat(
        tmp_path / "a.mat", {"dbStruct": {"whichSet": "test", "dbImage": np.array(["x.jpg"], dtype=object)}}
    )
    with pytest.raises(DatasetError, match=r"a.mat: dbStruct lacks field\(s\) \['utmDb', 'qImage', 'utmQ'\]"):
        open_dataset(tmp_path / "a.mat")
    image(tmp_path / "b" / "000" / "d.jpg")
    image(tmp_path / "b" / "queries_real" / "q.jpg")
    scipy.io.savemat(
        tmp_path / "b" / "pitts30k_val.mat",
        {
            "dbStruct": {
                "whichSet": "val",
                "dbImage": np.array(["000/d.jpg"], dtype=object),
                "utmDb": np.zeros((2, 1)),
                "qImage": np.array(["q.jpg"], dtype=object),
                "utmQ": np.zeros((2, 1)),
                "numDb": 5,
                "numQ": 1,
            }
        },
    )
    with pytest.raises(DatasetError, match=r"pitts30k_val.mat: dbStruct.numDb = 5 but 1 images listed"):
        open_dataset(tmp_path / "b")


def test_mat_image_path_escaping_root(tmp_path: Path) -> None:
    image(tmp_path / "p" / "queries_real" / "q.jpg")
    image(tmp_path / "p" / "000" / "d.jpg")
    scipy.io.savemat(
        tmp_path / "p" / "pitts30k_test.mat",
        {
            "dbStruct": {
                "dbImage": np.array(["000/d.jpg", "../../secret.jpg"], dtype=object),
                "utmDb": np.zeros((2, 2)),
                "qImage": np.array(["q.jpg"], dtype=object),
                "utmQ": np.zeros((2, 1)),
            }
        },
    )
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat: image path '../../secret.jpg' points outside"):
        open_dataset(tmp_path / "p")


def _msls_city(root: Path, post_header: list[str], key: str = "k1") -> Path:
    side = root / "train_val" / "cph" / "query"
    image(side / "images" / "k1.jpg")
    for name, header, row in (
        ("raw.csv", ["key", "pano"], [key, "False"]),
        ("postprocessed.csv", post_header, [key, "1.0", "2.0"][: len(post_header)]),
        ("subtask_index.csv", ["key", "all"], [key, "True"]),
    ):
        with open(side / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["", *header])
            writer.writerow([0, *row])
    database = root / "train_val" / "cph" / "database"
    database.mkdir(parents=True)
    return side


def test_msls_csv_with_wrong_fields(tmp_path: Path) -> None:
    side = _msls_city(tmp_path, ["key", "utm_x", "utm_y"])
    expected = rf"{side / 'postprocessed.csv'}: missing column\(s\) \['easting', 'northing'\]"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(tmp_path, cities=["cph"])


def test_msls_key_escaping_root(tmp_path: Path) -> None:
    _msls_city(tmp_path, ["key", "easting", "northing"], key="../../../../../x")
    with pytest.raises(DatasetError, match=r"csv: image path .* points outside the dataset root"):
        open_dataset(tmp_path, cities=["cph"])


def test_msls_missing_city(tmp_path: Path) -> None:
    (tmp_path / "train_val" / "cph" / "query").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"train_val/sf: MSLS city 'sf' folder does not exist"):
        open_dataset(tmp_path)


def gt_folders(root: Path, queries: int = 2, database: int = 2) -> None:
    for i in range(queries):
        image(root / "query" / f"{i:07d}.jpg")
    for i in range(database):
        image(root / "ref" / f"{i:07d}.jpg")


def test_npz_with_wrong_fields(tmp_path: Path) -> None:
    gt_folders(tmp_path)
    np.savez(tmp_path / "gt.npz", utm_queries=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match=r"gt.npz: expected arrays utmQ \+ utmDb .* found \['utm_queries'\]"):
        open_dataset(tmp_path)


def test_npz_row_count_mismatch(tmp_path: Path) -> None:
    gt_folders(tmp_path)
    np.savez(tmp_path / "gt.npz", utmQ=np.zeros((3, 2)), utmDb=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match=r"gt.npz: .*2 queries but 3 query coordinates"):
        open_dataset(tmp_path)


def test_npz_image_names_escaping_root(tmp_path: Path) -> None:
    gt_folders(tmp_path)
    np.savez(
        tmp_path / "gt.npz",
        utmQ=np.zeros((2, 2)),
        utmDb=np.zeros((2, 2)),
        qImage=np.array(["0000000.jpg", "../../../etc/hosts"]),
    )
    with pytest.raises(DatasetError, match=r"gt.npz: image path '../../../etc/hosts' points outside"):
        open_dataset(tmp_path)


def test_ground_truth_index_out_of_range(tmp_path: Path) -> None:
    gt_folders(tmp_path)
    rows = np.empty((2, 2), dtype=object)
    rows[0, 0], rows[0, 1], rows[1, 0], rows[1, 1] = 0, [0], 1, [7]
    np.save(tmp_path / "gt.npy", rows, allow_pickle=True)
    with pytest.raises(DatasetError, match=r"gt.npy: query 1 lists database index 7, but there are 2"):
        open_dataset(tmp_path, allow_pickle=True)


def test_ground_truth_file_that_is_not_numpy(tmp_path: Path) -> None:
    gt_folders(tmp_path)
    (tmp_path / "gt.npy").write_text("not numpy")
    with pytest.raises(DatasetError, match=r"gt.npy: not a NumPy .npy file"):
        open_dataset(tmp_path)


def test_sequence_with_unmatched_query_name(tmp_path: Path) -> None:
    image(tmp_path / "database" / "a.png")
    image(tmp_path / "queries" / "b.png")
    with pytest.raises(DatasetError, match=r"queries/b.png: no database frame with this file name"):
        open_dataset(tmp_path, layout="sequence")


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=rf"{tmp_path}: no database images \(empty split\)"):
        open_dataset(tmp_path)


def test_bad_policy_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_bad_image must be one of"):
        open_dataset(tmp_path, on_bad_image="ignore")


def test_skipping_every_query_image_is_an_error(tmp_path: Path) -> None:
    gt_folders(tmp_path, queries=1, database=2)
    (tmp_path / "query" / "0000000.jpg").write_bytes(b"GIF89a broken")
    np.save(tmp_path / "gt.npy", np.array([[True, False]]))
    with pytest.raises(DatasetError, match=r"no readable database or query images left .*0000000.jpg"):
        open_dataset(tmp_path, on_bad_image="skip")
