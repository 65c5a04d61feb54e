"""Finding the image files of a folder: the one listing every reader and command uses."""

from __future__ import annotations

from pathlib import Path

from structvpr.data.place_dataset import DatasetError, printable_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# Label maps live in parallel `<folder>_labels/` trees (see structvpr.data.label_maps); a town whose
# labels were replaced keeps its exact maps in `<folder>_labels_exact/`.
LABEL_FOLDER_SUFFIX = "_labels"
EXACT_LABEL_FOLDER_SUFFIX = LABEL_FOLDER_SUFFIX + "_exact"


def is_label_folder(name: str) -> bool:
    """True for a folder name of a label-map tree (`*_labels` or `*_labels_exact`), never images."""
    return name.endswith(LABEL_FOLDER_SUFFIX) or name.endswith(EXACT_LABEL_FOLDER_SUFFIX)


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix (any case) is an image format structvpr decodes."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: str | Path, what: str = "image", recursive: bool = True) -> list[Path]:
    """Sorted image files under `folder`, leaving out label-map folders (`*_labels`, `*_labels_exact`).

    `what` names the folder in the error (e.g. 'database', 'map image'): DatasetError when the
    folder does not exist. An existing folder without images gives an empty list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{printable_path(folder)}: {what} folder does not exist")
    pattern = "**/*" if recursive else "*"
    return sorted(
        path
        for path in folder.glob(pattern)
        if is_image_file(path) and not any(is_label_folder(part) for part in path.relative_to(folder).parts[:-1])
    )
