"""Experiment configuration: dataclasses, YAML loading, dotted command-line overrides, YAML dump.

A config file is a YAML mapping with the sections `data`, `model`, `train` and `structvpr`; every key
is optional and falls back to the dataclass default. Overrides use dotted paths and YAML values:
`train.epochs=3`, `model.image_size=[128,64]`, `data.val.split=null`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from structvpr.dataclass_dict import ConfigError, from_plain_dict, to_plain_dict
from structvpr.io_utils import atomic_write_text
from structvpr.model import ModelConfig

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DatasetSource",
    "StructVPRConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]


@dataclass
class DatasetSource:
    """Where one dataset split lives and how to open it with `structvpr.data.layouts.open_dataset`.

    `index_range` = [start, end) keeps only those positions of the sorted database and query lists
    (for frame-aligned sequences: frames), so one sequence can give disjoint train and val parts.
    """

    path: str = ""
    layout: str = "auto"
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    index_range: list[int] | None = None

    def __post_init__(self) -> None:
        """Check `options` against what the layout reads, so a typo fails before training starts."""
        import difflib

        from structvpr.data.layouts import ReadOptions, check_layout_options

        known = [option.name for option in dataclasses.fields(ReadOptions)]
        for option in self.options:
            if option not in known:
                close = difflib.get_close_matches(str(option), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
                raise ValueError(f"options: unknown dataset option {option!r} for {self.path or 'a dataset'}{hint}")
        try:
            check_layout_options(self.layout, self.options)
        except ValueError as error:
            raise ValueError(f"options: {error}") from None


@dataclass
class DataConfig:
    """Training and validation data."""

    train: DatasetSource = field(default_factory=DatasetSource)
    val: DatasetSource = field(default_factory=DatasetSource)
    train_positive_m: float = 10.0  # images of one place are within this distance (metres)
    val_threshold_m: float | None = None  # None = the validation split's own threshold
    recall_values: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    num_workers: int = 2
    val_batch_size: int = 32


@dataclass
class TrainConfig:
    """Optimisation, Lightning Trainer and run-folder settings shared by both stages."""

    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    places_per_batch: int = 16  # P
    images_per_place: int = 4  # K
    batches_per_epoch: int | None = None  # None = one pass over the training places
    loss: str = "multi_similarity"  # multi_similarity | triplet
    ms_alpha: float = 1.0
    ms_beta: float = 50.0
    ms_base: float = 0.0
    miner_epsilon: float = 0.1
    triplet_margin: float = 0.1
    seed: int = 0
    accelerator: str = "auto"  # cpu | gpu | cuda | mps | auto
    devices: int | str | list[int] = 1  # a count, a list of indices, or "auto" (all)
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp | ...
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | 16-mixed | bf16-mixed
    deterministic: bool | str = "warn"  # True fails on GPU ops without a deterministic kernel
    output_dir: str = "runs/structvpr"
    resume: bool = False
    overwrite: bool = False  # allow a fresh run over a folder that has checkpoints
    validate_before_training: bool = True
    log_every_n_steps: int = 10
    inject_nan_at_step: int | None = None  # fault injection for tests of the non-finite-loss guard


@dataclass
class StructVPRConfig:
    """StructVPR++ settings used by the seg branch, the partition and Stage II (METHOD.md defaults)."""

    merge_table: str = "structural-6"
    variant: str = "lmc"  # mlp | lc | mc | lmc
    exclude_dynamic: bool = True
    lambda_g: float = 1.0
    lambda_l: float = 0.5
    lambda_a: float = 0.1
    group_threshold_k: int = 1
    group_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.0])
    stage2_epochs: int | None = None  # None = train.epochs
    stage2_lr: float | None = None  # None = train.lr
    # label-specific features (model/label_features.py)
    label_levels: list[int] = field(default_factory=lambda: [1, 2, 3])  # backbone levels (strides 8, 16, 32)
    label_dim: int = 128
    label_pooling: str = "avg"  # avg | gem
    label_min_area: float = 0.005  # area fraction under which a class counts as absent
    label_descriptor_weight: float = 1.0  # balance of [global ; label] in the teacher's retrieval descriptor
    mask_head: bool = False  # beyond the paper: predict the masks A from RGB
    lambda_mask: float = 0.1
    # partition and sample weights (train/partition.py)
    weight_function: str = "groups"  # groups | smooth
    smooth_temperature: float = 1.0
    partition_search_depth: int = 100
    # Stage II (train/stage2.py)
    weight_normalization: str = "batch"  # how per-sample weights are normalised in a batch
    uniform_weights: bool = False  # ablation: every sample weight = 1
    always_project: bool = False  # learned projection even when student and teacher dims match


@dataclass
class Config:
    """The whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    structvpr: StructVPRConfig = field(default_factory=StructVPRConfig)


def config_from_dict(values: dict | None) -> Config:
    """A Config from a nested mapping (as read from YAML or stored in a checkpoint)."""
    return from_plain_dict(Config, values or {})


def config_to_dict(config: Config) -> dict:
    """Nested plain dict (lists, not tuples) of a Config: safe for YAML and weights_only checkpoints."""
    return to_plain_dict(config)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Set `a.b=value` entries (value parsed as YAML) into a nested mapping, in place; returns it."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like section.key=value")
        dotted, raw = override.split("=", 1)
        parts = [p for p in dotted.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {override!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: value is not valid YAML ({error})") from error
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return values


def load_config(yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when `yaml_path` is None) and apply dotted overrides.

    Raises ConfigError naming the file and the key for unreadable YAML, unknown keys or bad types.
    """
    values: dict = {}
    source = "config"
    if yaml_path is not None:
        path = Path(yaml_path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping with data/model/train/structvpr")
        values = loaded or {}
    apply_overrides(values, list(overrides or []))
    try:
        return config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    except (TypeError, ValueError) as error:  # a dataclass __post_init__ refusing a value
        raise ConfigError(f"{source}: {error}") from None


def dump_config(config: Config, path: str | Path) -> None:
    """Write `config` as YAML (atomically); `load_config(path)` gives it back."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
