"""`structvpr evaluate DATASET...`: Recall@N of a model file or an untrained ImageNet model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from structvpr.commands import add_common_arguments
from structvpr.commands.dataset_args import add_dataset_arguments, dataset_from_args
from structvpr.commands.sequence_args import add_sequence_arguments

if TYPE_CHECKING:
    from structvpr.data.place_dataset import PlaceDataset
    from structvpr.evaluate.descriptors import DescribeOptions, DescriptorNetwork


# = structvpr.model's BACKBONE_NAMES and AGGREGATOR_NAMES, without importing torch to parse (a test checks)
BACKBONE_CHOICES = ("efficientnet_lite0", "resnet18", "resnet50")
AGGREGATOR_CHOICES = ("gem", "netvlad", "mixvpr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Recall@N of a model on one or more datasets",
        description="Compute descriptors for the database and query images of each DATASET, search "
        "exactly with FAISS and print one Recall@N line per dataset (queries without a "
        "positive are excluded and counted). Use a trained model file (--model) or build "
        "an untrained one from ImageNet weights (--backbone/--aggregator). Paths are relative to "
        "the working folder.",
    )
    parser.add_argument("datasets", nargs="+", type=Path, metavar="DATASET", help="dataset root(s)")
    add_dataset_arguments(parser)
    model_group = parser.add_argument_group("model")
    model_group.add_argument(
        "--model",
        default=None,
        help="what structvpr.load accepts: a model file (model.pt), a run folder, an exported .onnx "
        "file, or a built-in name such as imagenet-efficientnet_lite0-gem",
    )
    model_group.add_argument(
        "--backbone",
        choices=BACKBONE_CHOICES,
        default="efficientnet_lite0",
        help="without --model: backbone with ImageNet weights",
    )
    model_group.add_argument(
        "--aggregator",
        choices=AGGREGATOR_CHOICES,
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


def _build_model(args: argparse.Namespace) -> tuple[DescriptorNetwork, DescribeOptions]:
    """The model to evaluate (a PyTorch network, or `describe_batch` of an ONNX model) and how to
    describe images with it: --model through `structvpr.load`, else a network built from ImageNet
    weights; its preprocessing unless --image-size, and the run flags."""
    from structvpr.api import load
    from structvpr.evaluate.descriptors import DescribeOptions
    from structvpr.model.vpr_net import ModelConfig, build_model

    image_size = tuple(args.image_size) if args.image_size is not None else None
    run_options = {
        "batch_size": args.batch_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "progress": not args.quiet,
    }
    if args.model is not None:
        loaded = load(args.model, device=args.device)
        options = DescribeOptions(image_size or loaded.image_size, loaded.mean, loaded.std, **run_options)
        return loaded.network if loaded.network is not None else loaded.describe_batch, options
    config = ModelConfig(
        backbone=args.backbone,
        aggregator=args.aggregator,
        gem_p=args.gem_p,
        descriptor_dim=args.descriptor_dim,
        pretrained=not args.no_pretrained,
        **({"image_size": image_size} if image_size is not None else {}),
    )
    return build_model(config).to(args.device), DescribeOptions(**run_options)


def _evaluate_sequences(
    model: DescriptorNetwork, datasets: list[PlaceDataset], args: argparse.Namespace, options: DescribeOptions
) -> None:
    """Print sequence Recall@N lines for every dataset (and write JSON to --out)."""
    from structvpr.sequence.evaluate import evaluate_model_sequences

    for dataset in datasets:
        evaluate_model_sequences(
            model,
            dataset,
            args.sequence_length,
            options,
            recall_values=args.recall_values,
            candidates=args.sequence_candidates,
            contrast_window=args.sequence_contrast_window,
            out_dir=args.out,
        )


def run(args: argparse.Namespace) -> int:
    """Evaluate every dataset; returns 0, or raises an error naming the file and problem."""
    import contextlib

    from structvpr.evaluate.evaluate import evaluate_dataset
    from structvpr.locks import output_lock
    from structvpr.output_paths import check_output_folder

    if (args.save_descriptors or args.num_preds_to_save > 0) and args.out is None:
        raise ValueError("--save-descriptors and --num-preds-to-save need --out DIR")
    if args.out is not None:
        check_output_folder(args.out, "results folder")  # writable and not a file, before any work
    with output_lock(args.out) if args.out is not None else contextlib.nullcontext():
        datasets = [dataset_from_args(path, args) for path in args.datasets]  # fail before the model loads
        model, options = _build_model(args)
        if args.sequence_length:
            _evaluate_sequences(model, datasets, args, options)
            return 0
        for dataset in datasets:
            evaluate_dataset(
                model,
                dataset,
                options,
                recall_values=args.recall_values,
                out_dir=args.out,
                save_descriptors=args.save_descriptors,
                num_preds_to_save=args.num_preds_to_save,
            )
    return 0
