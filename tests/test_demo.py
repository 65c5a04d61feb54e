"""`structvpr demo --quick`: killed after its first stage, resumed, and its report checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest


class _ReportParser(HTMLParser):
    """Collects image sources and table cells of report.html."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self._in_cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)


def _demo_command(out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "structvpr.cli", "demo", "--quick", "--out", str(out_dir)]


@pytest.mark.slow
def test_quick_demo_resumes_after_kill_and_writes_a_complete_report(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    state_path = out_dir / "demo_state.json"
    process = subprocess.Popen(
        _demo_command(out_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state_path.is_file() and "synth" in json.loads(state_path.read_text())["stages"]:
            break
        time.sleep(0.5)
    assert process.poll() is None, "the demo ended before it could be interrupted"
    time.sleep(3)  # inside the labels/training stage now
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    resumed = subprocess.run(
        [sys.executable, "-m", "structvpr.cli", "demo", "--resume", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1/7 synthetic town: done in an earlier run" in resumed.stdout

    state = json.loads(state_path.read_text())
    assert all(record["done"] for record in state["stages"].values())
    assert len(state["stages"]) == 7
    parser = _ReportParser()
    parser.feed((out_dir / "report.html").read_text())
    assert parser.images, "the report shows no images"
    for source in parser.images:
        assert (out_dir / source).is_file(), f"report.html references a missing image {source}"
    # Every results row names the dataset and split, with counts.
    rows = state["stages"]["train"]["result"]["rows"]
    assert {row["split"] for row in rows} == {"test"}
    assert {"RGB baseline (same Stage II steps, VPR loss only)", "StructVPR++ student (lmc)"} <= {
        row["model"] for row in rows
    }
    assert "This demo ran ONE seed" in (out_dir / "report.html").read_text()  # the report says how many seeds
    assert str(rows[0]["queries"]) in parser.cells and str(rows[0]["database"]) in parser.cells
    for row in rows:
        assert 0.0 <= row["R@1"] <= row["R@5"] <= 100.0
    assert (out_dir / "student.onnx").stat().st_size > 100_000
    assert (out_dir / "index").exists()


def test_demo_settings_round_trip_and_an_unknown_key_names_the_file(tmp_path: Path) -> None:
    from structvpr.dataclass_dict import ConfigError
    from structvpr.demo import DemoSettings, load_settings
    from structvpr.demo.settings import SETTINGS_FILE, save_settings

    settings = DemoSettings(places=33, image_size=(48, 64), ablations=("no_weights", "vpr_only"), stage2_lr=5e-4)
    save_settings(tmp_path, settings)
    assert "image_size:\n- 48\n- 64" in (tmp_path / SETTINGS_FILE).read_text()
    assert load_settings(tmp_path) == settings  # tuples come back as tuples, floats as floats

    (tmp_path / SETTINGS_FILE).write_text("places: 10\nplaces_per_batchh: 4\n")
    with pytest.raises(ConfigError, match=rf"{SETTINGS_FILE}: unknown config key 'places_per_batchh'"):
        load_settings(tmp_path)
