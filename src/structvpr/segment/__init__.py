"""Segmentation for StructVPR++: label maps (Cityscapes trainIds), merge tables, SLME encoding.

Heavy parts (the networks, transformers) are imported lazily by `build_segmenter`.
"""

from structvpr.data.label_maps import LabelMapError, read_label_map, write_label_map
from structvpr.segment.cache import CacheSummary, build_label_cache, default_compute_threads
from structvpr.segment.classes import (
    BUILTIN_TABLES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    DEFAULT_TABLE,
    IGNORE_ID,
    LabelMapValueError,
    MergeTable,
    MergeTableError,
    load_merge_table,
    make_merge_table,
)
from structvpr.segment.segmenter import Segmenter
from structvpr.segment.segmenters import build_segmenter
from structvpr.segment.slme import level_masks, slme_one_hot

__all__ = [
    "BUILTIN_TABLES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "DEFAULT_TABLE",
    "IGNORE_ID",
    "CacheSummary",
    "LabelMapError",
    "LabelMapValueError",
    "MergeTable",
    "MergeTableError",
    "Segmenter",
    "build_label_cache",
    "build_segmenter",
    "default_compute_threads",
    "level_masks",
    "load_merge_table",
    "make_merge_table",
    "read_label_map",
    "slme_one_hot",
    "write_label_map",
]
