"""Issue 13 item 16: a report that reads well, and the real-browser check of report.html."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from structvpr.report.builder import ReportFigure, ReportRow, ReportSection, ReportTable, write_report
from structvpr.report.demo_tables import examples_table, index_tables, readable_image_name, timings_table
from structvpr.report.figures import axis_labels, plot_recall_curves

CHECK_REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "check_report.py"


def _write_small_report(folder: Path) -> Path:
    rows = [ReportRow("student", "town", "test", 61, 15, {1: 0.557, 5: 0.951, 10: 0.984, 20: 1.0})]
    plot_recall_curves({"student": rows[0].recalls}, folder / "recall.png", "town / test")
    Image.new("RGB", (40, 20), (0, 120, 0)).save(folder / "example.jpg")
    example = {
        "query": 9,
        "model": "student",
        "query_name": "@387.96@175.20@99@T@@@synth00045fog4@@84.2@0@0@2.07@@fog@.jpg",
        "names": ["@403.15@303.72@99@T@@@synth00056day0@@2.6@0@0@2.10@@day@.jpg"],
        "scores": [0.9312],
        "correct": [True],
    }
    index = {"kind": "flat", "params": {"dim": 32}, "size": 15, "build_seconds": 0.01, "memory_bytes": 2000}
    stages = {
        "synth": {"title": "1/7 synthetic town", "seconds": 17.9},
        "train": {"title": "3/7 training", "seconds": 300.0},
    }
    sections = [
        ReportSection("Recall@N", figures=[ReportFigure("recall.png", "Recall@N")]),
        ReportSection(
            "Examples", figures=[ReportFigure("example.jpg", "top-5", "photo")], tables=[examples_table([example])]
        ),
        ReportSection("Index", tables=index_tables(index)),
        ReportSection("Timings", tables=[timings_table(stages, {"stage2": 20.0}, report_start=0.0)]),
    ]
    return write_report(folder, "report", rows, sections)[1]


def test_plots_carry_their_axis_labels_and_the_sections_are_tables(tmp_path: Path) -> None:
    page = _write_small_report(tmp_path).read_text(encoding="utf-8")
    assert axis_labels(tmp_path / "recall.png") == ("N (number of top-ranked database images)", "Recall@N (%)")
    # Example rows show the score and a readable file name; the index is a table, not a dump.
    assert "right 0.931 synth00056day0 (403.1 E, 303.7 N)" in page
    assert "<th>kind</th><th>parameters</th><th>descriptors</th><th>build time</th><th>index memory</th>" in page
    assert "<td>dim=32</td><td>15</td><td>0.01 s</td><td>2.0 KiB</td>" in page
    # Every stage is timed, the report stage included, with a total.
    assert "7/7 report (up to writing this page)" in page and "<td>total</td>" in page
    assert "<td>    stage2</td><td>20.0 s</td>" in page
    assert '<figure data-kind="photo"><img src="example.jpg"' in page
    assert readable_image_name("0000001.jpg") == "0000001.jpg"


def test_a_plot_without_axis_labels_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (30, 30)).save(tmp_path / "chart.png")  # a chart saved without save_plot
    section = ReportSection("Chart", figures=[ReportFigure("chart.png", "a chart")])
    with pytest.raises(ValueError, match=r"chart\.png: plot without axis labels in the file"):
        write_report(tmp_path, "report", [], [section])
    table = ReportTable(["a"], [["1"]])
    write_report(tmp_path, "report", [], [ReportSection("Table", tables=[table])])  # tables need no figure


def _check(report: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK_REPORT), str(report)], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_check_report_passes_a_good_report_and_names_each_kind_of_fault(tmp_path: Path) -> None:
    report = _write_small_report(tmp_path)
    good = _check(report)
    assert good.returncode == 0 and "2 images rendered" in good.stdout and "0 problems: passed" in good.stdout, good
    page = report.read_text(encoding="utf-8")

    report.write_text(page.replace('src="example.jpg"', 'src="missing.jpg"'), encoding="utf-8")
    assert "FAIL broken image: missing.jpg" in _check(report).stdout
    report.write_text(page.replace("</body>", "<script>console.error('boom')</script></body>"), encoding="utf-8")
    assert "FAIL console error: boom" in _check(report).stdout
    report.write_text(page, encoding="utf-8")
    (tmp_path / "example.jpg").write_bytes(b"not an image")
    assert "FAIL broken image: example.jpg" in _check(report).stdout
    Image.new("RGB", (40, 20)).save(tmp_path / "example.jpg")
    Image.new("RGB", (50, 40)).save(tmp_path / "recall.png")  # a plot that lost its labels
    result = _check(report)
    assert result.returncode == 1 and "FAIL figure recall.png: no axis labels recorded" in result.stdout
