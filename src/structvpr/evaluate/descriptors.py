"""Batched descriptor extraction that streams into a memory-mapped file (no Python list of arrays)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from structvpr.data.images import BadImageError, image_transform, load_rgb

BAD_IMAGE_POLICIES = ("error", "zeros")

# What describes a batch: an nn.Module (run in eval mode under inference_mode) or any callable
# float32 [B, 3, H, W] -> [B, D], such as StructVPRModel.describe_batch for an ONNX model.
DescriptorNetwork = Callable[[torch.Tensor], torch.Tensor | np.ndarray]


@dataclass(frozen=True)
class DescribeOptions:
    """How images are turned into descriptors: preprocessing, batching and where the model runs.

    image_size: (H, W) every image is resized to; mean, std: per-channel normalisation. None takes
    the model's own (`model.config` of a VPRNet or SegBranch, see `for_model`); a model without a
    config needs all three. batch_size: images per forward pass. device: where a PyTorch model runs
    (a plain callable gets CPU batches). num_workers: image-decoding processes (0: this one).
    on_bad_image: "error" raises BadImageError naming the file; "zeros" gives its row zeros and warns.
    progress: show a progress bar.
    """

    image_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_size: int = 32
    device: str | torch.device = "cpu"
    num_workers: int = 0
    on_bad_image: str = "error"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.image_size is not None:
            object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {self.on_bad_image!r}")

    def for_model(self, model: object) -> DescribeOptions:
        """These options with image_size, mean and std filled in from `model.config` where None;
        ValueError when one is still missing (a model without a config)."""
        config = getattr(model, "config", None)
        filled = dataclasses.replace(
            self,
            image_size=self.image_size if self.image_size is not None else getattr(config, "image_size", None),
            mean=self.mean if self.mean is not None else getattr(config, "mean", None),
            std=self.std if self.std is not None else getattr(config, "std", None),
        )
        missing = [name for name in ("image_size", "mean", "std") if getattr(filled, name) is None]
        if missing:
            raise ValueError(
                f"DescribeOptions: {', '.join(missing)} not given and the model has no config to take them from"
            )
        return filled


class ImagePathDataset(Dataset):
    """Decoded, resized and normalised images: item i -> (float32 [3, H, W], is_valid).

    With on_bad_image="zeros" an undecodable file gives a zero image and is_valid=False, so the
    caller can blank its descriptor; with "error" it raises BadImageError naming the file.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        image_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        on_bad_image: str = "error",
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        self.paths = [Path(p) for p in paths]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.transform = image_transform(self.image_size, mean, std)
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.transform(load_rgb(self.paths[index])), True
        except BadImageError:
            if self.on_bad_image == "error":
                raise
            return torch.zeros(3, *self.image_size), False


def _open_output(out_file: str | Path | None, shape: tuple[int, int]) -> tuple[np.memmap, Path | None]:
    """A writable float32 memmap: a .npy beside `out_file` (renamed into place at the end), or an
    anonymous temporary file that disappears when the array is garbage-collected."""
    if out_file is None:
        return np.memmap(
            tempfile.TemporaryFile(prefix="structvpr-descriptors-"), dtype=np.float32, mode="w+", shape=shape
        ), None
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".tmp", dir=out_file.parent)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(tmp_name, mode="w+", dtype=np.float32, shape=shape), Path(tmp_name)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)  # a full disk must not leave the temporary file behind
        raise


def describe_batches(
    network: DescriptorNetwork,
    batches: Iterable[torch.Tensor],
    count: int,
    *,
    device: str | torch.device = "cpu",
    allocate: Callable[[tuple[int, int]], np.ndarray] | None = None,
    progress: bool = False,
    desc: str = "descriptors",
) -> np.ndarray:
    """The one image -> descriptor loop: float32 [count, D], row i from the i-th input row.

    network: an nn.Module (run in eval mode under inference_mode, its training mode restored after;
    each batch moved to `device`) or any callable, e.g. an ONNX Runtime session wrapper, that maps
    a CPU batch to [B, D] (tensor or array). batches: float32 [B, C, H, W] in order, `count` rows in
    all. allocate(shape) gives the writable output once D is known (default: an in-memory array);
    rows are written batch by batch, so a memory map keeps memory bounded.
    """
    module = network if isinstance(network, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    output: np.ndarray | None = None
    start = 0
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
                rows = module(batch.to(device, non_blocking=True)) if module is not None else network(batch)
                rows = rows.float().cpu().numpy() if isinstance(rows, torch.Tensor) else rows.astype(np.float32)
                if start + len(rows) > count:
                    raise ValueError(f"describe_batches: more than the {count} rows announced")
                if output is None:
                    output = (allocate or _in_memory)((count, rows.shape[1]))
                output[start : start + len(rows)] = rows
                start += len(rows)
    finally:
        if module is not None:
            module.train(was_training)
    if start != count or output is None:
        raise ValueError(f"describe_batches: {start} rows described, {count} announced")
    return output


def _in_memory(shape: tuple[int, int]) -> np.ndarray:
    return np.empty(shape, np.float32)


def compute_descriptors(
    model: DescriptorNetwork,
    paths: Sequence[str | Path],
    options: DescribeOptions | None = None,
    *,
    out_file: str | Path | None = None,
    desc: str = "descriptors",
) -> np.ndarray:
    """Descriptors float32 [N, D] of the images at `paths`, row i for paths[i].

    `model` maps [B, 3, H, W] to [B, D]; `options` (default DescribeOptions(): the model's own
    preprocessing) say how images are resized, normalised, batched and decoded. Rows go batch by
    batch into a memory map: a .npy at `out_file` (written to a temporary name and renamed when
    complete, returned as np.memmap) or an anonymous temp file. `desc` labels the progress bar.
    """
    if len(paths) == 0:
        raise ValueError("compute_descriptors: no image paths given")
    options = (options or DescribeOptions()).for_model(model)
    assert options.image_size is not None and options.mean is not None and options.std is not None
    dataset = ImagePathDataset(paths, options.image_size, options.mean, options.std, options.on_bad_image)
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.num_workers,
        pin_memory=torch.device(options.device).type == "cuda",
    )
    out_path = None if out_file is None else Path(out_file)
    bad_rows: list[int] = []
    temporary: list[Path] = []

    def images() -> Iterator[torch.Tensor]:
        start = 0
        for batch, valid in loader:
            bad_rows.extend(start + int(i) for i in np.flatnonzero(~valid.numpy()))
            start += len(batch)
            yield batch

    def allocate(shape: tuple[int, int]) -> np.ndarray:
        output, tmp_path = _open_output(out_path, shape)
        temporary.extend([tmp_path] if tmp_path is not None else [])
        return output

    try:
        output = describe_batches(
            model,
            images(),
            len(dataset),
            device=options.device,
            allocate=allocate,
            progress=options.progress,
            desc=desc,
        )
        output[bad_rows] = 0.0
        assert isinstance(output, np.memmap)
        output.flush()
        if out_path is not None:
            del output
            os.replace(temporary.pop(), out_path)
            output = np.load(out_path, mmap_mode="r")
    finally:
        for tmp_path in temporary:
            tmp_path.unlink(missing_ok=True)
    if bad_rows:
        first = dataset.paths[bad_rows[0]]
        warnings.warn(f"{len(bad_rows)} undecodable images got zero descriptors, first: {first}", stacklevel=2)
    return output
