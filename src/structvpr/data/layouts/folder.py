"""A plain folder of unlabelled images: retrieval only (no coordinates, no ground truth).

`<root>/database/` and `<root>/queries/` (or the folders named by the user) when present;
otherwise every image under root is a database image and there are no queries.
"""

from __future__ import annotations

from pathlib import Path

from structvpr.data.layouts._common import (
    ReadOptions,
    SkipLog,
    filter_bad_names,
    list_images,
    require_folder,
    require_nonempty,
)
from structvpr.data.place_dataset import PlaceDataset


def read_folder(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read unlabelled images into a PlaceDataset whose `is_labelled` is False."""
    root = require_folder(Path(root), "dataset")
    skips = SkipLog()
    database_folder = root / (options.database_folder or "database")
    query_folder = root / (options.query_folder or "queries")
    if options.database_folder or database_folder.is_dir():
        database_paths = list_images(require_folder(database_folder, "database"), "database")
        query_paths = list_images(query_folder, "query") if options.query_folder or query_folder.is_dir() else []
    else:
        database_folder = root
        # Label maps live in parallel `<folder>_labels/` trees; they are not places to search.
        database_paths = [
            path
            for path in list_images(root, "dataset")
            if not any(part.endswith("_labels") for part in path.relative_to(root).parts[:-1])
        ]
        query_paths = []
    database_paths = filter_bad_names(database_paths, options.on_bad_name, skips)
    query_paths = filter_bad_names(query_paths, options.on_bad_name, skips)
    require_nonempty(database_paths, "database", database_folder)
    return PlaceDataset(
        name=options.name or root.name,
        split=split or "unlabelled",
        root=root,
        database_paths=database_paths,
        query_paths=query_paths,
        threshold_m=float(options.threshold_m or 25.0),
        extra={"layout": "folder", **skips.as_extra()},
    )
