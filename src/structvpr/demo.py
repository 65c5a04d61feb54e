"""The main job: the whole StructVPR++ pipeline on the synthetic town, with a side-by-side report.

synth -> label maps -> Stage I (seg teacher, RGB baseline) -> partition -> Stage II -> evaluation
-> index + queries -> ONNX export -> report.html / report.md. Every stage records its finish (and
wall time) in `demo_state.json`, so an interrupted demo resumes at the first unfinished stage.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from structvpr.config import Config, DatasetSource, config_from_dict, config_to_dict
from structvpr.io_utils import atomic_write_text

STATE_FILE = "demo_state.json"
SETTINGS_FILE = "demo.yaml"


@dataclass
class DemoSettings:
    """Size of the demo. The defaults finish in about 10 minutes on 2 CPU cores."""

    places: int = 200
    image_size: tuple[int, int] = (96, 128)  # H, W of the rendered town and of the network input
    seed: int = 0
    stage1_epochs: int = 3
    stage2_epochs: int = 2
    stage2_lr: float = 1e-3
    places_per_batch: int = 8
    images_per_place: int = 4
    segmenter: str = "exact"  # "exact" synthetic labels, or "espnetv2" to run the real network
    ablations: tuple[str, ...] = ("no_weights",)
    num_examples: int = 6  # example queries in the report
    device: str = "cpu"

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smaller demo (< 3 minutes on 2 cores) for the test suite."""
        return cls(
            places=60,
            image_size=(64, 96),
            stage1_epochs=1,
            stage2_epochs=1,
            places_per_batch=8,
            ablations=(),
            num_examples=3,
        )

    def to_dict(self) -> dict:
        """Plain YAML-able values."""
        values = dataclasses.asdict(self)
        values["image_size"] = list(self.image_size)
        values["ablations"] = list(self.ablations)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> DemoSettings:
        """Inverse of to_dict; unknown keys are an error naming them."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown demo settings {sorted(unknown)}")
        values = dict(values)
        if "image_size" in values:
            values["image_size"] = tuple(int(v) for v in values["image_size"])
        if "ablations" in values:
            values["ablations"] = tuple(values["ablations"])
        return cls(**values)


def experiment_config(settings: DemoSettings, town_dir: Path, runs_dir: Path) -> Config:
    """The training configuration the demo uses: train split for training, val split for checkpoints."""
    height, width = settings.image_size
    config = config_from_dict(
        {
            "data": {
                "train": {"path": str(town_dir), "layout": "utm", "split": "train"},
                "val": {"path": str(town_dir), "layout": "utm", "split": "val"},
                "num_workers": 0,
                "val_batch_size": 64,
            },
            "model": {"backbone": "efficientnet_lite0", "aggregator": "gem", "image_size": [height, width]},
            "train": {
                "epochs": settings.stage1_epochs,
                "seed": settings.seed,
                "accelerator": "cpu" if settings.device == "cpu" else "auto",
                "devices": 1,
                "places_per_batch": settings.places_per_batch,
                "images_per_place": settings.images_per_place,
                "output_dir": str(runs_dir),
                "deterministic": True,
                "validate_before_training": False,
            },
            # Stage II at lr 1e-3: at the default 1e-4 a short Stage II barely moves the student
            # (docs/method.md, synthetic-town experiment).
            "structvpr": {"stage2_epochs": settings.stage2_epochs, "stage2_lr": settings.stage2_lr},
        }
    )
    return config


class DemoRun:
    """One demo folder: its settings, its stage record, and the stages still to run."""

    def __init__(self, out_dir: Path, settings: DemoSettings) -> None:
        self.out_dir = Path(out_dir)
        self.settings = settings
        self.town_dir = self.out_dir / "town"
        self.runs_dir = self.out_dir / "runs"
        self.config = experiment_config(settings, self.town_dir, self.runs_dir)
        state_path = self.out_dir / STATE_FILE
        self.state = json.loads(state_path.read_text()) if state_path.is_file() else {"stages": {}}

    def save_state(self) -> None:
        """Write demo_state.json atomically."""
        atomic_write_text(self.out_dir / STATE_FILE, json.dumps(self.state, indent=2) + "\n")

    def stage(self, name: str, title: str, work: Callable[[], dict | None]) -> dict:
        """Run `work` unless the stage finished before; record wall time and its result."""
        record = self.state["stages"].get(name)
        if record and record.get("done"):
            print(f"== {title}: done in an earlier run ({record['seconds']:.0f} s), skipped", flush=True)
            return record.get("result") or {}
        print(f"== {title}", flush=True)
        start = time.perf_counter()
        result = work() or {}
        seconds = time.perf_counter() - start
        self.state["stages"][name] = {"done": True, "seconds": seconds, "title": title, "result": result}
        self.save_state()
        print(f"== {title}: {seconds:.1f} s", flush=True)
        return result


def _stage_synth(run: DemoRun) -> dict:
    from structvpr.data.synth import generate_town

    settings = run.settings
    result = generate_town(run.town_dir, settings.places, seed=settings.seed, image_size=settings.image_size)
    return {"images": result.num_images if hasattr(result, "num_images") else None}


def network_input_size(image_size: tuple[int, int], scale: int = 2, multiple: int = 16) -> tuple[int, int]:
    """(H, W) for the segmentation network: `scale` x the image, rounded up to a multiple of 16 (ESPNetv2)."""
    return tuple(-(-side * scale // multiple) * multiple for side in image_size)


def replace_labels_with_segmenter(
    town_dir: Path, segmenter_name: str, image_size: tuple[int, int], device: str = "cpu"
) -> str:
    """Move the town's exact label maps to `<folder>_labels_exact/` and write the network's maps in
    their place (`<folder>_labels/`), so training sees what a real segmenter gives. Returns a summary."""
    from structvpr.data.label_maps import label_path_for
    from structvpr.data.layouts import open_dataset
    from structvpr.segment.cache import build_label_cache
    from structvpr.segment.segmenters import build_segmenter

    paths = []
    for split in ("train", "val", "test"):
        dataset = open_dataset(town_dir, layout="utm", split=split)
        paths += list(dataset.database_paths) + list(dataset.query_paths)
    for path in paths:
        label = label_path_for(path)
        if label.is_file():
            exact = label.parent.with_name(label.parent.name + "_exact") / label.name
            exact.parent.mkdir(parents=True, exist_ok=True)
            label.replace(exact)
    segmenter = build_segmenter(segmenter_name, device=device, input_size=network_input_size(image_size))
    return build_label_cache(paths, segmenter, num_workers=0, progress=True).format()


def _stage_labels(run: DemoRun) -> dict:
    """Exact labels come with the town; `espnetv2` replaces them with the real network's output."""
    if run.settings.segmenter == "exact":
        return {"segmenter": "exact synthetic labels"}
    summary = replace_labels_with_segmenter(
        run.town_dir, run.settings.segmenter, run.settings.image_size, run.settings.device
    )
    print(summary, flush=True)
    return {"segmenter": run.settings.segmenter, "summary": summary}


def run_demo(out_dir: str | Path, settings: DemoSettings) -> Path:
    """Run (or resume) the demo in `out_dir`; returns the path of report.html."""
    from structvpr.demo_stages import (
        stage_evaluate,
        stage_export,
        stage_index,
        stage_report,
        stage_train,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / SETTINGS_FILE
    if settings_path.is_file():
        saved = DemoSettings.from_dict(yaml.safe_load(settings_path.read_text()) or {})
        if saved != settings:
            raise ValueError(
                f"{settings_path}: this folder holds a demo with other settings; "
                "resume it with `structvpr demo --resume DIR` or choose a new --out"
            )
    else:
        atomic_write_text(settings_path, yaml.safe_dump(settings.to_dict(), sort_keys=False))
    run = DemoRun(out_dir, settings)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(run.config), sort_keys=False))
    run.stage("synth", "1/7 synthetic town", lambda: _stage_synth(run))
    run.stage("labels", "2/7 label maps", lambda: _stage_labels(run))
    run.stage("train", "3/7 Stage I (seg teacher, RGB baseline) -> partition -> Stage II", lambda: stage_train(run))
    run.stage("evaluate", "4/7 evaluation on the test split", lambda: stage_evaluate(run))
    run.stage("index", "5/7 index of the test database + example queries", lambda: stage_index(run))
    run.stage("export", "6/7 ONNX export of the student", lambda: stage_export(run))
    run.stage("report", "7/7 report", lambda: stage_report(run))
    report = out_dir / "report.html"
    print(f"report: {report}", flush=True)
    return report


def load_settings(out_dir: str | Path) -> DemoSettings:
    """The settings a demo folder was made with (to resume or re-run it)."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a demo folder (no {SETTINGS_FILE})")
    return DemoSettings.from_dict(yaml.safe_load(path.read_text()) or {})


def held_out_source(run: DemoRun) -> DatasetSource:
    """The held-out split every model is compared on."""
    return DatasetSource(path=str(run.town_dir), layout="utm", split="test")
