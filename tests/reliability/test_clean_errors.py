"""Issue 13 items 5, 7, 9, 10 and 14: bad input gets one line naming the path, exit 1, no traceback,
and nothing half-written; checked before the expensive work."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from structvpr.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from structvpr.model import ModelConfig, build_model
    from structvpr.model.model_file import save_model_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    network = build_model(ModelConfig(backbone="resnet18", pretrained=False, image_size=(48, 64), descriptor_dim=32))
    save_model_file(network, path, {})
    return path


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write into: mode 0555, and for root (who ignores modes) the immutable
    attribute. Skips where neither can be had (root on a file system without `chattr`)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a read-only folder here (root, and chattr +i is not available)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


def _one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    error = capsys.readouterr().err
    assert error.startswith(f"structvpr {command}: error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error and "Errno" not in error
    return error


def test_unwritable_or_wrong_kind_outputs_fail_at_once_naming_the_path(
    model_file: Path, fixtures_dir: Path, read_only_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Item 5: a read-only --out, or an --out that is an existing file, gave OSError / NotADirectoryError
    tracebacks, often after minutes of work."""
    corridor = fixtures_dir / "corridor"
    query = str(corridor / "query" / "0000000.jpg")
    inside = read_only_folder / "out"
    cases = [
        ("index", ["index", "build", str(corridor / "ref"), "--model", str(model_file), "--out", str(inside)]),
        ("query", ["query", query, "--index", str(tmp_path / "no_index"), "--out", str(inside / "r.json")]),
        ("query", ["query", query, "--index", str(tmp_path / "no_index"), "--save-preds", str(inside)]),
        ("export", ["export", "--model", str(model_file), "--out", str(inside / "m.onnx")]),
        ("evaluate", ["evaluate", str(corridor), "--model", str(model_file), "--out", str(inside)]),
        ("synth", ["synth", "--out", str(inside), "--places", "1"]),
        ("synth", ["synth", "--preview", str(inside / "p.png")]),
    ]
    for command, arguments in cases:
        assert main(arguments) == 1, arguments
        error = _one_line_error(capsys, command)
        reason = error.lower()
        assert str(inside) in error and "cannot write" in error, error
        assert "permission denied" in reason or "operation not permitted" in reason, error
    assert sorted(read_only_folder.iterdir()) == []  # nothing half-written, no lock file

    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    a_folder = tmp_path / "a_folder"
    a_folder.mkdir()
    for command, arguments, message in [
        (
            "index",
            ["index", "build", str(corridor / "ref"), "--model", str(model_file), "--out", str(a_file)],
            "exists and is not a folder",
        ),
        ("export", ["export", "--model", str(model_file), "--out", str(a_folder)], "is a folder; give a file name"),
        (
            "query",
            ["query", query, "--index", str(tmp_path / "x"), "--out", str(a_folder)],
            "is a folder; give a file name",
        ),
        (
            "evaluate",
            ["evaluate", str(corridor), "--model", str(model_file), "--out", str(a_file)],
            "exists and is not a folder",
        ),
    ]:
        assert main(arguments) == 1
        assert message in _one_line_error(capsys, command)
    assert a_file.read_text() == "keep" and sorted(a_folder.iterdir()) == []


def test_a_typo_inside_data_options_fails_before_training_naming_the_file_and_key(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Item 7: `frame_tolerence: 2` started Lightning, died with a TypeError traceback, and left a run folder."""
    nordland = fixtures_dir / "nordland_64x32"
    config = tmp_path / "config.yaml"
    run_root = tmp_path / "runs"
    source = {"path": str(nordland), "layout": "sequence", "options": {"frame_tolerence": 2}}
    config.write_text(
        yaml.safe_dump({"data": {"train": source, "val": source}, "train": {"output_dir": str(run_root)}}),
        encoding="utf-8",
    )
    assert main(["train", "--config", str(config), "--stage", "1"]) == 1
    error = _one_line_error(capsys, "train")
    assert f"{config}: " in error and "unknown dataset option 'frame_tolerence'" in error
    assert "did you mean 'frame_tolerance'?" in error
    assert not run_root.exists()
    # An option of another layout is named with the options that layout reads.
    source = {"path": str(nordland), "layout": "utm", "options": {"frame_tolerance": 2}}
    config.write_text(yaml.safe_dump({"data": {"train": source}}), encoding="utf-8")
    assert main(["train", "--config", str(config), "--stage", "1"]) == 1
    assert "dataset option 'frame_tolerance' does not apply to layout 'utm'" in _one_line_error(capsys, "train")


def test_a_truncated_model_file_says_truncated_in_a_whole_sentence(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Item 9: a truncated model.pt gave an error cut off mid-sentence that never said "truncated"."""
    truncated = tmp_path / "model.pt"
    truncated.write_bytes(model_file.read_bytes()[:300_000])
    assert main(["export", "--model", str(truncated), "--out", str(tmp_path / "m.onnx")]) == 1
    error = _one_line_error(capsys, "export")
    assert f"{truncated}: truncated or damaged model file (300000 bytes" in error
    assert error.rstrip().endswith("copy or download it again")
    assert not (tmp_path / "m.onnx").exists()


def test_evaluate_on_a_plain_folder_says_how_to_give_ground_truth(
    model_file: Path, fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Item 10: `evaluate` on a plain folder said "0 queries and 111 database images" and no more."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((fixtures_dir / "corridor" / "ref").glob("*.jpg"))[:3]:
        shutil.copy(path, folder / path.name)
    assert main(["evaluate", str(folder), "--model", str(model_file)]) == 1
    error = _one_line_error(capsys, "evaluate")
    assert "0 queries and 3 database images" in error and "plain folder with no ground truth" in error
    assert "@UTM_east@UTM_north@" in error and "docs/datasets.md" in error


def test_a_demo_folder_loads_and_the_readme_table_names_every_required_out(model_file: Path, tmp_path: Path) -> None:
    """Item 14: `structvpr.load(<demo run>)` said "model file does not exist" (a demo folder holds
    student.pt), and the README table omitted the --out that `index build` and `export` need."""
    import structvpr

    demo = tmp_path / "demo"
    demo.mkdir()
    shutil.copy(model_file, demo / "student.pt")
    model = structvpr.load(demo)
    assert model.descriptor_dim == 32 and model.sha256 == structvpr.load(model_file).sha256
    with pytest.raises(FileNotFoundError, match=r"a folder without a model file \(looked for model.pt or student.pt\)"):
        structvpr.load(tmp_path)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `structvpr ")]
    for command in ("index build", "export"):
        row = next(line for line in rows if line.startswith(f"| `structvpr {command}"))
        assert "--out" in row.split("|")[1], row
