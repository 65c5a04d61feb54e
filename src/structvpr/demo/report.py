"""The demo's report: results table, Recall@N curves, partition histogram, examples, timings, rerun line."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from structvpr.demo.settings import DemoRun, DemoSettings, held_out_source


def _label_examples(run: DemoRun, dataset, query_indices: list[int]) -> list[str]:
    """RGB | raw labels | merged labels for a few queries, saved as JPEGs; returns relative paths."""
    from PIL import Image

    from structvpr.data.label_maps import label_path_for
    from structvpr.segment.classes import load_merge_table
    from structvpr.segment.visualize import colorize

    table = load_merge_table(run.config.structvpr.merge_table)
    written = []
    for query_index in query_indices:
        image_path = dataset.query_paths[query_index]
        labels = np.asarray(Image.open(label_path_for(image_path)))
        tiles = [np.asarray(Image.open(image_path).convert("RGB")), colorize(labels), colorize(labels, table)]
        path = run.out_dir / "examples" / f"labels_q{query_index:04d}.jpg"
        Image.fromarray(np.concatenate(tiles, axis=1)).save(path, quality=90)
        written.append(str(path.relative_to(run.out_dir)))
    return written


def rerun_command(settings) -> str:
    """The `structvpr demo` command line that repeats a demo with the same settings in a new folder."""
    quick = DemoSettings.quick()
    base, words = (
        (quick, ["structvpr demo --quick"])
        if settings.image_size == quick.image_size
        else (DemoSettings(), ["structvpr demo"])
    )
    flags = {
        "places": "--places",
        "seed": "--seed",
        "stage1_epochs": "--stage1-epochs",
        "stage2_epochs": "--stage2-epochs",
        "segmenter": "--segmenter",
        "device": "--device",
    }
    for field, flag in flags.items():
        if getattr(settings, field) != getattr(base, field):
            words.append(f"{flag} {getattr(settings, field)}")
    others = [
        f.name
        for f in dataclasses.fields(settings)
        if f.name not in flags and getattr(settings, f.name) != getattr(base, f.name)
    ]
    if others:
        words.append(f"(and {', '.join(others)} as in demo.yaml)")
    return " ".join(words)


def stage_report(run: DemoRun) -> dict:
    """report.html + report.md: results table, Recall@N curves, partition histogram, examples, timings."""
    from structvpr.report.builder import (
        ReportFigure,
        ReportRow,
        ReportSection,
        plot_recall_curves,
        write_report,
    )
    from structvpr.report.demo_tables import examples_table, index_tables, plot_partition_groups, timings_table
    from structvpr.train.datamodule import open_source

    report_start = time.perf_counter()
    stages = run.state["stages"]
    train = stages["train"]["result"]
    rows = [
        ReportRow(
            method=row["model"],
            dataset=row["dataset"],
            split=row["split"],
            num_queries=row["queries"],
            num_database=row["database"],
            recalls={int(key[2:]): row[key] / 100.0 for key in row if key.startswith("R@")},
            note=str(row.get("notes", "")),
        )
        for row in train["rows"]
    ]
    plot_recall_curves(rows, run.out_dir / "recall_curves.png")
    plot_partition_groups(run.runs_dir / "partition" / "partition.npz", run.out_dir / "partition_groups.png")
    by_name = {row.method: row for row in rows}
    student = next((r for r in rows if r.method.startswith("StructVPR++ student")), None)
    baseline = by_name.get("RGB baseline (same Stage II steps, VPR loss only)")
    if student and baseline:
        gap = 100 * (student.recalls[1] - baseline.recalls[1])
        verdict = (
            f"The student is {'ahead of' if gap > 0 else 'NOT ahead of'} the RGB baseline trained for the "
            f"same Stage II steps from the same Stage I weights, on the test queries (mostly "
            f"cross-condition): R@1 {100 * student.recalls[1]:.1f} vs {100 * baseline.recalls[1]:.1f} "
            f"({gap:+.1f} points). This demo ran ONE seed (seed {run.settings.seed}); the multi-seed "
            "comparison is benchmarks/bench_method.py (docs/method.md)."
        )
    else:
        verdict = "The student or baseline row is missing from the results."
    evaluate = stages["evaluate"]["result"]
    dataset = open_source(held_out_source(run), "evaluation")
    example_figures = [
        ReportFigure(e["image"], f"query {e['query']}, {e['model']} top-5 (green = correct, red = wrong)", "photo")
        for e in evaluate["examples"]
    ]
    example_figures.sort(key=lambda f: f.path)
    label_figures = [
        ReportFigure(path, "RGB | Cityscapes labels | merged structural groups", "photo")
        for path in _label_examples(run, dataset, evaluate["queries"][:3])
    ]
    sections = [
        ReportSection("Recall@N", "", [ReportFigure("recall_curves.png", "Recall@N on the test split")]),
        ReportSection(
            "Group partition of the training samples",
            "G1 teacher right / student wrong, G2 both right, G3 both wrong, G4 teacher wrong / student right "
            "(weight 0).",
            [ReportFigure("partition_groups.png", "samples per group")],
        ),
        ReportSection(
            "Example queries: RGB baseline vs StructVPR++ student",
            evaluate["dataset"] + "\nQueries where the two models disagree on the top-1 come first "
            "(both directions), then random ones. The table gives each rank's cosine score and map image.",
            example_figures,
            [examples_table(evaluate["examples"])],
        ),
        ReportSection("Label maps", "Segmentation is used only in training.", label_figures),
        ReportSection(
            "Index and export",
            stages["export"]["result"]["summary"],
            tables=index_tables(stages["index"]["result"]),
        ),
        ReportSection("Timings", tables=[timings_table(stages, train.get("timings", {}), report_start)]),
        ReportSection(
            "Rerun",
            f"from scratch: {rerun_command(run.settings)}\n"
            f"resume or rebuild this report: structvpr demo --resume {run.out_dir}\n"
            "settings: demo.yaml; training config: config.yaml; student: student.pt "
            "(structvpr.load), student.onnx; index: index/ (structvpr query)",
        ),
    ]
    intro = (
        f"StructVPR++ demo on the synthetic town ({run.settings.places} places, seed {run.settings.seed}): "
        f"database = day, queries = dusk/night/winter/fog (+ some day). {verdict}"
    )
    write_report(run.out_dir, "structvpr demo report", rows, sections, intro)
    return {"verdict": verdict}
