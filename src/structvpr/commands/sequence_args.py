"""The sequence options of `structvpr evaluate` and `structvpr query` (argument code only: the
matching itself is `structvpr.sequence`)."""

from __future__ import annotations

import argparse

from structvpr.commands import positive_int
from structvpr.sequence.settings import DEFAULT_CANDIDATES, DEFAULT_CONTRAST_WINDOW


def add_sequence_arguments(parser: argparse.ArgumentParser) -> None:
    """`evaluate --sequence-length L [L ...] [--sequence-candidates K] [--sequence-contrast-window N]`."""
    group = parser.add_argument_group("sequences (images in travel order: sequence layout, frame-ordered names)")
    group.add_argument(
        "--sequence-length",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="L",
        help="match each query by the best straight path through its last L frames (one line per L); "
        "see docs/sequences.md",
    )
    group.add_argument(
        "--sequence-candidates",
        type=positive_int,
        default=None,
        metavar="K",
        help="only paths through each frame's K nearest map places (default: every place)",
    )
    _add_contrast_argument(group)


def add_query_sequence_arguments(parser: argparse.ArgumentParser) -> None:
    """`query --sequence [--sequence-length L] [--sequence-candidates K] [--sequence-contrast-window N]`."""
    group = parser.add_argument_group("sequences")
    group.add_argument(
        "--sequence",
        action="store_true",
        help="the query images are one route in travel order (sorted names): match each by the best "
        "straight path through its last --sequence-length frames; adds a confidence column",
    )
    group.add_argument("--sequence-length", type=positive_int, default=10, metavar="L", help="frames per path")
    group.add_argument(
        "--sequence-candidates",
        type=positive_int,
        default=DEFAULT_CANDIDATES,
        metavar="K",
        help="paths must pass through one of a frame's K nearest map places",
    )
    _add_contrast_argument(group)


def _add_contrast_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--sequence-contrast-window",
        type=int,
        default=DEFAULT_CONTRAST_WINDOW,
        metavar="N",
        help="subtract the mean descriptor of the route's previous N frames (0: off; helps across "
        "seasons, costs on routes recorded in the map's own conditions; docs/sequences.md)",
    )
