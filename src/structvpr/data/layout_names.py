"""Names of the dataset layouts and of the options each reads: plain data, cheap to import.

The command-line flags (`structvpr.commands.dataset_args`) take their choices from here without
importing the readers; `structvpr.data.layouts` checks options against LAYOUT_OPTIONS.
"""

from __future__ import annotations

# Layout -> the reading options (ReadOptions fields) it uses beyond COMMON_OPTIONS.
LAYOUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "utm": ("database_folder", "query_folder"),
    "msls": ("msls_queries", "cities"),
    "pitts": (),
    "gt_list": ("database_folder", "query_folder", "ground_truth", "pnv_name", "allow_pickle"),
    "sequence": ("database_folder", "query_folder", "frame_tolerance"),
    "gsv_cities": ("cities",),
    "folder": ("database_folder", "query_folder"),
}
LAYOUT_NAMES = tuple(LAYOUT_OPTIONS)
COMMON_OPTIONS = ("threshold_m", "on_bad_name", "on_bad_image", "name")

# Patch-NetVLAD dataset name -> stem of its ground-truth file in dataset_gt_files/.
PNV_GROUND_TRUTH: dict[str, str] = {
    "pitts30k": "pitts30k_test",
    "tokyo247": "tokyo247",
    "nordland": "nordland",
    "mapillarycph": "mapillarycph",
    "mapillarysf": "mapillarysf",
}
PNV_NAMES = tuple(PNV_GROUND_TRUTH)
