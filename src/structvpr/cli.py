"""The `structvpr` command: builds one parser from the modules in `structvpr.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module in structvpr.commands. Each module has register(subparsers) and run(args).
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "synth": "synth",
    "segment": "segment",
    "train": "train",
    "partition": "partition",
    "evaluate": "evaluate",
    "convert-gt": "convert_gt",
    "index": "index",
    "query": "query",
    "export": "export",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with one subparser per command that imports cleanly."""
    parser = argparse.ArgumentParser(
        prog="structvpr",
        description="StructVPR++ visual place recognition: train, evaluate, index and export "
        "RGB descriptors distilled from segmentation structure.",
    )
    from structvpr.version import __version__

    parser.add_argument("--version", action="version", version=f"structvpr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"structvpr.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith("structvpr.commands"):
                continue  # command not available in this build
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("structvpr: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Our errors name the file and the problem; print one line, no traceback.
        if getattr(args, "traceback", False):
            raise
        print(f"structvpr {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
