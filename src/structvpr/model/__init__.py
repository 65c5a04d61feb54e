"""Models: backbones (4 feature levels), aggregators and VPRNet (backbone + aggregation + L2 norm)."""

from structvpr.model.aggregators import (
    AGGREGATOR_NAMES,
    GeM,
    MixVPR,
    NetVLAD,
    build_aggregator,
)
from structvpr.model.backbones import BACKBONE_NAMES, MultiLevelBackbone, build_backbone
from structvpr.model.vpr_net import FEATURE_STRIDES, ModelConfig, VPRNet, build_model

__all__ = [
    "AGGREGATOR_NAMES",
    "BACKBONE_NAMES",
    "FEATURE_STRIDES",
    "GeM",
    "MixVPR",
    "ModelConfig",
    "MultiLevelBackbone",
    "NetVLAD",
    "VPRNet",
    "build_aggregator",
    "build_backbone",
    "build_model",
]
