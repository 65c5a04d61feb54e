"""`structvpr query IMAGES --index DIR --model M -k 5`: the top-k map images of each query image."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from structvpr.commands import add_common_arguments, positive_int
from structvpr.commands.sequence_args import add_query_sequence_arguments

FORMATS = ("table", "json", "csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `query` subcommand."""
    parser = subparsers.add_parser(
        "query",
        help="find the top-k map images of query images in a place index",
        description="Describe each query image with the model and search the index built by "
        "`structvpr index build`. Prints rank, score (cosine similarity), map image and "
        "pose (when the map has poses).",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGES", help="query image files or folders")
    parser.add_argument("--index", type=Path, required=True, metavar="DIR", help="index folder")
    parser.add_argument(
        "--model", default=None, help="model file / run folder / .onnx (default: the one recorded in the index)"
    )
    parser.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="search even if --model is not the model the index was built with (scores are then not comparable)",
    )
    parser.add_argument("-k", type=positive_int, default=5, help="neighbours per query (at most the index size)")
    parser.add_argument("--nprobe", type=positive_int, default=None, help="IVF lists to visit (ivfflat, ivfpq)")
    parser.add_argument("--ef-search", type=positive_int, default=None, help="HNSW search breadth")
    parser.add_argument(
        "--rerank",
        type=positive_int,
        default=None,
        metavar="R",
        help="re-rank the top R approximate candidates with exact scores (ivfpq)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="write results here, not stdout")
    parser.add_argument(
        "--save-preds",
        type=Path,
        default=None,
        metavar="DIR",
        help="write one image per query: the query and its top-k map images",
    )
    parser.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="an undecodable query image stops the query naming it (error, default) or is left out and counted",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    add_query_sequence_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def _query_paths(items: list[Path]) -> list[Path]:
    from structvpr.data.listing import list_images

    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            paths.extend(list_images(item, "query image"))
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such query image or folder")
    if not paths:
        raise ValueError(f"no query images found in {', '.join(map(str, items))}")
    return paths


def result_rows(query_paths: list[Path], index, result, confidence=None) -> list[dict]:
    """One dict per (query, rank): query, rank, id, score, map_path and pose fields when present,
    and the query's sequence-match confidence when `confidence` (float [Q]) is given."""
    rows = []
    has_paths, has_poses = "paths" in index.metadata, "poses" in index.metadata
    for query_number, query_path in enumerate(query_paths):
        for rank in range(result.ids.shape[1]):
            position = int(result.positions[query_number, rank])
            if position < 0:
                continue
            row = {
                "query": str(query_path),
                "rank": rank + 1,
                "id": int(result.ids[query_number, rank]),
                "score": round(float(result.scores[query_number, rank]), 6),
            }
            if has_paths:
                row["map_path"] = str(index.metadata["paths"][position])
            if has_poses:
                east, north = (float(v) for v in index.metadata["poses"][position][:2])
                row["east"], row["north"] = east, north
            if confidence is not None:
                row["confidence"] = round(float(confidence[query_number]), 6)
            rows.append(row)
    return rows


def format_rows(rows: list[dict], fmt: str) -> str:
    """The rows as an aligned text table, a JSON list or CSV text."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=False))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) for line in cells]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Search and print (or write) the results; returns 0."""
    from structvpr.output_paths import check_output_file, check_output_folder

    if args.out is not None:
        check_output_file(args.out, "results file")
    if args.save_preds is not None:
        check_output_folder(args.save_preds, "prediction images folder")
    from structvpr.index.place_index import PlaceIndex
    from structvpr.io_utils import atomic_write_text
    from structvpr.model_source import model_fingerprint
    from structvpr.progress import status

    index = PlaceIndex.load(args.index)
    model_argument = args.model or index.info.get("model")
    if not model_argument:
        raise ValueError(f"{args.index}: the index records no model; pass --model")
    index.check_model(model_fingerprint(model_argument), str(model_argument), args.allow_model_mismatch)
    query_paths = _query_paths(args.images)
    from structvpr.api import load

    with status(f"loading model {model_argument}"):
        model = load(model_argument, device=args.device)
    if model.descriptor_dim != index.dim:
        raise ValueError(
            f"{model_argument}: descriptors have D = {model.descriptor_dim} but index {args.index} "
            f"holds D = {index.dim}: use the model the index was built with"
        )
    descriptors, query_paths = _describe_queries(model, query_paths, args.batch_size, args.on_bad_image)
    confidence = None
    if args.sequence:
        result, confidence = _match_route(descriptors, index, args)
    else:
        result = index.search(descriptors, k=args.k, nprobe=args.nprobe, ef_search=args.ef_search, rerank=args.rerank)
    text = format_rows(result_rows(query_paths, index, result, confidence), args.format)
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"wrote {len(query_paths)} queries x top-{args.k} to {args.out}")
    else:
        sys.stdout.write(text)
    if args.save_preds is not None:
        from structvpr.locks import output_lock

        with output_lock(args.save_preds):
            _save_prediction_images(query_paths, index, result, args.save_preds)
    return 0


def _match_route(descriptors, index, args: argparse.Namespace) -> tuple:
    """(SearchResult of the top -k places by sequence score, confidence float32 [Q]) for query
    descriptors float32 [Q, D] in travel order (`--sequence`)."""
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


def _describe_queries(model, paths: list[Path], batch_size: int, on_bad_image: str) -> tuple:
    """Descriptors of the readable query images and their paths; with on_bad_image="skip" the
    undecodable ones are left out and counted on stderr."""
    from structvpr.index.build import describe_images

    described = describe_images(
        model, paths, chunk_size=len(paths), batch_size=batch_size, on_bad_image=on_bad_image, progress=False
    )
    if described.skipped:
        print(
            f"skipped {len(described.skipped)} files: {len(described.skipped)} bad_image "
            f"(first: {described.skipped[0]})",
            file=sys.stderr,
        )
    if not described.image_numbers:
        raise ValueError(f"no readable query images left ({len(described.skipped)} skipped)")
    return described.descriptors, [paths[n] for n in described.image_numbers]


def _save_prediction_images(query_paths: list[Path], index, result, out_dir: Path) -> None:
    """`<out_dir>/<n>_<query stem>.jpg`: the query, then its top-k map images (unjudged: orange)."""
    from structvpr.evaluate.predictions import prediction_row
    from structvpr.io_utils import atomic_write

    if "paths" not in index.metadata:
        raise ValueError("--save-preds needs map image paths in the index (build it with `structvpr index build`)")
    root = Path(index.info.get("image_root", "."))
    width = max(4, len(str(len(query_paths))))
    for number, query_path in enumerate(query_paths):
        positions = [int(p) for p in result.positions[number] if p >= 0]
        map_paths = [root / str(index.metadata["paths"][p]) for p in positions]
        row = prediction_row(query_path, map_paths, None)
        with atomic_write(out_dir / f"{number:0{width}d}_{query_path.stem}.jpg", "wb") as handle:
            row.save(handle, format="JPEG", quality=90)
    print(f"wrote {len(query_paths)} prediction images to {out_dir}")
