"""Running (or resuming) the demo: every stage in order, each recorded in demo_state.json."""

from __future__ import annotations

from pathlib import Path

import yaml

from structvpr.config import config_to_dict
from structvpr.demo.report import stage_report
from structvpr.demo.settings import SETTINGS_FILE, DemoRun, DemoSettings, load_settings, save_settings
from structvpr.demo.stages import (
    stage_evaluate,
    stage_export,
    stage_index,
    stage_labels,
    stage_synth,
    stage_train,
)
from structvpr.io_utils import atomic_write_text


def run_demo(out_dir: str | Path, settings: DemoSettings) -> Path:
    """Run (or resume) the demo in `out_dir`; returns the path of report.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / SETTINGS_FILE
    if settings_path.is_file():
        if load_settings(out_dir) != settings:
            raise ValueError(
                f"{settings_path}: this folder holds a demo with other settings; "
                "resume it with `structvpr demo --resume DIR` or choose a new --out"
            )
    else:
        save_settings(out_dir, settings)
    run = DemoRun(out_dir, settings)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(run.config), sort_keys=False))
    run.stage("synth", "1/7 synthetic town", lambda: stage_synth(run))
    run.stage("labels", "2/7 label maps", lambda: stage_labels(run))
    run.stage("train", "3/7 Stage I (seg teacher, RGB baseline) -> partition -> Stage II", lambda: stage_train(run))
    run.stage("evaluate", "4/7 evaluation on the test split", lambda: stage_evaluate(run))
    run.stage("index", "5/7 index of the test database + example queries", lambda: stage_index(run))
    run.stage("export", "6/7 ONNX export of the student", lambda: stage_export(run))
    run.stage("report", "7/7 report", lambda: stage_report(run))
    report = out_dir / "report.html"
    print(f"report: {report}", flush=True)
    return report
