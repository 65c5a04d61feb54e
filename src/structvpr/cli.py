"""The `structvpr` command: parses the arguments first, then imports only the chosen command.

`structvpr --help` and argument errors never import torch: the top-level parser lists every
command from the table below, and only the command named on the command line has its module
imported (its `register` adds the real options). Each command module imports heavy libraries
inside `run`, so its own `--help` is fast too.
"""

from __future__ import annotations

import argparse
import sys

# Subcommand name -> (module in structvpr.commands, one-line help). Each module has
# register(subparsers) and run(args); the help here is what `structvpr --help` shows.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on the synthetic town and write a report"),
    "synth": ("synth", "render the synthetic town (UTM layout + exact label maps + metadata.csv)"),
    "segment": ("segment", "write Cityscapes label maps for every image of a dataset (resumable)"),
    "train": ("train", "train a branch (stage 1), the student (stage 2) or everything (all)"),
    "partition": ("partition", "rank true positives with both Stage I models, assign groups G1..G4 and weights"),
    "evaluate": ("evaluate", "Recall@N of a model on one or more datasets"),
    "convert-gt": ("convert_gt", "rewrite a trusted VPR-Bench ground-truth .npy (object array) as a pickle-free .npz"),
    "index": ("index", "build a place index (FAISS) from a folder of map images"),
    "query": ("query", "find the top-k map images of query images in a place index"),
    "export": ("export", "export a model's global descriptor to ONNX or TorchScript"),
}


def chosen_command(argv: list[str]) -> str | None:
    """The command named in `argv` (its first word that is not an option), or None."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser. The command chosen in `argv` gets its full options; every other command
    is listed with its help only (all get full options when `argv` is None, e.g. for docs)."""
    from structvpr.version import __version__

    parser = argparse.ArgumentParser(
        prog="structvpr",
        description="StructVPR++ visual place recognition: train, evaluate, index and export "
        "RGB descriptors distilled from segmentation structure.",
    )
    parser.add_argument("--version", action="version", version=f"structvpr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = chosen_command(argv) if argv is not None else None
    for name, (module_name, summary) in COMMANDS.items():
        if argv is None or name == chosen:
            _register(subparsers, module_name)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def _register(subparsers: argparse._SubParsersAction, module_name: str) -> None:
    import importlib

    module = importlib.import_module(f"structvpr.commands.{module_name}")
    module.register(subparsers)


def _error_line(error: BaseException) -> str:
    """One line for an error: OSErrors name their path and reason, without Python's `[Errno N]`."""
    if isinstance(error, OSError) and error.strerror:
        path = error.filename if error.filename is not None else ""
        other = f" -> {error.filename2}" if error.filename2 is not None else ""
        reason = error.strerror[0].lower() + error.strerror[1:]
        return f"{path}{other}: {reason}" if path != "" else reason
    return str(error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if not hasattr(args, "run"):  # a listed command whose module did not register (cannot happen normally)
        parser.error(f"command {args.command!r} is not available")
    from structvpr.progress import configure_command_output

    configure_command_output()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("structvpr: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:
        # Our errors name the file and the problem; file-system errors name the path. One line.
        if getattr(args, "traceback", False):
            raise
        print(f"structvpr {args.command}: error: {_error_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
