"""The demo's stages: town, label maps, training recipe, evaluation with examples, index and export."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from structvpr.demo.settings import BASELINE_RUN, STUDENT_RUN, DemoRun, held_out_source
from structvpr.evaluate.recall import search_top_k
from structvpr.io_utils import atomic_write_text


def stage_synth(run: DemoRun) -> dict:
    from structvpr.data.synth import generate_town

    settings = run.settings
    result = generate_town(run.town_dir, settings.places, seed=settings.seed, image_size=settings.image_size)
    return {"images": result.num_images if hasattr(result, "num_images") else None}


def network_input_size(image_size: tuple[int, int], scale: int = 2, multiple: int = 16) -> tuple[int, int]:
    """(H, W) for the segmentation network: `scale` x the image, rounded up to a multiple of 16 (ESPNetv2)."""
    return tuple(-(-side * scale // multiple) * multiple for side in image_size)


def replace_labels_with_segmenter(
    town_dir: Path, segmenter_name: str, image_size: tuple[int, int], device: str = "cpu"
) -> str:
    """Move the town's exact label maps to `<folder>_labels_exact/` and write the network's maps in
    their place (`<folder>_labels/`), so training sees what a real segmenter gives. Returns a summary."""
    from structvpr.data.label_maps import exact_label_path, label_path_for
    from structvpr.data.layouts import open_dataset
    from structvpr.segment.cache import build_label_cache
    from structvpr.segment.segmenters import build_segmenter

    paths = []
    for split in ("train", "val", "test"):
        dataset = open_dataset(town_dir, layout="utm", split=split)
        paths += list(dataset.database_paths) + list(dataset.query_paths)
    for path in paths:
        label = label_path_for(path)
        if label.is_file():
            exact = exact_label_path(label)
            exact.parent.mkdir(parents=True, exist_ok=True)
            label.replace(exact)
    segmenter = build_segmenter(segmenter_name, device=device, input_size=network_input_size(image_size))
    return build_label_cache(paths, segmenter, num_workers=0, progress=True).format()


def stage_labels(run: DemoRun) -> dict:
    """Exact labels come with the town; `espnetv2` replaces them with the real network's output."""
    if run.settings.segmenter == "exact":
        return {"segmenter": "exact synthetic labels"}
    summary = replace_labels_with_segmenter(
        run.town_dir, run.settings.segmenter, run.settings.image_size, run.settings.device
    )
    print(summary, flush=True)
    return {"segmenter": run.settings.segmenter, "summary": summary}


def stage_train(run: DemoRun) -> dict:
    """Stage I (seg + rgb) -> partition -> Stage II (+ ablations) -> Recall@N rows on the test split."""
    from structvpr.train.pipeline import run_all

    root = run_all(
        run.config,
        ablations=list(run.settings.ablations),
        device=run.settings.device,
        eval_sources=[held_out_source(run)],
    )
    report = json.loads((root / "report.json").read_text())
    return {"rows": report["rows"], "timings": report.get("timings", {})}


def _describe(run: DemoRun, run_name: str, dataset) -> np.ndarray:
    from structvpr.model.model_file import load_model_file
    from structvpr.train.pipeline import describe_dataset

    model, _ = load_model_file(run.runs_dir / run_name / "model.pt")
    return describe_dataset(model, dataset, run.config, run.settings.device)


def _choose_examples(top1_correct: dict[str, np.ndarray], with_positive: list[int], count: int, seed: int) -> list[int]:
    """Queries where baseline and student disagree on top-1 first (both directions), then random ones."""
    rng = np.random.default_rng(seed)
    baseline, student = top1_correct["baseline"], top1_correct["student"]
    disagree = [i for i in with_positive if baseline[i] != student[i]]
    rng.shuffle(disagree)
    rest = [i for i in with_positive if i not in set(disagree)]
    rng.shuffle(rest)
    return sorted((disagree + rest)[:count])


def stage_evaluate(run: DemoRun) -> dict:
    """Top-5 of baseline and student for example queries, as images (correct green, wrong red)."""
    from structvpr.evaluate.predictions import prediction_row
    from structvpr.train.datamodule import open_source

    dataset = open_source(held_out_source(run), "evaluation")
    positives = dataset.positives_per_query()
    with_positive = [i for i, p in enumerate(positives) if len(p)]
    predictions, top1_correct, top5_scores = {}, {}, {}
    for run_name, label in ((BASELINE_RUN, "baseline"), (STUDENT_RUN, "student")):
        descriptors = _describe(run, run_name, dataset)
        top5_scores[label], predictions[label] = search_top_k(
            descriptors[dataset.num_database :], descriptors[: dataset.num_database], 5
        )
        np.save(run.out_dir / f"top5_{label}.npy", predictions[label])
        top1_correct[label] = np.array(
            [bool(np.isin(top[0], p)) for top, p in zip(predictions[label], positives, strict=True)]
        )
    chosen = _choose_examples(top1_correct, with_positive, run.settings.num_examples, run.settings.seed)
    examples = []
    for label, top5 in predictions.items():
        for query_index in chosen:
            top = top5[query_index]
            correct = [bool(np.isin(i, positives[query_index])) for i in top]
            row = prediction_row(
                dataset.query_paths[query_index], [dataset.database_paths[i] for i in top], correct, height=96
            )
            path = run.out_dir / "examples" / f"q{query_index:04d}_{label}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            row.save(path, quality=90)
            examples.append(
                {
                    "query": query_index,
                    "model": label,
                    "image": str(path.relative_to(run.out_dir)),
                    "top1_correct": correct[0],
                    "query_name": Path(dataset.query_paths[query_index]).name,
                    "names": [Path(dataset.database_paths[i]).name for i in top],
                    "scores": [float(score) for score in top5_scores[label][query_index]],
                    "correct": correct,
                }
            )
    return {"examples": examples, "dataset": dataset.summary(), "queries": chosen}


def stage_index(run: DemoRun) -> dict:
    """A FAISS index of the student's test-database descriptors, saved, and a few queries answered."""
    from structvpr.index.place_index import PlaceIndex
    from structvpr.train.datamodule import open_source

    dataset = open_source(held_out_source(run), "evaluation")
    descriptors = _describe(run, STUDENT_RUN, dataset)
    database, queries = descriptors[: dataset.num_database], descriptors[dataset.num_database :]
    start = time.perf_counter()
    index = PlaceIndex.build(
        database,
        kind="flat",
        metadata={"poses": dataset.database_coords, "paths": np.array([str(p) for p in dataset.database_paths])},
    )
    build_seconds = time.perf_counter() - start
    index.save(run.out_dir / "index")
    result = index.search(queries[: run.settings.num_examples], k=5)
    lines, answers = [], []
    for number, query_path in enumerate(dataset.query_paths[: run.settings.num_examples]):
        best = int(result.positions[number][0])
        lines.append(f"{Path(query_path).name} -> {Path(dataset.database_paths[best]).name}")
        answers.append(
            [Path(query_path).name, Path(dataset.database_paths[best]).name, float(result.scores[number][0])]
        )
    atomic_write_text(run.out_dir / "index_queries.txt", "\n".join(lines) + "\n")
    disk = sum(path.stat().st_size for path in (run.out_dir / "index").iterdir())
    return {
        "index": "index",
        "kind": index.kind,
        "params": index.params,
        "size": len(index),
        "queries": lines,
        "answers": answers,
        "build_seconds": build_seconds,
        "memory_bytes": index.memory_bytes(),
        "disk_bytes": disk,
    }


def stage_export(run: DemoRun) -> dict:
    """ONNX export of the student, checked against PyTorch on test images."""
    from structvpr.export import export_model
    from structvpr.model.model_file import load_model_file
    from structvpr.train.datamodule import open_source

    student_file = run.runs_dir / STUDENT_RUN / "model.pt"
    shutil.copyfile(student_file, run.out_dir / "student.pt")  # the reusable RGB model, beside its ONNX export
    model, _ = load_model_file(student_file)
    dataset = open_source(held_out_source(run), "evaluation")
    report = export_model(model, run.out_dir / "student.onnx", "onnx", check_images=dataset.query_paths[:7])
    return {"onnx": "student.onnx", "model": "student.pt", "summary": report.summary()}
