"""Helpers shared by the layout readers: reading options, image listing, path safety, skip counts."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from structvpr.data.place_dataset import DatasetError, printable_path

BAD_POLICIES = ("error", "skip")
# How many example paths of each skip reason a dataset keeps for messages.
_MAX_EXAMPLES = 5


@dataclass
class ReadOptions:
    """Options every layout reader receives; a reader uses the ones that apply to it.

    `threshold_m=None` keeps the layout's own threshold (a .mat posDistThr, an .npz posDistThr,
    the frame tolerance of a sequence) or 25 m.
    """

    threshold_m: float | None = None
    database_folder: str | None = None
    query_folder: str | None = None
    frame_tolerance: int | None = None
    ground_truth: str | None = None
    pnv_name: str | None = None
    allow_pickle: bool = False
    msls_queries: str | None = None
    cities: Sequence[str] | None = None
    on_bad_name: str = "error"
    on_bad_image: str = "error"
    name: str | None = None

    def __post_init__(self) -> None:
        for option in ("on_bad_name", "on_bad_image"):
            if getattr(self, option) not in BAD_POLICIES:
                raise ValueError(f"{option} must be one of {BAD_POLICIES}, got {getattr(self, option)!r}")
        if self.frame_tolerance is not None and int(self.frame_tolerance) < 0:
            raise ValueError(f"frame_tolerance must be >= 0, got {self.frame_tolerance}")
        if self.threshold_m is not None and not float(self.threshold_m) > 0:
            raise ValueError(f"threshold must be > 0 metres, got {self.threshold_m}")
        if isinstance(self.cities, str):
            self.cities = [city for city in self.cities.split(",") if city]


@dataclass
class SkipLog:
    """Counts of files left out of a dataset, by reason, with a few example paths."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, path: str | Path) -> None:
        """Record that `path` was skipped for `reason` (e.g. 'bad_name', 'bad_image')."""
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(printable_path(path))

    def as_extra(self) -> dict:
        """The `extra` entries of a PlaceDataset: {'skipped': {reason: n}, 'skipped_examples': {...}}."""
        return {"skipped": dict(self.counts), "skipped_examples": dict(self.examples)}


def is_utf8_name(path: Path) -> bool:
    """False when the file name holds bytes that are not valid UTF-8 (surrogate-escaped by Python)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_folder(folder: Path, what: str) -> Path:
    """Return `folder` if it is a directory, else raise DatasetError naming it."""
    if not folder.is_dir():
        raise DatasetError(f"{printable_path(folder)}: {what} folder does not exist")
    return folder


def filter_bad_names(paths: Iterable[Path], on_bad_name: str, skips: SkipLog) -> list[Path]:
    """Drop (policy 'skip', counted) or refuse (policy 'error') files whose names are not UTF-8."""
    kept = []
    for path in paths:
        if is_utf8_name(path):
            kept.append(path)
        elif on_bad_name == "skip":
            skips.add("bad_name", path)
        else:
            raise DatasetError(
                f"{printable_path(path)}: file name is not valid UTF-8 "
                "(rename it, or pass on_bad_name='skip' / --on-bad-name skip)"
            )
    return kept


def path_inside(root: Path, relative: str, source: Path) -> Path:
    """`root / relative`, refusing absolute paths and '..' that leave `root`.

    `source` is the metadata file the path was read from; it is named in the error.
    """
    text = str(relative).strip().replace("\\", "/")
    if not text:
        raise DatasetError(f"{printable_path(source)}: empty image path")
    candidate = Path(os.path.normpath(root / text))
    root_norm = Path(os.path.normpath(root))
    if Path(text).is_absolute() or not (candidate == root_norm or root_norm in candidate.parents):
        raise DatasetError(
            f"{printable_path(source)}: image path {text!r} points outside the dataset root {printable_path(root)}"
        )
    return candidate


def require_unique(paths: Sequence[Path], source: Path) -> None:
    """DatasetError naming `source` and the first repeated path if any path occurs twice."""
    seen: set[Path] = set()
    for path in paths:
        if path in seen:
            raise DatasetError(f"{printable_path(source)}: duplicate image path {printable_path(path)}")
        seen.add(path)


def require_nonempty(paths: Sequence[Path], what: str, source: Path) -> None:
    """DatasetError naming `source` when a split has no images of one kind."""
    if len(paths) == 0:
        raise DatasetError(f"{printable_path(source)}: no {what} images (empty split)")


def require_existing(paths: Sequence[Path], source: Path) -> None:
    """DatasetError naming the metadata file and the first listed image that is not on disk."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DatasetError(
            f"{printable_path(source)}: {len(missing)} listed image(s) not found, first: {printable_path(missing[0])}"
        )


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; DatasetError naming the file if it is missing or lacks columns."""
    if not path.is_file():
        raise DatasetError(f"{printable_path(path)}: file does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required if name not in columns]
            if missing:
                raise DatasetError(f"{printable_path(path)}: missing column(s) {missing}; found {columns}")
            return [{(key or "").strip(): (value or "").strip() for key, value in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{printable_path(path)}: not a readable CSV file ({error})") from error


def parse_float(text: str, source: Path, column: str) -> float:
    """float(text) or a DatasetError naming the file, column and value."""
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{printable_path(source)}: column {column!r} holds {text!r}, not a number") from None


def parse_bool(text: str, source: Path, column: str) -> bool:
    """'True'/'False'/'1'/'0' (any case) -> bool, else DatasetError naming the file and column."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise DatasetError(f"{printable_path(source)}: column {column!r} holds {text!r}, not a boolean")


def resolve_user_path(typed: str | Path, root: Path) -> Path:
    """A path the user typed (a flag or a config option), relative to the working folder.

    When nothing exists there, the same relative path under the dataset `root` is used if it
    exists, so a bare name such as `summer` or `gt.npz` still finds the dataset's own folder or
    file. Otherwise the path as typed is returned, for the error message to name.
    """
    path = Path(typed)
    if path.is_absolute() or path.exists():
        return path
    inside = Path(root) / path
    return inside if inside.exists() else path


def find_subfolder(root: Path, candidates: Sequence[str], chosen: str | None, what: str) -> Path:
    """The folder named by the user (`chosen`, see resolve_user_path), else the first of
    `candidates` that exists under root."""
    if chosen:
        return require_folder(resolve_user_path(chosen, root), what)
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"{printable_path(root)}: no {what} folder (looked for {list(candidates)}; name it with --{what}-folder)"
    )
