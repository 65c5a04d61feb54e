"""`structvpr train`: Stage I (one branch), Stage II, or the whole StructVPR++ recipe."""

from __future__ import annotations

import argparse

from structvpr.commands import add_common_arguments, add_config_arguments

# structvpr.train.pipeline.DEFAULT_ABLATIONS, spelled out so that argument parsing never imports torch
# (a test checks that the two agree).
ABLATION_CHOICES = ("no_weights", "no_label_features", "no_alignment", "variants")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a branch (stage 1), the student (stage 2) or everything (all)",
        description="Train with a YAML config (see configs/) and dotted overrides. Lightning runs it: "
        "--devices/--strategy/--num-nodes/--accelerator make the same command run DDP.",
    )
    add_config_arguments(parser, "YAML config file (default: built-in defaults)", "train.epochs=3 (repeatable)")
    parser.add_argument(
        "--stage",
        choices=("1", "2", "all"),
        default="1",
        help="1: Stage I of --branch; 2: Stage II distillation; all: 1 -> partition -> 2",
    )
    parser.add_argument("--branch", choices=("rgb", "seg"), default="rgb", help="Stage I branch (default rgb)")
    parser.add_argument(
        "--ablations",
        nargs="*",
        choices=ABLATION_CHOICES,
        metavar="NAME",
        help="--stage all: the student ablations to train besides the student and the same-steps RGB "
        f"baseline, any of {', '.join(ABLATION_CHOICES)} (default: all of them; no names: none)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoints/last.ckpt")
    parser.add_argument("--output-dir", help="run folder root (train.output_dir)")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--devices", help="Lightning devices: a count, a list like 0,1, or auto")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp, ddp_spawn, fsdp, auto")
    parser.add_argument("--num-nodes", type=int, help="Lightning num_nodes")
    parser.add_argument("--accelerator", help="Lightning accelerator: cpu, gpu, cuda, mps, auto")
    parser.add_argument("--device", help="one device, e.g. cpu, cuda, cuda:1 (sets accelerator and devices)")
    parser.add_argument("--precision", help="Lightning precision, e.g. 32-true, 16-mixed, bf16-mixed")
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def _device_overrides(device: str) -> list[str]:
    """`cpu` -> accelerator cpu, 1 device; `cuda:1` -> accelerator gpu on device index 1."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return ["train.accelerator=cpu", "train.devices=1"]
    if kind in ("cuda", "gpu"):
        return ["train.accelerator=gpu", f"train.devices=[{int(index)}]" if index else "train.devices=1"]
    if kind == "mps":
        return ["train.accelerator=mps", "train.devices=1"]
    raise ValueError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")


def _devices_value(devices: str) -> str:
    """`2` -> 2, `0,1` -> [0,1], `auto` -> auto (as a YAML value)."""
    return f"[{devices}]" if "," in devices else devices


def command_overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides implied by the command-line flags (applied after --set)."""
    overrides = list(args.overrides)
    if args.device:
        overrides += _device_overrides(args.device)
    for flag, key in (
        ("output_dir", "output_dir"),
        ("epochs", "epochs"),
        ("strategy", "strategy"),
        ("num_nodes", "num_nodes"),
        ("accelerator", "accelerator"),
        ("precision", "precision"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"train.{key}={value}")
    if args.devices is not None:
        overrides.append(f"train.devices={_devices_value(args.devices)}")
    if args.resume:
        overrides.append("train.resume=true")
    return overrides


def run(args: argparse.Namespace) -> int:
    """Load the config and run the chosen stage."""
    from structvpr.config import load_config
    from structvpr.locks import run_folder_lock

    if args.ablations is not None and args.stage != "all":
        raise ValueError(f"--ablations applies to --stage all only, not --stage {args.stage}")
    config = load_config(args.config, command_overrides(args))
    with run_folder_lock(config.train.output_dir):  # one training at a time writes these run folders
        return _run_stage(args, config)


def _run_stage(args: argparse.Namespace, config) -> int:
    if args.stage == "1":
        from structvpr.train.stage1 import run_stage1

        run_dir = run_stage1(config, args.branch)
    elif args.stage == "2":
        from structvpr.train.stage2 import run_stage2

        run_dir = run_stage2(config)
    else:
        from structvpr.train.pipeline import run_all

        run_dir = run_all(config, ablations=args.ablations)
    print(f"structvpr train: run folder {run_dir}")
    return 0
