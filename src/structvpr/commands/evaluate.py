"""`structvpr evaluate DATASET...`: Recall@N of a model file or an untrained ImageNet model."""

from __future__ import annotations

import argparse
from pathlib import Path

from structvpr.commands import add_common_arguments
from structvpr.data.layouts import add_dataset_arguments, dataset_from_args
from structvpr.model.aggregators import AGGREGATOR_NAMES
from structvpr.model.backbones import BACKBONE_NAMES
from structvpr.sequence.commands import add_sequence_arguments, run_sequences


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Recall@N of a model on one or more datasets",
        description="Compute descriptors for the database and query images of each DATASET, search "
        "exactly with FAISS and print one Recall@N line per dataset (queries without a "
        "positive are excluded and counted). Use a trained model file (--model) or build "
        "an untrained one from ImageNet weights (--backbone/--aggregator).",
    )
    parser.add_argument("datasets", nargs="+", type=Path, metavar="DATASET", help="dataset root(s)")
    add_dataset_arguments(parser)
    model_group = parser.add_argument_group("model")
    model_group.add_argument(
        "--model", type=Path, default=None, help="model file written by `structvpr train` (model.pt)"
    )
    model_group.add_argument(
        "--backbone",
        choices=BACKBONE_NAMES,
        default="efficientnet_lite0",
        help="without --model: backbone with ImageNet weights",
    )
    model_group.add_argument(
        "--aggregator",
        choices=AGGREGATOR_NAMES,
        default="gem",
        help="without --model: aggregation of the last feature map",
    )
    model_group.add_argument("--gem-p", type=float, default=3.0, help="without --model: GeM exponent")
    model_group.add_argument(
        "--descriptor-dim",
        type=int,
        default=None,
        help="without --model: FC to this dimension (random init; default none)",
    )
    model_group.add_argument(
        "--no-pretrained",
        action="store_true",
        help="without --model: random initialisation instead of ImageNet weights",
    )
    model_group.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="input size (default: the model's; 240 320 for a new model)",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--recall-values", type=int, nargs="+", default=[1, 5, 10, 20], metavar="N")
    run_group.add_argument("--batch-size", type=int, default=32)
    run_group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    run_group.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    run_group.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="write <dataset>_<split>.json and _predictions.csv here"
    )
    run_group.add_argument(
        "--save-descriptors", action="store_true", help="keep query/database descriptors as .npy in --out"
    )
    run_group.add_argument(
        "--num-preds-to-save",
        type=int,
        default=0,
        metavar="N",
        help="write one image per query with its top-N predictions to --out",
    )
    run_group.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sequence_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def _build_model(args: argparse.Namespace):
    """The model to evaluate: loaded from --model, else built from ImageNet weights."""
    from dataclasses import replace

    from structvpr.model.vpr_net import ModelConfig, build_model

    if args.model is not None:
        from structvpr.model.model_file import load_model_file

        model, _ = load_model_file(args.model, map_location="cpu")
        if args.image_size is not None:
            model.config = replace(model.config, image_size=tuple(args.image_size))
        return model
    options = {"image_size": tuple(args.image_size)} if args.image_size is not None else {}
    config = ModelConfig(
        backbone=args.backbone,
        aggregator=args.aggregator,
        gem_p=args.gem_p,
        descriptor_dim=args.descriptor_dim,
        pretrained=not args.no_pretrained,
        **options,
    )
    return build_model(config)


def run(args: argparse.Namespace) -> int:
    """Evaluate every dataset; returns 0, or raises an error naming the file and problem."""
    from structvpr.evaluate.evaluate import evaluate_dataset

    if (args.save_descriptors or args.num_preds_to_save > 0) and args.out is None:
        raise ValueError("--save-descriptors and --num-preds-to-save need --out DIR")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"{args.out}: --out must be a folder")
    datasets = [dataset_from_args(path, args) for path in args.datasets]  # fail before the model loads
    model = _build_model(args).to(args.device)
    if args.sequence_length:
        run_sequences(model, datasets, args)
        return 0
    for dataset in datasets:
        evaluate_dataset(
            model,
            dataset,
            recall_values=args.recall_values,
            batch_size=args.batch_size,
            device=args.device,
            num_workers=args.num_workers,
            out_dir=args.out,
            save_descriptors=args.save_descriptors,
            num_preds_to_save=args.num_preds_to_save,
            progress=not args.quiet,
        )
    return 0
