"""Which images the dataset holds (visits) and how one visit is rendered, deterministically."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from structvpr.data.synth.camera import (
    DEFAULT_JITTER,
    Camera,
    PoseJitter,
    camera_for_visit,
)
from structvpr.data.synth.conditions import CONDITIONS, get_condition
from structvpr.data.synth.dynamic import dynamic_objects
from structvpr.data.synth.render import Frame, render_frame
from structvpr.data.synth.world import Place, Town


@dataclass(frozen=True)
class Visit:
    """One image to render: a place seen under a condition on a given traversal."""

    place: Place
    role: str  # "database" or "queries"
    condition: str
    visit: int  # traversal number; 0 is the database traversal
    same_condition: bool  # a query captured in the database condition


def plan_visits(
    town: Town, database_condition: str, query_conditions: tuple[str, ...], same_condition_fraction: float, seed: int
) -> list[Visit]:
    """Database visit + one query per query condition for every place, plus same-condition
    queries (database condition, new traversal) for about `same_condition_fraction` of places."""
    for name in (database_condition, *query_conditions):
        get_condition(name)
    chosen = np.random.default_rng([seed, 5]).random(len(town.places)) < same_condition_fraction
    visits = []
    for place in town.places:
        visits.append(Visit(place, "database", database_condition, 0, False))
        for number, name in enumerate(query_conditions, start=1):
            visits.append(Visit(place, "queries", name, number, name == database_condition))
        if chosen[place.place_id] and database_condition not in query_conditions:
            visits.append(Visit(place, "queries", database_condition, len(query_conditions) + 1, True))
    return visits


def _visit_rng(visit: Visit, seed: int) -> np.random.Generator:
    condition_index = list(CONDITIONS).index(visit.condition)
    return np.random.default_rng([seed, 7, visit.place.place_id, condition_index, visit.visit])


def visit_camera(
    visit: Visit, image_size: tuple[int, int], seed: int, jitter: PoseJitter = DEFAULT_JITTER, hfov_deg: float = 80.0
) -> Camera:
    """The camera `render_visit` uses for `visit` (drawn first from the same generator)."""
    return camera_for_visit(visit.place, _visit_rng(visit, seed), image_size, jitter, hfov_deg)


def render_visit(
    town: Town,
    visit: Visit,
    image_size: tuple[int, int],
    seed: int,
    jitter: PoseJitter = DEFAULT_JITTER,
    hfov_deg: float = 80.0,
) -> Frame:
    """Render `visit`; the pose jitter, cars, people and camera response come from a generator
    seeded by (seed, place, condition, traversal), so every image can be re-rendered alone."""
    rng = _visit_rng(visit, seed)
    camera = camera_for_visit(visit.place, rng, image_size, jitter, hfov_deg)
    dynamic = dynamic_objects(town, camera, rng)
    return render_frame(town, camera, get_condition(visit.condition), dynamic, rng)


def image_name(visit: Visit, camera: Camera) -> str:
    """UTM-layout file name: @east@north@zone@letter@lat@lon@pano_id@tile@heading@pitch@roll@
    height@timestamp@note@.jpg with east/north in metres (east = x, north = y of the town)."""
    pano_id = f"synth{visit.place.place_id:05d}{visit.condition}{visit.visit}"
    fields = [
        "",
        f"{camera.x:.2f}",
        f"{camera.y:.2f}",
        "99",
        "T",
        "",
        "",
        pano_id,
        "",
        f"{camera.heading_deg:.1f}",
        "0",
        "0",
        f"{camera.height:.2f}",
        "",
        visit.condition,
        "",
    ]
    return "@".join(fields) + ".jpg"
