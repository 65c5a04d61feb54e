"""structvpr.load / describe: model files round-trip, every input type, unsafe files refused,
and the README's "Use a trained model" example runs."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from structvpr.api import StructVPRModel, load
from structvpr.model import ModelConfig, build_model
from structvpr.model.model_file import ModelFileError, load_model_file, save_model_file

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A randomly initialised small ResNet-18 model saved as a structvpr model file."""
    torch.manual_seed(0)
    network = build_model(
        ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=32)
    ).eval()
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model_file(network, path, {"train_dataset": "synthtown train", "stage": 2, "run": Path("/runs/x")})
    return path, network


@pytest.fixture(scope="module")
def corridor_paths(fixtures_dir: Path) -> list[Path]:
    return sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))


def test_model_file_round_trip_and_metadata(model_file) -> None:
    path, network = model_file
    loaded, info = load_model_file(path)
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert info["preprocessing"]["image_size"] == [48, 64]
    assert info["preprocessing"]["mean"] == list(network.config.mean)
    assert info["descriptor_dim"] == 32 and info["training_data"] == ["synthtown train"]
    assert info["code_version"] and info["stage"] == 2 and info["run"] == "/runs/x"


def test_describe_accepts_paths_pil_arrays_and_tensors(model_file, corridor_paths) -> None:
    path, network = model_file
    model = load(path)
    assert isinstance(model, StructVPRModel) and model.descriptor_dim == 32
    paths = corridor_paths[:5]
    from_paths = model.describe(paths, batch_size=2)
    assert from_paths.shape == (5, 32) and from_paths.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(from_paths, axis=1), 1.0, atol=1e-5)
    pil_images = [Image.open(p).convert("RGB") for p in paths]
    np.testing.assert_allclose(model.describe(pil_images), from_paths, atol=1e-6)
    arrays = [np.asarray(image) for image in pil_images]
    np.testing.assert_allclose(model.describe(arrays), from_paths, atol=1e-6)
    np.testing.assert_allclose(model.describe(np.stack(arrays)), from_paths, atol=1e-6)  # [N, H, W, 3]
    np.testing.assert_allclose(model.describe(paths[0]), from_paths[:1], atol=1e-6)  # a single image
    # Tensors already at the model's size skip resizing: same pixels, same descriptors.
    resized = [image.resize((64, 48), Image.BILINEAR) for image in pil_images]
    tensors = torch.stack([torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in resized])
    np.testing.assert_allclose(model.describe(tensors), from_paths, atol=1e-5)  # uint8 [N, 3, H, W]
    np.testing.assert_allclose(model.describe(list(tensors.float() / 255)), from_paths, atol=1e-5)
    # The descriptors are the network's: describe adds no hidden transformation.
    batch = torch.stack([model.preprocess(p) for p in paths])
    with torch.inference_mode():
        np.testing.assert_allclose(from_paths, network(batch).numpy(), atol=1e-6)
    np.testing.assert_allclose(model.describe_batch(batch), from_paths, atol=1e-6)  # the public batch entry
    assert load(path.parent).descriptor_dim == 32  # a run folder with model.pt works too


def test_describe_rejects_bad_inputs(model_file, tmp_path: Path) -> None:
    model = load(model_file[0])
    with pytest.raises(ValueError, match="uint8"):
        model.describe(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(TypeError, match="int"):
        model.describe([3])
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        model.describe([tmp_path / "empty.jpg"])


def test_load_refuses_files_that_are_not_models(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.pt"
    text_file.write_text("not a model")
    with pytest.raises(ModelFileError, match=re.escape(str(text_file)) + ".*not a structvpr model file"):
        load(text_file)
    other_checkpoint = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other_checkpoint)
    with pytest.raises(ModelFileError, match="other.pt: not a structvpr model file"):
        load(other_checkpoint)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load(tmp_path / "missing.pt")


class _CodeOnUnpickle:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_load_refuses_pickles_with_code_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran.marker"
    raw_pickle = tmp_path / "evil.pkl"
    raw_pickle.write_bytes(pickle.dumps(_CodeOnUnpickle(marker)))
    torch_file = tmp_path / "evil.pt"  # a torch zip file that claims to be a model
    torch.save({"format": "structvpr-model", "model_config": _CodeOnUnpickle(marker)}, torch_file)
    for path in (raw_pickle, torch_file):
        with pytest.raises(ModelFileError, match=re.escape(str(path)) + ": refused to load"):
            load(path)
    assert not marker.exists()
    pickle.loads(raw_pickle.read_bytes())  # the file really does run code when unpickled unsafely
    assert marker.exists()


def _readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use a trained model", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "README.md section 'Use a trained model' has no python example"
    return blocks[0]


def test_readme_three_line_example_runs(
    model_file, corridor_paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _readme_example()
    assert len([line for line in code.splitlines() if line.strip() and not line.startswith("import")]) == 3
    shutil.copy(model_file[0], tmp_path / "model.pt")
    (tmp_path / "map").mkdir()
    for path in corridor_paths[:20]:
        shutil.copy(path, tmp_path / "map" / path.name)
    shutil.copy(corridor_paths[7], tmp_path / "query.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["ids"].shape == (1, 5) and namespace["scores"].shape == (1, 5)
    assert namespace["ids"][0, 0] == 7  # the query is map image 7 itself
    assert namespace["scores"][0, 0] == pytest.approx(1.0, abs=1e-4)
