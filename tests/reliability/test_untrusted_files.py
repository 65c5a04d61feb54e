"""Untrusted files: no loader that takes a user's file ever runs code from it.

Every hostile file holds a pickled object whose `__reduce__` calls `open(marker, "w")`: unpickling
it creates the marker file. Each loader must refuse the file with an error, and the marker must
never appear. `test_the_payload_really_runs_code_when_unpickled` proves the payload is live (so a
refusal is a refusal, not a dud). Paths read from metadata files must stay inside the dataset root.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import write_tiny_config

from structvpr.io_utils import sha256_of_file


class CreatesMarker:
    """Unpickling this object creates the file `marker` (a stand-in for any code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_torch_file(path: Path, content: dict) -> Path:
    """torch.save (zip format) of `content`, as any downloaded checkpoint would be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def hostile_npy(path: Path, marker: Path) -> Path:
    """A .npy object array whose element runs code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array([CreatesMarker(marker)], dtype=object), allow_pickle=True)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "CODE_RAN.marker"
    yield path
    assert not path.exists(), "a loader executed code from an untrusted file"


def test_the_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "proof.marker"
    evil = hostile_torch_file(tmp_path / "evil.pt", {"state_dict": CreatesMarker(marker)})
    torch.load(evil, weights_only=False)  # what a careless loader would do
    assert marker.exists()
    marker.unlink()
    np.load(hostile_npy(tmp_path / "evil.npy", marker), allow_pickle=True)
    assert marker.exists()


# ---------------------------------------------------------------- model and checkpoint loaders
def _model_content(marker: Path) -> dict:
    return {
        "format": "structvpr-model",
        "format_version": 1,
        "model_config": CreatesMarker(marker),
        "state_dict": {},
        "descriptor_dim": 32,
        "preprocessing": {},
    }


def _seg_branch_content(marker: Path) -> dict:
    from structvpr.model.branches import SEG_BRANCH_FORMAT

    return {
        "format": SEG_BRANCH_FORMAT,
        "model_config": {},
        "label_config": {},
        "label_weight": 1.0,
        "state_dict": CreatesMarker(marker),
        "metadata": {},
    }


def _checkpoint_content(marker: Path) -> dict:
    return {
        "epoch": 0,
        "global_step": 3,
        "state_dict": {"network.w": torch.zeros(2)},
        "hyper_parameters": {"config": CreatesMarker(marker)},
        "optimizer_states": [],
    }


def _load_api(path: Path) -> None:
    import structvpr

    structvpr.load(path)


def _load_model_file(path: Path) -> None:
    from structvpr.model.model_file import load_model_file

    load_model_file(path)


def _load_seg_branch(path: Path) -> None:
    from structvpr.model.branches import load_seg_branch

    load_seg_branch(path)


def _load_teacher(path: Path) -> None:
    from structvpr.train.partition import load_teacher

    load_teacher(path)


def _load_lightning_checkpoint(path: Path) -> None:
    from structvpr.train.stage1 import AtomicCheckpointIO

    AtomicCheckpointIO().load_checkpoint(path)


def _load_stage2_checkpoint(path: Path) -> None:
    from structvpr.train.stage2 import load_stage2_module

    load_stage2_module(path)


def _load_espnetv2_weights(path: Path) -> None:
    from structvpr.segment.espnetv2 import load_espnetv2

    load_espnetv2(width=0.5, weights=path)


# torch's own refusal, or structvpr's one-line wrapper of it.
REFUSED = r"refused to load|Unsupported global|Weights only load failed"

LOADERS: dict[str, tuple[Callable[[Path], None], Callable[[Path], dict], str]] = {
    # name: (loader, hostile content, the error message must match this)
    "structvpr.load": (_load_api, _model_content, r"evil\.pt: refused to load"),
    "load_model_file": (_load_model_file, _model_content, r"evil\.pt: refused to load"),
    "load_seg_branch": (_load_seg_branch, _seg_branch_content, r"evil\.pt: cannot read seg-branch"),
    "partition load_teacher": (_load_teacher, _seg_branch_content, REFUSED),
    "Stage I checkpoint IO": (_load_lightning_checkpoint, _checkpoint_content, REFUSED),
    "Stage II checkpoint": (_load_stage2_checkpoint, _checkpoint_content, REFUSED),
    "ESPNetv2 --weights": (
        _load_espnetv2_weights,
        lambda marker: {"conv.weight": CreatesMarker(marker)},
        r"evil\.pt: cannot read ESPNetv2 weights",
    ),
}


@pytest.mark.parametrize("name", list(LOADERS))
def test_every_torch_loader_refuses_a_pickle_that_runs_code(name: str, tmp_path: Path, marker: Path) -> None:
    loader, content, message = LOADERS[name]
    evil = hostile_torch_file(tmp_path / "evil.pt", content(marker))
    with pytest.raises(Exception, match=message):
        loader(evil)


def test_a_raw_pickle_posing_as_a_model_file_is_refused(tmp_path: Path, marker: Path) -> None:
    from structvpr.model.model_file import ModelFileError, load_model_file

    evil = tmp_path / "model.pt"  # an old-style (non-zip) pickle, as torch < 1.6 wrote
    evil.write_bytes(pickle.dumps(_model_content(marker), protocol=2))
    with pytest.raises(ModelFileError, match=r"model.pt: refused to load"):
        load_model_file(evil)


def test_stage1_resume_refuses_a_hostile_last_checkpoint_in_one_line(
    town: Path, tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture
) -> None:
    """`structvpr train --resume` on a run folder whose last.ckpt was replaced by a hostile file:
    exit 1 with one line naming the file (no traceback), and no code run."""
    from structvpr.cli import main

    config = write_tiny_config(tmp_path / "config.yaml", town, tmp_path / "runs", epochs=1)
    last = hostile_torch_file(
        tmp_path / "runs" / "stage1-rgb" / "checkpoints" / "last.ckpt", _checkpoint_content(marker)
    )
    assert main(["train", "--config", str(config), "--resume"]) == 1
    message = capsys.readouterr().err
    assert f"structvpr train: error: {last}: refused to load" in message and "Traceback" not in message


def test_hf_segmenter_folder_with_a_hostile_pytorch_model_bin_is_refused(tmp_path: Path, marker: Path) -> None:
    """A transformers model folder downloaded from anywhere: config.json + a pickled pytorch_model.bin."""
    transformers = pytest.importorskip("transformers")
    from structvpr.segment.segmenters import build_segmenter

    folder = tmp_path / "segformer"
    config = transformers.SegformerConfig(
        num_channels=3,
        num_encoder_blocks=1,
        depths=[1],
        sr_ratios=[1],
        hidden_sizes=[8],
        patch_sizes=[3],
        strides=[2],
        num_attention_heads=[1],
        mlp_ratios=[1],
        decoder_hidden_size=8,
        num_labels=2,
    )
    config.save_pretrained(folder)
    hostile_torch_file(folder / "pytorch_model.bin", {"decode_head.classifier.weight": CreatesMarker(marker)})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        build_segmenter("hf", model=str(folder), local_files_only=True)


# ---------------------------------------------------------------- NumPy loaders (.npy / .npz)
def _index_folder(folder: Path) -> Path:
    from structvpr.index import PlaceIndex

    vectors = np.eye(4, 8, dtype=np.float32)
    PlaceIndex.build(vectors, kind="flat", metadata={"paths": np.array(list("abcd"))}).save(folder)
    return folder


def test_place_index_with_a_hostile_metadata_array_is_refused(tmp_path: Path, marker: Path) -> None:
    from structvpr.index import PlaceIndex
    from structvpr.index.place_index import IndexFileError

    folder = _index_folder(tmp_path / "index")
    for name in ("meta_paths.npy", "ids.npy"):
        original = (folder / name).read_bytes()
        hostile_npy(folder / name, marker)
        with pytest.raises(IndexFileError, match=r"index: damaged index folder .*allow_pickle"):
            PlaceIndex.load(folder)
        (folder / name).write_bytes(original)
    assert len(PlaceIndex.load(folder)) == 4


def test_partition_file_with_a_hostile_array_is_refused(tmp_path: Path, marker: Path) -> None:
    from structvpr.train.partition import PartitionFileError, load_partition

    hostile = np.array([CreatesMarker(marker)], dtype=object)
    np.savez(
        tmp_path / "partition.npz",
        sample_paths=hostile,
        teacher_rank=np.ones(1),
        student_rank=np.ones(1),
        groups=np.ones(1),
        weights=np.ones(1),
        metadata=np.asarray(json.dumps({"format": "x"})),
    )
    with pytest.raises(PartitionFileError, match=r"partition.npz: not a structvpr partition file"):
        load_partition(tmp_path / "partition.npz")


def test_teacher_cache_with_a_hostile_array_is_refused(tmp_path: Path, marker: Path) -> None:
    from structvpr.train.partition import (
        PartitionFileError,
        load_teacher_cache,
        save_teacher_cache,
    )

    cache = tmp_path / "teacher_cache"
    save_teacher_cache(cache, ["a.jpg"], np.ones((1, 4)), None, None, np.ones(1), {})
    hostile_npy(cache / "global_descriptors.npy", marker)
    with pytest.raises(PartitionFileError, match=r"teacher_cache: unreadable teacher cache .*Python objects"):
        load_teacher_cache(cache)


def _index_build_with_planted_chunk(tmp_path: Path, marker: Path) -> list[str]:
    """A finished build kept its .partial work folder; chunk 0 is then replaced by a hostile array.
    Returns the build arguments (running them again resumes from the work folder)."""
    from structvpr.cli import main
    from structvpr.model import ModelConfig, build_model
    from structvpr.model.model_file import save_model_file

    folder = tmp_path / "map"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"{i}.jpg")
    save_model_file(
        build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(32, 32), descriptor_dim=8)),
        tmp_path / "model.pt",
        {},
    )
    arguments = [
        "index",
        "build",
        str(folder),
        "--model",
        str(tmp_path / "model.pt"),
        "--out",
        str(tmp_path / "index"),
        "--chunk-size",
        "2",
        "--quiet",
        "--keep-descriptors",
    ]
    assert main(arguments) == 0
    # The planted chunk claims the right model, so the resume reaches its image keys.
    chunk = tmp_path / "index.partial" / "chunk_000000.npz"
    np.savez(
        chunk,
        model_sha256=np.array(sha256_of_file(tmp_path / "model.pt")),
        keys=np.array([CreatesMarker(marker)], dtype=object),
        descriptors=np.zeros((1, 8), np.float32),
    )
    return arguments


def test_index_build_resume_refuses_a_hostile_descriptor_chunk(
    tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture
) -> None:
    """The .partial work folder can be copied between machines: a planted chunk must not run code."""
    from structvpr.cli import main

    arguments = _index_build_with_planted_chunk(tmp_path, marker)
    capsys.readouterr()
    assert main(arguments) == 1
    assert "Python objects" in capsys.readouterr().err


def test_index_build_names_the_refused_chunk_file(tmp_path: Path, marker: Path, capsys: pytest.CaptureFixture) -> None:
    from structvpr.cli import main

    arguments = _index_build_with_planted_chunk(tmp_path, marker)
    capsys.readouterr()
    assert main(arguments) == 1
    assert "chunk_000000.npz" in capsys.readouterr().err


def test_ground_truth_object_array_needs_the_explicit_allow_pickle_option(tmp_path: Path, marker: Path) -> None:
    from structvpr.data.layouts import open_dataset
    from structvpr.data.place_dataset import DatasetError

    for folder in ("query", "ref"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "0000000.jpg")
    hostile_npy(tmp_path / "ground_truth.npy", marker)
    with pytest.raises(DatasetError, match=r"ground_truth.npy: .*allow_pickle=True \(--allow-pickle\)"):
        open_dataset(tmp_path)
    # The refusal comes from NumPy's own guard, before any object is rebuilt.
    with pytest.raises(ValueError, match="allow_pickle=False"):
        np.load(tmp_path / "ground_truth.npy")


# ---------------------------------------------------------------- paths in metadata files
def _utm_split(root: Path) -> Path:
    folder = root / "images" / "test"
    for role, east in (("database", 0.0), ("queries", 1.0)):
        (folder / role).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / role / f"@{east}@0.0@17@T@@@@@@@@@x@.jpg")
    return folder


@pytest.mark.parametrize(
    "line",
    [
        "database/" + "../" * 12 + "secret.jpg",  # normalises to a path outside the root
        "..\\" * 12 + "secret.jpg",  # Windows separators
        "./" + "../" * 12 + "secret.jpg",
        "/tmp/secret.jpg",  # absolute
    ],
)
def test_images_paths_txt_entries_that_leave_the_root_are_refused(tmp_path: Path, line: str) -> None:
    from structvpr.data.layouts import open_dataset
    from structvpr.data.place_dataset import DatasetError

    folder = _utm_split(tmp_path / "ds")
    (folder / "database_images_paths.txt").write_text(f"{line}\n")
    with pytest.raises(DatasetError, match=r"database_images_paths.txt: image path .* points outside the dataset root"):
        open_dataset(tmp_path / "ds")


def test_training_set_never_reads_a_metadata_csv_row_outside_the_root(town: Path, tmp_path: Path) -> None:
    """metadata.csv only labels images found under the root; a row naming a file outside is never read."""
    from structvpr.data.layouts import open_dataset
    from structvpr.data.training_set import PlaceTrainingSet

    root = tmp_path / "town"
    shutil.copytree(town, root)
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (48, 32), (255, 0, 0)).save(outside)
    with open(root / "metadata.csv", "a", encoding="utf-8") as handle:
        handle.write("../secret.jpg,../secret.png,train,database,999,day,0,0,0.0,0.0,0.0,1.9\n")
    training = PlaceTrainingSet.from_place_dataset(open_dataset(root, split="train"))
    resolved_root = root.resolve()
    assert all(Path(path).resolve().is_relative_to(resolved_root) for path in training.paths)
    assert outside.resolve() not in {Path(path).resolve() for path in training.paths}


def test_scipy_mat_files_cannot_carry_python_objects(tmp_path: Path) -> None:
    """.mat ground truth is read with scipy.io.loadmat, which has no pickle path: a MATLAB object
    array of strings comes back as data."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"dbStruct": {"dbImage": np.array(["__import__('os')"], dtype=object)}})
    content = scipy.io.loadmat(io.BytesIO(buffer.getvalue()), simplify_cells=True)
    assert content["dbStruct"]["dbImage"] == "__import__('os')"
