"""Model files: a trained RGB VPRNet with everything needed to use it, loaded without running code.

A model file is a `torch.save` of one plain dict (tensors, strings, numbers, lists) and is read back
with `torch.load(..., weights_only=True)`, so a file crafted to run code on unpickling is refused
before anything executes. Keys: format, format_version, model_config (`to_plain_dict(ModelConfig)`),
state_dict, descriptor_dim, preprocessing (image_size [H, W], mean, std, resize), training_data
(dataset names), code_version, created (UTC ISO time), metadata (JSON-safe copy of the caller's dict).
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from structvpr.dataclass_dict import from_plain_dict, to_plain_dict
from structvpr.io_utils import atomic_torch_save, unpickling_refusal_reason
from structvpr.model.vpr_net import ModelConfig, VPRNet, build_model

MODEL_FORMAT = "structvpr-model"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model_config", "state_dict", "descriptor_dim", "preprocessing")


class ModelFileError(ValueError):
    """A file is missing, unsafe or not a structvpr model file; the message names the path."""


def _json_safe(value: Any) -> Any:
    """A copy of `value` made only of dict/list/str/int/float/bool/None (Paths etc. become strings),
    so it loads under weights_only=True and can be printed as JSON."""
    return json.loads(json.dumps(value, default=str))


def _training_data_names(metadata: dict[str, Any]) -> list[str]:
    names = [metadata[key] for key in ("train_dataset", "val_dataset", "training_data") if metadata.get(key)]
    flat: list[str] = []
    for name in names:
        flat.extend(str(item) for item in (name if isinstance(name, (list, tuple)) else [name]))
    return flat


def save_model_file(model: VPRNet, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write `model` (config, weights, preprocessing, descriptor dimension, training data names,
    code version) and `metadata` to `path` atomically. Weights are copied to the CPU first."""
    from structvpr.version import __version__

    metadata = _json_safe(dict(metadata or {}))
    config: ModelConfig = model.config
    assert config.mean is not None and config.std is not None  # filled in by ModelConfig.__post_init__
    content = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": to_plain_dict(config),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "descriptor_dim": int(model.descriptor_dim),
        "preprocessing": {
            "image_size": list(config.image_size),
            "mean": list(config.mean),
            "std": list(config.std),
            "resize": "bilinear",
            "channels": "RGB",
        },
        "training_data": _training_data_names(metadata),
        "code_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "metadata": metadata,
    }
    atomic_torch_save(content, path)


def _unreadable_reason(path: Path, head: bytes, error: BaseException) -> str:
    """Why torch could not read a file that starts like a PyTorch file, in one whole sentence."""
    import zipfile

    if head[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        size = path.stat().st_size
        return (
            f"truncated or damaged model file ({size} bytes, and its zip archive has no end): copy or download it again"
        )
    first_line = str(error).splitlines()[0] if str(error) else ""
    if len(first_line) > 200:
        first_line = first_line[:200].rsplit(" ", 1)[0] + " ..."
    return f"not a structvpr model file (torch cannot read it: {type(error).__name__}: {first_line})"


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checked content dict of a model file (no network is built).

    Raises ModelFileError naming `path` when it is missing, is not a torch file, holds anything but
    plain data (e.g. a pickle that would run code: refused, nothing executed) or lacks the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file does not exist")
    with open(path, "rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive; older torch / plain pickles start with the PROTO opcode.
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise ModelFileError(f"{path}: not a structvpr model file (not a PyTorch file: it starts with {head!r})")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only's unpickler stops at the first global it does not allow (os.system, exec...).
        raise ModelFileError(
            f"{path}: refused to load: the file contains Python objects or code, not "
            f"only weights and plain data ({unpickling_refusal_reason(error)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as error:
        raise ModelFileError(f"{path}: {_unreadable_reason(path, head, error)}") from None
    if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        hint = (
            " (a seg-branch teacher: only RGB models are model files)"
            if isinstance(found, str) and "seg-branch" in found
            else ""
        )
        raise ModelFileError(f"{path}: not a structvpr model file (format {found!r}, expected {MODEL_FORMAT!r}){hint}")
    if int(content.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {content['format_version']} is newer than "
            f"this structvpr reads ({FORMAT_VERSION}); upgrade structvpr"
        )
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        raise ModelFileError(f"{path}: model file lacks {', '.join(missing)}")
    return content


def load_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[VPRNet, dict[str, Any]]:
    """(VPRNet in eval mode, info dict) from a model file written by `save_model_file`.

    The info dict holds the file's metadata plus preprocessing, descriptor_dim, training_data,
    code_version and created. Loads with weights_only=True; bad files raise ModelFileError.
    """
    content = read_model_file(path, map_location)
    try:
        config = from_plain_dict(ModelConfig, content["model_config"], "model_config")
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: invalid model config ({error})") from None
    # The state_dict follows: never read or require ImageNet weights here.
    model = build_model(config, load_pretrained_weights=False)
    try:
        model.load_state_dict(content["state_dict"], strict=True)
    except RuntimeError as error:
        raise ModelFileError(
            f"{path}: weights do not fit the stored model config ({str(error).splitlines()[0][:300]})"
        ) from None
    if int(content["descriptor_dim"]) != model.descriptor_dim:
        raise ModelFileError(
            f"{path}: descriptor_dim {content['descriptor_dim']} disagrees with the model's {model.descriptor_dim}"
        )
    model.eval()
    info = dict(content.get("metadata") or {})
    for key in ("preprocessing", "descriptor_dim", "training_data", "code_version", "created"):
        info[key] = content.get(key)
    return model, info
