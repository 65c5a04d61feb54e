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
    require_folder,
    require_nonempty,
    resolve_user_path,
)
from structvpr.data.listing import list_images
from structvpr.data.place_dataset import PlaceDataset


def read_folder(root: Path, split: str | None, options: ReadOptions) -> PlaceDataset:
    """Read unlabelled images into a PlaceDataset whose `is_labelled` is False."""
    root = require_folder(Path(root), "dataset")
    skips = SkipLog()
    database_folder = resolve_user_path(options.database_folder, root) if options.database_folder else root / "database"
    query_folder = resolve_user_path(options.query_folder, root) if options.query_folder else root / "queries"
    if options.database_folder or database_folder.is_dir():
        database_paths = list_images(require_folder(database_folder, "database"), "database")
        query_paths = list_images(query_folder, "query") if options.query_folder or query_folder.is_dir() else []
    else:
        database_folder = root
        database_paths = list_images(root, "dataset")  # label-map folders are left out
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
