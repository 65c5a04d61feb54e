"""`structvpr partition`: group the training samples with the frozen Stage I teacher and student."""

from __future__ import annotations

import argparse

from structvpr.commands import add_common_arguments, add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `partition` subcommand."""
    parser = subparsers.add_parser(
        "partition",
        help="rank true positives with both Stage I models, assign groups G1..G4 and weights",
        description="With the frozen seg-branch (teacher) and RGB model (student), rank every training "
        "image's best true positive, assign groups G1..G4 (threshold structvpr.group_threshold_k) "
        "and weights; write partition.npz (ranks, groups, weights, sample paths, checkpoint "
        "sha256), groups.png, and the teacher cache Stage II reads.",
    )
    add_config_arguments(parser, "YAML config file (the one used for Stage I)", "structvpr.group_threshold_k=5")
    parser.add_argument("--teacher", help="seg-branch model file (default <output_dir>/stage1-seg/model.pt)")
    parser.add_argument("--student", help="RGB model file (default <output_dir>/stage1-rgb/model.pt)")
    parser.add_argument("--output", help="output folder (default <output_dir>/partition)")
    parser.add_argument("--output-dir", help="run folder root (train.output_dir)")
    parser.add_argument("--device", default="cpu", help="torch device for the two models (default cpu)")
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the partition and print where the results are."""
    from structvpr.config import load_config
    from structvpr.train.partition_run import run_partition

    overrides = list(args.overrides) + ([f"train.output_dir={args.output_dir}"] if args.output_dir else [])
    config = load_config(args.config, overrides)
    outputs = run_partition(
        config, teacher_path=args.teacher, student_path=args.student, output_dir=args.output, device=args.device
    )
    print(f"structvpr partition: {outputs.partition_file}, plot {outputs.plot_file}, teacher cache {outputs.cache_dir}")
    return 0
