"""Write the synthetic town as a UTM-layout dataset with label maps and metadata.csv.

Images and label maps are written atomically; metadata.csv is written last (and removed when a
run starts), so a folder without metadata.csv is an unfinished run. Re-running with the same
settings resumes: existing image/label pairs are kept (they would be byte-identical anyway).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image

from structvpr.data.label_maps import label_path_for
from structvpr.data.synth.camera import DEFAULT_JITTER, PoseJitter
from structvpr.data.synth.conditions import DATABASE_CONDITION, DEFAULT_QUERY_CONDITIONS
from structvpr.data.synth.visits import (
    image_name,
    plan_visits,
    render_visit,
    visit_camera,
)
from structvpr.data.synth.world import build_town
from structvpr.dataclass_dict import to_plain_dict
from structvpr.io_utils import atomic_write_bytes, atomic_write_text
from structvpr.progress import progress_bar

METADATA_COLUMNS = (
    "path",
    "label_path",
    "split",
    "role",
    "place_id",
    "condition",
    "visit",
    "same_condition",
    "east",
    "north",
    "heading",
    "height",
)
CONFIG_NAME = "synth_config.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class _Settings:
    """Everything that decides the dataset's bytes (picklable, sent to worker processes)."""

    places: int
    seed: int
    image_size: tuple[int, int]
    query_conditions: tuple[str, ...]
    database_condition: str
    same_condition_fraction: float
    split_fractions: tuple[float, float, float]
    jitter: PoseJitter
    hfov_deg: float
    jpeg_quality: int


class _Renderer:
    """Builds the town once, then renders and encodes visit `index` -> (label PNG, RGB JPEG)."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.town = build_town(settings.places, settings.seed, settings.split_fractions)
        self.visits = plan_visits(
            self.town,
            settings.database_condition,
            settings.query_conditions,
            settings.same_condition_fraction,
            settings.seed,
        )

    def __call__(self, index: int) -> tuple[bytes, bytes]:
        s = self.settings
        frame = render_visit(self.town, self.visits[index], s.image_size, s.seed, s.jitter, s.hfov_deg)
        return (
            _encode(Image.fromarray(frame.labels, "L"), "PNG"),
            _encode(Image.fromarray(frame.rgb, "RGB"), "JPEG", quality=s.jpeg_quality),
        )


_WORKER_RENDERER: _Renderer | None = None


def _start_worker(settings: _Settings) -> None:
    global _WORKER_RENDERER
    _WORKER_RENDERER = _Renderer(settings)


def _render_in_worker(index: int) -> tuple[bytes, bytes]:
    assert _WORKER_RENDERER is not None, "worker was not initialised"
    return _WORKER_RENDERER(index)


@dataclass
class SynthResult:
    """What `generate_town` did."""

    out_dir: Path
    metadata_path: Path
    num_images: int
    rendered: int
    reused: int
    seconds: float


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _check_config(out_dir: Path, config: dict, overwrite: bool) -> None:
    path = out_dir / CONFIG_NAME
    if path.exists() and not overwrite:
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: unreadable synth settings ({error}); use --overwrite") from None
        if previous != config:
            changed = sorted(k for k in set(config) | set(previous) if previous.get(k) != config.get(k))
            raise ValueError(
                f"{path}: {out_dir} was generated with other settings "
                f"(differs in {', '.join(changed)}); choose a new --out or --overwrite"
            )
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def generate_town(
    out_dir: str | Path,
    places: int,
    seed: int = 0,
    image_size: tuple[int, int] = (120, 160),
    query_conditions: tuple[str, ...] = DEFAULT_QUERY_CONDITIONS,
    database_condition: str = DATABASE_CONDITION,
    same_condition_fraction: float = 0.25,
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    jitter: PoseJitter = DEFAULT_JITTER,
    hfov_deg: float = 80.0,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> SynthResult:
    """Render `places` places of a town into `out_dir` (UTM layout, labels, metadata.csv).

    image_size is (H, W) in pixels. Each place gets one database image (database_condition) and
    one query per query condition; ~same_condition_fraction of places also get a query in the
    database condition (marked same_condition=1 in metadata.csv). Same arguments -> same bytes,
    whatever `workers` is (every image has its own seed; files are written in one order).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if places < 1:
        raise ValueError(f"--places must be >= 1, got {places}")
    if min(image_size) < 8:
        raise ValueError(f"image size {image_size} is too small (need H, W >= 8)")
    settings = _Settings(
        places,
        seed,
        (int(image_size[0]), int(image_size[1])),
        tuple(query_conditions),
        database_condition,
        same_condition_fraction,
        cast("tuple[float, float, float]", tuple(split_fractions)),  # a YAML list becomes a tuple
        jitter,
        hfov_deg,
        jpeg_quality,
    )
    config = {"format_version": FORMAT_VERSION, **to_plain_dict(settings)}  # lists, as read back from the file
    renderer = _Renderer(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata_path = out_dir / "metadata.csv"
    _check_config(out_dir, config, overwrite)
    metadata_path.unlink(missing_ok=True)  # absent until this run completes
    for stale in (out_dir / "images").glob("**/.*.tmp"):
        stale.unlink()  # temporary files of a killed run
    rows, targets, todo = [], [], []
    for index, visit in enumerate(renderer.visits):
        camera = visit_camera(visit, settings.image_size, seed, jitter, hfov_deg)
        relative = Path("images") / visit.place.split / visit.role / image_name(visit, camera)
        image_path, label_path = out_dir / relative, label_path_for(out_dir / relative)
        targets.append((image_path, label_path))
        if overwrite or not (image_path.exists() and label_path.exists()):
            todo.append(index)
        rows.append(
            {
                "path": relative.as_posix(),
                "label_path": label_path.relative_to(out_dir).as_posix(),
                "split": visit.place.split,
                "role": visit.role,
                "place_id": visit.place.place_id,
                "condition": visit.condition,
                "visit": visit.visit,
                "same_condition": int(visit.same_condition),
                "east": f"{camera.x:.2f}",
                "north": f"{camera.y:.2f}",
                "heading": f"{camera.heading_deg:.1f}",
                "height": f"{camera.height:.2f}",
            }
        )
    if overwrite:  # files of an earlier run with other settings would mix into the dataset
        wanted = {path for pair in targets for path in pair}
        for old in (out_dir / "images").glob("*/*/*"):
            if old.suffix in (".jpg", ".png") and old not in wanted:
                old.unlink()
    bar = progress_bar(len(todo), "synth", "img", disable=not progress)
    encoded: Iterator[tuple[bytes, bytes]]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(todo) > 1:
            pool = stack.enter_context(
                multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker, initargs=(settings,))
            )
            encoded = pool.imap(_render_in_worker, todo, chunksize=4)
        else:
            encoded = map(renderer, todo)
        for index, (label_png, rgb_jpeg) in zip(todo, encoded, strict=True):
            image_path, label_path = targets[index]
            atomic_write_bytes(label_path, label_png)
            atomic_write_bytes(image_path, rgb_jpeg)
            bar.update()
    bar.close()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METADATA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(metadata_path, text.getvalue())
    return SynthResult(out_dir, metadata_path, len(rows), len(todo), len(rows) - len(todo), time.perf_counter() - start)
