"""Place labels from coordinates or metadata.csv, items with images and label maps."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_writers import write_image, write_utm_split
from PIL import Image
from scipy.spatial.distance import pdist

from structvpr.data.label_maps import LabelMapError, label_path_for
from structvpr.data.layouts import open_dataset
from structvpr.data.place_dataset import DatasetError
from structvpr.data.training_set import (
    PlaceTrainingSet,
    place_centres,
    places_from_coordinates,
)


def test_grid_places_hold_only_true_positives() -> None:
    coords = np.random.default_rng(0).uniform(0, 200, size=(3000, 2))
    places = places_from_coordinates(coords, radius_m=10.0)
    assert places.min() == 0 and len(np.unique(places)) == places.max() + 1
    for label in np.unique(places):
        members = coords[places == label]
        if len(members) > 1:
            assert pdist(members).max() <= 10.0 + 1e-9
    # Images a few centimetres apart share a place unless a cell border separates them.
    assert places_from_coordinates(np.array([[1.0, 1.0], [1.05, 1.0], [50.0, 1.0]])).tolist() == [0, 0, 1]
    centres = place_centres(coords, places)
    assert centres.shape == (places.max() + 1, 2)
    np.testing.assert_allclose(centres[places[0]], coords[places == places[0]].mean(axis=0))


def test_training_set_from_utm_dataset_items(tmp_path: Path) -> None:
    write_utm_split(
        tmp_path / "ds",
        "train",
        database_east_north=[(0.5, 0.5), (2.0, 1.0), (100.5, 0.5)],
        query_east_north=[(1.0, 2.0), (100.0, 1.0)],
    )
    dataset = open_dataset(tmp_path / "ds", split="train")
    training = PlaceTrainingSet.from_place_dataset(dataset, image_size=(12, 16))
    assert len(training) == 5 and training.num_places == 2
    places_by_east = {
        float(e): p
        for e, p in zip(
            np.concatenate([dataset.database_coords, dataset.query_coords])[:, 0], training.places, strict=True
        )
    }
    assert places_by_east[0.5] == places_by_east[2.0] == places_by_east[1.0]
    assert places_by_east[100.5] == places_by_east[100.0] != places_by_east[0.5]
    item = training[3]
    assert set(item) == {"image", "place", "index"}
    assert item["image"].dtype == torch.float32 and tuple(item["image"].shape) == (3, 12, 16)
    assert item["index"] == 3 and item["place"] == int(training.places[3])
    assert training.centres.shape == (2, 2)
    database_only = PlaceTrainingSet.from_place_dataset(dataset, include_queries=False, image_size=(12, 16))
    assert len(database_only) == 3


def _metadata(root: Path, rows: list[tuple[str, str, float, float]]) -> None:
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "place_id", "condition", "east", "north", "heading"])
        for path, place, east, north in rows:
            writer.writerow([path, place, "day", east, north, 90.0])


def test_places_from_metadata_csv_win_over_coordinates(tmp_path: Path) -> None:
    root = tmp_path / "town"
    for name in ("a.png", "b.png", "c.png"):
        write_image(root / "database" / name)
    write_image(root / "queries" / "q.png")
    _metadata(
        root,
        [
            ("database/a.png", "p7", 0, 0),
            ("database/b.png", "p7", 0, 40),
            ("database/c.png", "p9", 80, 0),
            ("queries/q.png", "p9", 80, 1),
        ],
    )
    dataset = open_dataset(root, layout="folder")
    training = PlaceTrainingSet.from_place_dataset(dataset, image_size=(8, 8))
    assert [p.name for p in training.paths] == ["a.png", "b.png", "c.png", "q.png"]
    assert training.places.tolist() == [0, 0, 1, 1]  # 40 m apart but one place_id: metadata wins
    np.testing.assert_allclose(training.centres, [[0, 20], [80, 0.5]])
    _metadata(root, [("database/a.png", "p7", 0, 0)])
    with pytest.raises(DatasetError, match=r"metadata.csv: no place_id for image .*b.png"):
        PlaceTrainingSet.from_place_dataset(dataset)


def test_label_maps_resized_nearest(tmp_path: Path) -> None:
    image_path = write_image(tmp_path / "database" / "x.jpg", size=(8, 4))
    labels = np.array([[0, 0, 13, 13, 13, 13, 255, 255]] * 4, dtype=np.uint8)
    label_path = label_path_for(image_path)
    label_path.parent.mkdir()
    Image.fromarray(labels).save(label_path)
    training = PlaceTrainingSet([image_path], [0], image_size=(2, 4), with_labels=True)
    label_map = training[0]["label_map"]
    assert label_map.dtype == torch.uint8 and tuple(label_map.shape) == (2, 4)
    assert set(label_map.unique().tolist()) <= {0, 13, 255}  # nearest: no blended class ids
    assert label_map[0].tolist() == [0, 13, 13, 255]


def test_missing_label_map_names_both_paths(tmp_path: Path) -> None:
    image_path = write_image(tmp_path / "queries" / "y.jpg")
    training = PlaceTrainingSet([image_path], [0], image_size=(4, 4), with_labels=True)
    with pytest.raises(
        LabelMapError, match=r"queries_labels/y.png: label map does not exist \(label map of .*queries/y.jpg\)"
    ):
        training[0]
    label_path_for(image_path).parent.mkdir()
    Image.new("RGB", (4, 4)).save(label_path_for(image_path))
    with pytest.raises(LabelMapError, match=r"got mode RGB \(label map of .*queries/y.jpg\)"):
        training[0]
    # The one reader checks ids for training too: 19..254 are not Cityscapes trainIds.
    Image.fromarray(np.full((4, 4), 40, np.uint8)).save(label_path_for(image_path))
    with pytest.raises(LabelMapError, match=r"holds ids \[40\] that are not Cityscapes trainIds"):
        training[0]


def test_bad_image_policy_in_training_set(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xffjunk")
    with pytest.raises(ValueError, match="bad.jpg: cannot decode"):
        PlaceTrainingSet([good, tmp_path / "bad.jpg"], [0, 1], image_size=(4, 4))[1]
    training = PlaceTrainingSet([good, tmp_path / "bad.jpg"], [0, 1], image_size=(4, 4), on_bad_image="skip")
    assert len(training) == 1 and training.skipped_bad_images == [str(tmp_path / "bad.jpg")]


def test_synthetic_town_trains_with_its_places_and_label_maps(tmp_path: Path) -> None:
    from structvpr.data.synth.writer import generate_town

    generate_town(tmp_path / "town", places=6, image_size=(32, 48), progress=False)
    dataset = open_dataset(tmp_path / "town", split="train")
    assert dataset.extra["layout"] == "utm"
    training = PlaceTrainingSet.from_place_dataset(dataset, image_size=(32, 48), with_labels=True)
    with open(tmp_path / "town" / "metadata.csv", newline="") as handle:
        place_of = {row["path"]: row["place_id"] for row in csv.DictReader(handle)}
    # Same metadata place_id <=> same training label.
    ids = [place_of[p.relative_to(tmp_path / "town").as_posix()] for p in training.paths]
    for i in range(len(ids)):
        for j in range(len(ids)):
            assert (ids[i] == ids[j]) == (training.places[i] == training.places[j])
    item = training[0]
    assert item["label_map"].shape == (32, 48) and item["label_map"].dtype == torch.uint8
