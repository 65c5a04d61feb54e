"""ONNX (run with onnxruntime) and TorchScript exports reproduce PyTorch's descriptors on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from structvpr.data.images import image_transform, load_rgb
from structvpr.export import ExportError, ExportReport, export_model
from structvpr.model import ModelConfig, build_model

pytest.importorskip("onnxruntime")
# Exporting takes ~15 s of CPU (torch.export + tracing); still run by CI.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    """A randomly initialised ResNet-18 + GeM at 64 x 80 pixels with a 64-d FC (fast).

    (A randomly initialised EfficientNet-Lite0 maps every image to ~0 features, which would make
    the comparison trivial; ResNet-18's random features still depend on the image.)
    """
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(64, 80), descriptor_dim=64))
    # Non-trivial BatchNorm statistics, so an export that dropped them would not match.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def corridor_images(fixtures_dir: Path) -> list[Path]:
    """7 real Corridor query images, spread over the sequence."""
    return sorted((fixtures_dir / "corridor" / "query").glob("*.jpg"))[::15][:7]


@pytest.fixture(scope="module")
def exports(small_model, corridor_images, tmp_path_factory) -> dict[str, ExportReport]:
    """One ONNX and one TorchScript export of the small model, each checked at batch 1 and 7."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        fmt: export_model(small_model, folder / f"model.{fmt}", fmt, check_images=corridor_images, batch_sizes=(1, 7))
        for fmt in ("onnx", "torchscript")
    }


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_real_images(fmt: str, exports, small_model, corridor_images) -> None:
    report = exports[fmt]
    assert report.path.is_file() and report.max_abs_diff <= 1e-4
    # Independently of export_model's own check: run the file at batch 1 and 7 on the real images.
    transform = image_transform((64, 80), small_model.config.mean, small_model.config.std)
    images = torch.stack([transform(load_rgb(p)) for p in corridor_images])
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
        run = lambda batch: session.run(None, {"images": batch.numpy()})[0]
    else:
        scripted = torch.jit.load(str(report.path))
        run = lambda batch: scripted(batch).detach().numpy()
    for batch in (images[:1], images[:7]):
        with torch.inference_mode():
            expected = small_model(batch).numpy()
        produced = run(batch)
        assert produced.shape == expected.shape == (len(batch), 64)
        assert np.abs(produced - expected).max() <= 1e-4
        np.testing.assert_allclose(np.linalg.norm(produced, axis=1), 1.0, atol=1e-5)
    # Descriptors of different images differ: the comparison is not between constants.
    assert np.abs(expected[0] - expected[1]).max() > 1e-3


def test_onnx_model_runs_through_api_describe(exports, small_model, corridor_images) -> None:
    from structvpr.api import load

    model = load(exports["onnx"].path)
    assert model.backend == "onnxruntime" and model.image_size == (64, 80) and model.descriptor_dim == 64
    with torch.inference_mode():
        expected = small_model(torch.stack([model.preprocess(p) for p in corridor_images])).numpy()
    np.testing.assert_allclose(model.describe(corridor_images, batch_size=3), expected, atol=1e-4)


def test_export_rejects_bad_format_and_failed_check(small_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(small_model, tmp_path / "m.bin", "tflite")
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_model(small_model, tmp_path / "m.ts", "torchscript", batch_sizes=(1,), tolerance=-1.0)
    assert not (tmp_path / "m.ts").exists()


@pytest.fixture(scope="module")
def map_images(fixtures_dir: Path) -> list[Path]:
    """16 real Corridor map images: 12 calibrate the int8 model, 4 check it."""
    return sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[::7][:16]


@pytest.fixture(scope="module")
def int8_export(small_model, map_images, tmp_path_factory):
    from structvpr.export_int8 import export_int8_onnx

    return export_int8_onnx(small_model, tmp_path_factory.mktemp("int8") / "model.int8.onnx", map_images)


def _convolutions_in_float(graph) -> list[bool]:
    """Per Conv node of an int8 QDQ graph, in order: True when its weight is a float initializer
    (left in float), False when it comes from a DequantizeLinear (quantised)."""
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    return [node.input[1] not in dequantized for node in graph.node if node.op_type == "Conv"]


def test_int8_export_is_checked_and_loads_like_any_onnx_file(int8_export, small_model, map_images) -> None:
    import json

    import onnx

    import structvpr

    check = int8_export.check
    assert (check.held_out, check.calibration) == (4, 12)
    assert check.mean_cosine >= 0.95 and check.retrieval >= 0.9
    proto = onnx.load(str(int8_export.path))
    graph = proto.graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)  # really quantised
    # Default: the first 3 convolutions and the last one stay in float, the 16 between are int8.
    in_float = _convolutions_in_float(graph)
    assert in_float[:3] == [True] * 3 and in_float[-1] and not any(in_float[3:-1]) and len(in_float) == 20
    settings = json.loads({entry.key: entry.value for entry in proto.metadata_props}["structvpr.quantization"])
    assert (settings["float_first_convolutions"], settings["calibration_method"]) == (3, "minmax")
    loaded = structvpr.load(int8_export.path)
    assert loaded.backend == "onnxruntime" and loaded.image_size == (64, 80)
    descriptors = loaded.describe(map_images[:5])
    with torch.inference_mode():
        expected = small_model(torch.stack([loaded.preprocess(p) for p in map_images[:5]])).numpy()
    cosine = np.sum(descriptors * expected, axis=1)
    assert cosine.min() > 0.9
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-3)


def test_int8_export_that_fails_its_check_is_refused_and_writes_nothing(small_model, map_images, tmp_path) -> None:
    from structvpr.export_int8 import export_int8_onnx

    target = tmp_path / "model.int8.onnx"
    with pytest.raises(ExportError, match=r"int8 model refused, nothing written: descriptor cosine to fp32 mean"):
        export_int8_onnx(small_model, target, map_images, min_cosine=1.01)
    assert not target.exists()
    with pytest.raises(ValueError, match="needs at least 12 map images, got 5"):
        export_int8_onnx(small_model, target, map_images[:5])


def test_int8_export_options_reach_the_graph(small_model, map_images, exports, tmp_path) -> None:
    """float_first=0 quantises the stem too; percentile calibration (one image per batch) runs."""
    import onnx

    from structvpr.export_int8 import export_int8_onnx, float_nodes

    report = export_int8_onnx(
        small_model, tmp_path / "m.onnx", map_images, float_first=0, calibration_method="percentile"
    )
    assert report.check.mean_cosine >= 0.95
    graph = onnx.load(str(report.path)).graph
    in_float = _convolutions_in_float(graph)
    assert not any(in_float[:-1]) and in_float[-1]
    with pytest.raises(ValueError, match="unknown int8 calibration method 'kl'"):
        export_int8_onnx(small_model, tmp_path / "n.onnx", map_images, calibration_method="kl")
    assert not (tmp_path / "n.onnx").exists()
    # float_nodes of the fp32 export: the first N convolutions, then the last one and everything after it.
    fp32 = onnx.load(str(exports["onnx"].path)).graph
    names = [node.name for node in fp32.node]
    convolutions = [node.name for node in fp32.node if node.op_type == "Conv"]
    after_last = names[names.index(convolutions[-1]) :]
    assert len(after_last) > 1 and float_nodes(fp32, 2) == convolutions[:2] + after_last
    assert float_nodes(fp32, 0) == after_last


def test_export_command_int8_needs_onnx_and_calibration_images(small_model, tmp_path: Path, capsys) -> None:
    from structvpr.cli import main
    from structvpr.model.model_file import save_model_file

    model_path = tmp_path / "model.pt"
    save_model_file(small_model, model_path, {"train_dataset": "none (random weights)"})
    out = str(tmp_path / "m.onnx")
    assert main(["export", "--model", str(model_path), "--out", out, "--int8"]) == 1
    assert "--int8 needs --calibration-images" in capsys.readouterr().err
    arguments = ["export", "--model", str(model_path), "--out", out, "--int8", "--format", "torchscript"]
    assert main([*arguments, "--calibration-images", str(tmp_path)]) == 1
    assert "--int8 needs --format onnx" in capsys.readouterr().err
