"""The `structvpr` entry point: fast start (no torch before parsing), one-line errors, quiet logs."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from structvpr.cli import COMMANDS, build_parser, chosen_command, main

SRC = Path(__file__).resolve().parents[1] / "src"

_IMPORTED_AFTER = """
import sys
from structvpr.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "sklearn", "faiss", "lightning", "torchvision") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


def _heavy_modules_after(*arguments: str) -> tuple[list[str], float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_AFTER, *arguments],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    seconds = time.perf_counter() - start
    line = next(line for line in result.stderr.splitlines() if line.startswith("HEAVY:"))
    return [name for name in line[len("HEAVY:") :].split(",") if name], seconds


@pytest.mark.parametrize(
    "arguments",
    [
        ("--help",),
        ("bogus",),
        ("index", "build", "--help"),
        ("index", "build", "map"),  # missing --model and --out
        ("query", "q.jpg", "--index", "i", "-k", "0"),
        ("export", "--help"),
        ("synth", "--places"),
    ],
)
def test_help_and_argument_errors_import_no_heavy_library(arguments: tuple[str, ...]) -> None:
    """Issue 13 item 11: every command took 6-10 s before printing, importing torch and sklearn first."""
    heavy, seconds = _heavy_modules_after(*arguments)
    assert heavy == [], f"{arguments} imported {heavy}"
    assert seconds < 5  # the benchmark measures the real figure; this only catches a regression


def test_the_top_level_help_lists_every_command_with_its_registered_help(capsys: pytest.CaptureFixture) -> None:
    full = build_parser()  # every module registered: their help must match the fast table
    choices = full._subparsers._group_actions[0]._choices_actions  # type: ignore[union-attr]
    assert {action.dest: action.help for action in choices} == {name: help for name, (_, help) in COMMANDS.items()}
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert chosen_command(["--version"]) is None and chosen_command(["query", "x"]) == "query"


def test_file_system_errors_are_one_line_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 13 item 5: `--out` that is an existing file gave a NotADirectoryError traceback."""
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep")
    assert main(["synth", "--out", str(a_file), "--places", "1"]) == 1
    error = capsys.readouterr().err
    assert (
        error == f"structvpr synth: error: {a_file}: exists and is not a folder; give a folder for the dataset folder\n"
    )
    assert a_file.read_text() == "keep"
    assert main(["synth", "--out", str(a_file / "town"), "--places", "1"]) == 1
    assert f"{a_file / 'town'}: cannot create the dataset folder: {a_file} is a file" in capsys.readouterr().err


def test_status_of_a_quick_step_writes_nothing_to_a_log() -> None:
    from structvpr.progress import status

    log = io.StringIO()
    with status("loading model m.pt", stream=log, interval=10):
        pass
    assert log.getvalue() == ""


def test_a_long_step_in_a_log_writes_plain_lines_at_the_interval() -> None:
    """Issue 13 item 12: tqdm bars wrote hundreds of carriage-return updates per line to log files."""
    from structvpr.progress import progress_bar, status

    log = io.StringIO()
    with status("exporting", stream=log, interval=0.1):
        time.sleep(0.35)
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 5 and lines[0].startswith("exporting ... (still running")
    assert lines[-1].startswith("exporting: done in") and "\r" not in log.getvalue()

    log = io.StringIO()
    with progress_bar(1000, "describing map", "img", stream=log) as bar:
        for _ in range(1000):
            bar.update(1)  # a fast loop: no line at all before the 10 s interval
    assert log.getvalue() == ""
    bar = progress_bar(10, "describing map", "img", stream=log)
    bar.interval = 0.05
    for _ in range(10):
        time.sleep(0.02)
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 6 and "\r" not in log.getvalue()
    assert lines[-1].startswith("describing map: 10/10 img (100 %)") and lines[-1].endswith("done")


def test_lightning_advertisements_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13 item 13: Lightning's litlogger tip appeared in every training run's output. A real
    Trainer is built without and with the CLI's output set-up."""
    import logging

    import lightning.pytorch as pl

    from structvpr.progress import configure_command_output

    def trainer_messages() -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
        return caplog.text

    loggers = [
        logging.getLogger(name)
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    ]
    saved = [list(logger.filters) for logger in loggers]
    try:
        for logger in loggers:
            logger.filters.clear()
        assert "litlogger" in trainer_messages()  # the advertisement is real...
        configure_command_output()
        messages = trainer_messages()
        assert "litlogger" not in messages  # ...and the CLI drops it
        assert "GPU available: False" in messages  # while Lightning's own information stays
    finally:
        for logger, filters in zip(loggers, saved, strict=True):
            logger.filters[:] = filters


def test_the_names_spelled_out_for_fast_parsing_match_the_library() -> None:
    from structvpr import export
    from structvpr.commands import export as export_command
    from structvpr.commands import synth as synth_command
    from structvpr.commands import train as train_command
    from structvpr.data import synth
    from structvpr.train import pipeline

    assert export_command.FORMATS == export.FORMATS
    assert tuple(synth.CONDITIONS) == synth_command.CONDITIONS
    assert synth_command.DATABASE_CONDITION == synth.DATABASE_CONDITION
    assert tuple(synth.DEFAULT_QUERY_CONDITIONS) == synth_command.DEFAULT_QUERY_CONDITIONS
    assert train_command.ABLATION_CHOICES == pipeline.DEFAULT_ABLATIONS


def test_train_ablations_default_to_all_and_apply_to_stage_all_only(capsys: pytest.CaptureFixture) -> None:
    """`structvpr train --stage all` trained every ablation and three more teachers, with no way to
    ask for the student and the same-steps baseline alone (found running the Nordland protocol)."""
    parser = build_parser()
    assert parser.parse_args(["train", "--stage", "all"]).ablations is None  # run_all's default: all
    assert parser.parse_args(["train", "--stage", "all", "--ablations"]).ablations == []
    chosen = parser.parse_args(["train", "--stage", "all", "--ablations", "no_weights", "variants"])
    assert chosen.ablations == ["no_weights", "variants"]
    assert main(["train", "--stage", "1", "--ablations", "no_weights"]) == 1
    assert capsys.readouterr().err == "structvpr train: error: --ablations applies to --stage all only, not --stage 1\n"
