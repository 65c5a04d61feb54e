"""Contact sheet: the same places under several conditions, RGB above coloured labels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from structvpr.data.cityscapes import colorize_train_ids
from structvpr.data.synth.conditions import CONDITIONS
from structvpr.data.synth.visits import Visit, render_visit
from structvpr.data.synth.world import build_town
from structvpr.io_utils import atomic_write_bytes


def render_preview(
    out_path: str | Path,
    seed: int = 0,
    num_places: int = 2,
    conditions: tuple[str, ...] = tuple(CONDITIONS),
    image_size: tuple[int, int] = (150, 200),
    town_places: int = 40,
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
) -> Path:
    """Write a PNG contact sheet and return its path.

    Columns are conditions; for each of `num_places` places (spread over the town of
    `town_places` places that `generate_town` makes with the same seed and split_fractions) one row
    of RGB images (each a new traversal: new pose jitter, cars, people) and one row of their label
    maps in Cityscapes colours. image_size is (H, W) of each tile in pixels.
    """
    town = build_town(town_places, seed, split_fractions)
    num_places = min(num_places, len(town.places))
    chosen = np.linspace(0, len(town.places) - 1, num_places + 2)[1:-1].round().astype(int)
    caption = 14
    height, width = image_size
    sheet = Image.new("RGB", (width * len(conditions), (2 * height + caption) * num_places), "white")
    draw = ImageDraw.Draw(sheet)
    for row, place_index in enumerate(chosen):
        place = town.places[int(place_index)]
        top = row * (2 * height + caption)
        for col, name in enumerate(conditions):
            frame = render_visit(town, Visit(place, "queries", name, col, False), image_size, seed)
            draw.text((col * width + 3, top + 1), f"place {place.place_id} {name}", fill="black")
            sheet.paste(Image.fromarray(frame.rgb), (col * width, top + caption))
            sheet.paste(Image.fromarray(colorize_train_ids(frame.labels)), (col * width, top + caption + height))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    atomic_write_bytes(out_path, buffer.getvalue())
    return Path(out_path)
