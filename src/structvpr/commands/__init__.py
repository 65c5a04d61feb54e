"""One module per subcommand; each defines register(subparsers) and run(args) -> int.

register() must set `run` as the parser default: `parser.set_defaults(run=run)`, and should add
`--traceback` (store_true) through `add_common_arguments`.
"""

from __future__ import annotations

import argparse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments every subcommand accepts."""
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on error")


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """`--config FILE` and repeatable `--set KEY=VALUE` (collected in `args.overrides`)."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {set_example}",
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
