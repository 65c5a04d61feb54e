"""One module per subcommand; each defines register(subparsers) and run(args) -> int.

register() must set `run` as the parser default: `parser.set_defaults(run=run)`, and should add
`--traceback` (store_true) through `add_common_arguments`.
"""

from __future__ import annotations

import argparse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments every subcommand accepts."""
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on error")
