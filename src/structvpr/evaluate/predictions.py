"""Prediction images: the query and its top-N database images in a row, correct green, wrong red."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from structvpr.data.images import BadImageError, load_rgb
from structvpr.io_utils import atomic_write

CORRECT_COLOUR = (0, 200, 0)
WRONG_COLOUR = (220, 0, 0)
QUERY_COLOUR = (255, 255, 255)
NO_POSITIVE_COLOUR = (255, 200, 0)  # a query without positives: its predictions cannot be judged
BORDER_PX = 6
GAP_PX = 4


def _thumbnail(path: Path, height: int, colour: tuple[int, int, int], caption: str) -> Image.Image:
    """The image at `path` scaled to `height`, framed in `colour`, with a caption in the corner."""
    try:
        image = load_rgb(path)
    except BadImageError:
        image = Image.new("RGB", (height, height), (40, 40, 40))  # keep the row; the file is named in the CSV
    width = max(1, round(image.width * height / image.height))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    framed = Image.new("RGB", (width + 2 * BORDER_PX, height + 2 * BORDER_PX), colour)
    framed.paste(image, (BORDER_PX, BORDER_PX))
    draw = ImageDraw.Draw(framed)
    draw.rectangle((BORDER_PX, BORDER_PX, BORDER_PX + 8 * len(caption) + 4, BORDER_PX + 14), fill=(0, 0, 0))
    draw.text((BORDER_PX + 2, BORDER_PX + 1), caption, fill=colour)
    return framed


def prediction_row(
    query_path: Path, predicted_paths: Sequence[Path], correct: Sequence[bool] | None, height: int = 192
) -> Image.Image:
    """One RGB image: query (white frame) then predictions (green = correct, red = wrong;
    orange when the query has no positive, `correct` None)."""
    tiles = [_thumbnail(Path(query_path), height, QUERY_COLOUR, "query")]
    for rank, path in enumerate(predicted_paths, start=1):
        colour = NO_POSITIVE_COLOUR if correct is None else (CORRECT_COLOUR if correct[rank - 1] else WRONG_COLOUR)
        tiles.append(_thumbnail(Path(path), height, colour, str(rank)))
    row = Image.new("RGB", (sum(t.width for t in tiles) + GAP_PX * (len(tiles) - 1), tiles[0].height), (255, 255, 255))
    x = 0
    for tile in tiles:
        row.paste(tile, (x, 0))
        x += tile.width + GAP_PX
    return row


def save_prediction_images(
    query_paths: Sequence[Path],
    database_paths: Sequence[Path],
    predictions: np.ndarray,
    positives_per_query: Sequence[np.ndarray],
    out_dir: str | Path,
    num_preds: int,
    height: int = 192,
) -> list[Path]:
    """Write `<out_dir>/<query index>.jpg` for every query: the query and its top `num_preds`
    predictions (database indices int [Nq, >= num_preds], best first). Returns the written paths."""
    out_dir = Path(out_dir)
    written = []
    width = max(5, len(str(len(query_paths))))
    for query_index, query_path in enumerate(query_paths):
        top = [int(i) for i in predictions[query_index, :num_preds]]
        positives = positives_per_query[query_index]
        correct = [bool(np.isin(i, positives)) for i in top] if len(positives) else None
        row = prediction_row(query_path, [database_paths[i] for i in top], correct, height)
        path = out_dir / f"{query_index:0{width}d}.jpg"
        with atomic_write(path, "wb") as handle:
            row.save(handle, format="JPEG", quality=90)
        written.append(path)
    return written
