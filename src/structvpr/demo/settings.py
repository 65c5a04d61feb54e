"""The demo's settings, the training config they give, and the demo folder with its stage record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from structvpr.config import Config, DatasetSource, config_from_dict
from structvpr.dataclass_dict import ConfigError, from_plain_dict, to_plain_dict
from structvpr.io_utils import atomic_write_text

STATE_FILE = "demo_state.json"
SETTINGS_FILE = "demo.yaml"
BASELINE_RUN = "stage2-vpr-only"  # RGB model trained for the student's Stage II steps with the VPR loss only
STUDENT_RUN = "stage2"


@dataclass
class DemoSettings:
    """Size of the demo and its training recipe (docs/method.md): Stage I at lr 1e-3 long enough to
    reach its val plateau, then Stage II at lr 3e-4 for the student and the same-steps baseline."""

    places: int = 200
    image_size: tuple[int, int] = (96, 128)  # H, W of the rendered town and of the network input
    seed: int = 0
    stage1_epochs: int = 7
    stage1_lr: float = 1e-3
    stage2_epochs: int = 6
    stage2_lr: float = 3e-4
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
                "lr": settings.stage1_lr,
                "seed": settings.seed,
                "accelerator": "cpu" if settings.device == "cpu" else "auto",
                "devices": 1,
                "places_per_batch": settings.places_per_batch,
                "images_per_place": settings.images_per_place,
                "output_dir": str(runs_dir),
                "deterministic": True,
                "validate_before_training": False,
            },
            # The recipe of benchmarks/bench_method.py (docs/method.md): both stages to their plateau.
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


def load_settings(out_dir: str | Path) -> DemoSettings:
    """The settings a demo folder was made with (to resume or re-run it)."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a demo folder (no {SETTINGS_FILE})")
    try:
        return from_plain_dict(DemoSettings, yaml.safe_load(path.read_text()) or {})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_settings(out_dir: str | Path, settings: DemoSettings) -> None:
    """Write `<out_dir>/demo.yaml` (atomically): the settings `load_settings` reads back."""
    atomic_write_text(Path(out_dir) / SETTINGS_FILE, yaml.safe_dump(to_plain_dict(settings), sort_keys=False))


def held_out_source(run: DemoRun) -> DatasetSource:
    """The held-out split every model is compared on."""
    return DatasetSource(path=str(run.town_dir), layout="utm", split="test")
