"""Descriptor extraction: row order, memmap output, agreement with the model, bad images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.data.images import BadImageError, image_transform, load_rgb
from structvpr.evaluate.descriptors import DescribeOptions, compute_descriptors, describe_batches
from structvpr.model import ModelConfig, build_model

SIZE = (32, 32)
MEAN = STD = (0.5, 0.5, 0.5)


def _options(**changes: object) -> DescribeOptions:
    return DescribeOptions(**{"image_size": SIZE, "mean": MEAN, "std": STD, "progress": False, **changes})


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(pretrained=False, image_size=SIZE, descriptor_dim=16)).eval()


def _write_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_rows_follow_paths_and_match_the_model(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    paths = _write_images(tmp_path / "images", 7)
    in_memory = compute_descriptors(tiny_model, paths, _options(batch_size=3))
    out_file = tmp_path / "out" / "descriptors.npy"
    on_disk = compute_descriptors(tiny_model, paths, _options(batch_size=4), out_file=out_file)
    assert isinstance(in_memory, np.memmap) and isinstance(on_disk, np.memmap)
    assert on_disk.shape == (7, 16) and on_disk.dtype == np.float32
    assert np.allclose(np.load(out_file), in_memory, atol=1e-5)
    assert [p.name for p in out_file.parent.iterdir()] == ["descriptors.npy"]  # no temp file left
    transform = image_transform(SIZE, MEAN, STD)
    with torch.no_grad():
        direct = tiny_model(transform(load_rgb(paths[5]))[None]).numpy()[0]
    assert np.allclose(in_memory[5], direct, atol=1e-5)
    assert np.allclose(np.linalg.norm(in_memory, axis=1), 1.0, atol=1e-5)


def test_bad_image_error_names_the_file_and_zeros_policy_blanks_its_row(
    tmp_path: Path, tiny_model: torch.nn.Module
) -> None:
    paths = _write_images(tmp_path, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    paths.insert(1, broken)
    with pytest.raises(BadImageError, match=r"broken\.jpg: cannot decode image"):
        compute_descriptors(tiny_model, paths, _options())
    with pytest.warns(UserWarning, match="1 undecodable images"):
        descriptors = compute_descriptors(tiny_model, paths, _options(on_bad_image="zeros"))
    assert np.all(descriptors[1] == 0) and np.all(np.abs(descriptors[[0, 2, 3]]).sum(axis=1) > 0)


def test_empty_path_list_is_an_error(tiny_model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="no image paths"):
        compute_descriptors(tiny_model, [], _options())


def test_describe_batches_takes_modules_and_plain_callables(tiny_model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    images = torch.randn(5, 3, *SIZE)
    tiny_model.train()
    from_module = describe_batches(tiny_model, iter([images[:2], images[2:]]), 5)
    assert tiny_model.training  # its mode is restored
    tiny_model.eval()
    with torch.inference_mode():
        expected = tiny_model(images).numpy()
    np.testing.assert_allclose(from_module, expected, atol=1e-5)
    # a callable that returns float64 numpy rows (like an ONNX Runtime session) gives float32 rows
    from_callable = describe_batches(lambda batch: tiny_model(batch).double().numpy(), [images[:3], images[3:]], 5)
    assert from_callable.dtype == np.float32
    np.testing.assert_allclose(from_callable, expected, atol=1e-5)
    with pytest.raises(ValueError, match="5 rows described, 6 announced"):
        describe_batches(tiny_model, [images], 6)
    with pytest.raises(ValueError, match="more than the 4 rows"):
        describe_batches(tiny_model, [images], 4)


def test_describe_options_take_the_models_preprocessing_and_refuse_bad_values(tiny_model: torch.nn.Module) -> None:
    filled = DescribeOptions(batch_size=2).for_model(tiny_model)
    assert (filled.image_size, filled.mean, filled.std) == (
        tiny_model.config.image_size,
        tiny_model.config.mean,
        tiny_model.config.std,
    )
    assert filled.batch_size == 2
    assert DescribeOptions(image_size=[16, 24]).for_model(tiny_model).image_size == (16, 24)  # given wins
    with pytest.raises(ValueError, match="image_size, mean, std not given and the model has no config"):
        DescribeOptions().for_model(torch.nn.Flatten())
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DescribeOptions(batch_size=0)
    with pytest.raises(ValueError, match="on_bad_image must be one of"):
        DescribeOptions(on_bad_image="skip")
