"""The sequence options of `structvpr evaluate` and `structvpr query`, kept beside the matcher."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from structvpr.sequence.settings import DEFAULT_CANDIDATES, DEFAULT_CONTRAST_WINDOW


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_sequence_arguments(parser: argparse.ArgumentParser) -> None:
    """`evaluate --sequence-length L [L ...] [--sequence-candidates K]`."""
    group = parser.add_argument_group("sequences (images in travel order: sequence layout, frame-ordered names)")
    group.add_argument(
        "--sequence-length",
        type=_positive_int,
        nargs="+",
        default=None,
        metavar="L",
        help="match each query by the best straight path through its last L frames (one line per L); "
        "see docs/sequences.md",
    )
    group.add_argument(
        "--sequence-candidates",
        type=_positive_int,
        default=None,
        metavar="K",
        help="only paths through each frame's K nearest map places (default: every place)",
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


def run_sequences(model: Any, datasets: Sequence[Any], args: argparse.Namespace, preprocessing: dict[str, Any]) -> None:
    """Print sequence Recall@N lines for every dataset (and write JSON to --out); preprocessing:
    image_size, mean and std of the model."""
    from structvpr.sequence.evaluate import evaluate_model_sequences

    for dataset in datasets:
        evaluate_model_sequences(
            model,
            dataset,
            args.sequence_length,
            **preprocessing,
            recall_values=args.recall_values,
            candidates=args.sequence_candidates,
            contrast_window=args.sequence_contrast_window,
            batch_size=args.batch_size,
            device=args.device,
            num_workers=args.num_workers,
            out_dir=args.out,
            progress=not args.quiet,
        )


def add_query_sequence_arguments(parser: argparse.ArgumentParser) -> None:
    """`query --sequence [--sequence-length L] [--sequence-candidates K]`."""
    group = parser.add_argument_group("sequences")
    group.add_argument(
        "--sequence",
        action="store_true",
        help="the query images are one route in travel order (sorted names): match each by the best "
        "straight path through its last --sequence-length frames; adds a confidence column",
    )
    group.add_argument("--sequence-length", type=_positive_int, default=10, metavar="L", help="frames per path")
    group.add_argument(
        "--sequence-candidates",
        type=_positive_int,
        default=DEFAULT_CANDIDATES,
        metavar="K",
        help="paths must pass through one of a frame's K nearest map places",
    )
    _add_contrast_argument(group)


def match_route(descriptors: Any, index: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """(SearchResult of the top -k places by sequence score, confidence float32 [Q]) for query
    descriptors float32 [Q, D] in travel order against a PlaceIndex (`query --sequence`)."""
    from structvpr.index.place_index import SearchResult
    from structvpr.sequence.matcher import match_sequences

    # The index's own query defaults live in params; --nprobe / --ef-search override them here.
    index.params.update(
        {key: value for key, value in (("nprobe", args.nprobe), ("ef_search", args.ef_search)) if value}
    )
    matches = match_sequences(
        descriptors,
        index,
        args.sequence_length,
        candidates=args.sequence_candidates,
        contrast_window=args.sequence_contrast_window,
        top_n=args.k,
    )
    return SearchResult(matches.scores, matches.ids, matches.positions), matches.confidence
