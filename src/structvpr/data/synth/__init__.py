"""The synthetic town: procedural street scenes with exact Cityscapes trainIds and poses.

`generate_town` writes a UTM-layout dataset (database = day, queries = other conditions) with
label maps and metadata.csv; `render_preview` writes a contact sheet. See docs/synthetic_town.md.
"""

from structvpr.data.synth.camera import Camera, PoseJitter
from structvpr.data.synth.conditions import (
    CONDITIONS,
    DATABASE_CONDITION,
    DEFAULT_QUERY_CONDITIONS,
    Condition,
)
from structvpr.data.synth.preview import render_preview
from structvpr.data.synth.render import Frame, render_frame
from structvpr.data.synth.visits import Visit, plan_visits, render_visit
from structvpr.data.synth.world import Place, Town, build_town
from structvpr.data.synth.writer import METADATA_COLUMNS, SynthResult, generate_town

__all__ = [
    "CONDITIONS",
    "DATABASE_CONDITION",
    "DEFAULT_QUERY_CONDITIONS",
    "METADATA_COLUMNS",
    "Camera",
    "Condition",
    "Frame",
    "Place",
    "PoseJitter",
    "SynthResult",
    "Town",
    "Visit",
    "build_town",
    "generate_town",
    "plan_visits",
    "render_frame",
    "render_preview",
    "render_visit",
]
