"""The equal-step protocol of issue 12: does distillation beat a converged RGB baseline?

    python benchmarks/bench_method.py --seeds 0 1 2 [--places 400] [--town-seed 0]
        [--segmenter exact|espnetv2] [--label-noise F] [--arms baseline student no_weights ...] --out DIR

Per seed, in `DIR/seed<S>/`: Stage I trains both branches (RGB and the seg teacher) for the same
steps at a learning rate where they plateau on val; the partition ranks the teacher with the
descriptor Stage II distils; then every Stage II arm trains the SAME number of steps from the SAME
Stage I RGB weights. Checkpoints are chosen on the val split only; the test split is evaluated, never
looked at for a choice. Arms (structvpr.* defaults = the recipe; each arm changes one thing):

  baseline      VPR loss only (lambda_g = lambda_l = lambda_a = 0), initialised like the student
  student       the StructVPR++ recipe (config defaults)
  no_weights    every sample weight 1
  no_label      no label distillation (lambda_l = 0)
  no_alignment  no semantic alignment (lambda_a = 0)
  lever arms    cosine, cosine_no_weights, relational, self_positives, linear_fade, cosine_fade, global_target,
                pairs_alignment, units_only, weight_sum, g2_full, smooth (see LEVER_ARMS)

Writes `DIR/results.json` and `DIR/results.md` (and per seed `seed<S>/results.{json,md}`): test R@1/5/10
at the best-val and the last checkpoint, the paired difference student - baseline, R@1 per query
condition, the teacher's combined / global / label-only R@1, the group histogram, wall time per stage
and the val curves. Every finished piece is kept on disk, so a killed run continues where it stopped
(a half-trained arm resumes from its last epoch checkpoint). Torch runs on `--threads` threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from structvpr.config import Config, DatasetSource, config_from_dict
from structvpr.io_utils import atomic_write_text

VPR_ONLY = {"lambda_g": 0.0, "lambda_l": 0.0, "lambda_a": 0.0}
# name -> (run folder, Stage II setting overrides, structvpr section changes (a new partition if the
# distilled target changes), description)
ARMS: dict[str, tuple[str, dict, dict, str]] = {
    "baseline": ("stage2-vpr-only", VPR_ONLY, {}, "VPR loss only, same steps, same init"),
    "student": ("stage2", {}, {}, "StructVPR++ student (recipe defaults)"),
    "no_weights": ("stage2-no-weights", {"uniform_weights": True}, {}, "all sample weights 1"),
    "no_label": ("stage2-no-label", {"lambda_l": 0.0}, {}, "no label distillation"),
    "no_alignment": ("stage2-no-alignment", {"lambda_a": 0.0}, {}, "no semantic alignment"),
}
LEVER_ARMS: dict[str, tuple[str, dict, dict, str]] = {
    "cosine": ("stage2-cosine", {"distill_loss": "cosine", "always_project": True}, {}, "1 - cos(P s, t)"),
    "cosine_no_weights": (
        "stage2-cosine-no-weights",
        {"distill_loss": "cosine", "always_project": True, "uniform_weights": True},
        {},
        "1 - cos(P s, t), all sample weights 1",
    ),
    "relational": ("stage2-relational", {"distill_loss": "relational"}, {}, "in-batch similarity KL"),
    "self_positives": ("stage2-self-positives", {"contrastive_positives": "self"}, {}, "InfoNCE, own row only"),
    "linear_fade": ("stage2-linear-fade", {"distill_schedule": "linear_fade"}, {}, "lambda_g, lambda_l 1 -> 0"),
    "cosine_fade": ("stage2-cosine-fade", {"distill_schedule": "cosine_fade"}, {}, "lambda_g, lambda_l cos 1 -> 0"),
    "global_target": ("stage2-global-target", {}, {"distill_target": "global"}, "distil (and rank) g only"),
    "pairs_alignment": ("stage2-pairs-alignment", {"alignment": "pairs"}, {}, "alignment without negatives"),
    "units_only": ("stage2-units-only", {"label_distill": "units"}, {}, "label units only, no descriptor"),
    "weight_sum": (
        "stage2-weight-sum",
        {"weight_normalization": "weight_sum"},
        {},
        "weighted losses divided by the batch's weight sum",
    ),
    "g2_full": (
        "stage2-g2-full",
        {},
        {"group_weights": [2.0, 1.0, 0.5, 0.0]},
        "group weights 2 / 1 / 0.5 / 0 (the paper's ratios, G2 at uniform strength)",
    ),
    "smooth": ("stage2-smooth", {}, {"weight_function": "smooth"}, "w = sigmoid(log r_S - log r_T)"),
}
# structvpr fields that change the partition (its ranks, groups or weights): an arm that changes one
# gets its own partition folder.
PARTITION_FIELDS = ("distill_target", "group_threshold_k", "weight_function", "group_weights", "smooth_temperature")
ALL_ARMS = {**ARMS, **LEVER_ARMS}
CONDITIONS = ("dusk", "night", "winter", "fog")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--places", type=int, default=400)
    parser.add_argument("--town-seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--segmenter", choices=("exact", "espnetv2"), default="exact")
    parser.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="fraction of the night and fog images whose label map is replaced by another place's "
        "(a simulated segmenter failure; structvpr.data.label_noise)",
    )
    parser.add_argument("--stage1-steps", type=int, default=150)
    parser.add_argument("--stage1-lr", type=float, default=1e-3)
    parser.add_argument("--stage2-steps", type=int, default=300)
    parser.add_argument("--stage2-lr", type=float, default=3e-4)
    parser.add_argument("--epoch-steps", type=int, default=30, help="steps between two validations")
    parser.add_argument("--places-per-batch", type=int, default=8)
    parser.add_argument("--images-per-place", type=int, default=4)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ALL_ARMS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra config overrides a.b=v")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    for name in ("stage1_steps", "stage2_steps"):
        if getattr(args, name) % args.epoch_steps:
            parser.error(f"--{name.replace('_', '-')} must be a multiple of --epoch-steps ({args.epoch_steps})")
    if "baseline" not in args.arms or "student" not in args.arms:
        parser.error("--arms must include baseline and student (the paired difference)")
    return args


def experiment_config(args: argparse.Namespace, town: Path, root: Path, seed: int) -> Config:
    """The training config of one seed: town train split to train, val split to choose checkpoints."""
    from structvpr.config import apply_overrides

    values = {
        "data": {
            "train": {"path": str(town), "layout": "utm", "split": "train"},
            "val": {"path": str(town), "layout": "utm", "split": "val"},
            "num_workers": 0,
            "val_batch_size": 64,
        },
        "model": {"backbone": "efficientnet_lite0", "aggregator": "gem", "image_size": list(args.image_size)},
        "train": {
            "epochs": args.stage1_steps // args.epoch_steps,
            "lr": args.stage1_lr,
            "batches_per_epoch": args.epoch_steps,
            "seed": seed,
            "accelerator": "cpu",
            "devices": 1,
            "places_per_batch": args.places_per_batch,
            "images_per_place": args.images_per_place,
            "output_dir": str(root),
            "deterministic": True,
            "validate_before_training": True,
        },
        "structvpr": {"stage2_epochs": args.stage2_steps // args.epoch_steps, "stage2_lr": args.stage2_lr},
    }
    return config_from_dict(apply_overrides(values, list(args.overrides)))


class Timer:
    """Wall time per stage, kept in `<root>/times.json` across interrupted runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, work, *args, **kwargs):
        start = time.perf_counter()
        result = work(*args, **kwargs)
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - start, 1)
        atomic_write_text(self.path, json.dumps(self.times, indent=2))
        return result


def build_town(args: argparse.Namespace, out: Path) -> Path:
    """Render the town once (and replace its labels with the segmenter's when asked)."""
    from structvpr.data.synth import generate_town

    town = out / "town"
    noise = f"-noise{args.label_noise:g}" if args.label_noise else ""
    done = out / f"town-{args.segmenter}{noise}.done"
    if done.is_file():
        return town
    rendered = out / "town-rendered.done"  # lets a --label-noise run reuse a rendered exact-label town
    if not (args.segmenter == "exact" and rendered.is_file()):
        generate_town(town, args.places, seed=args.town_seed, image_size=tuple(args.image_size), progress=False)
        atomic_write_text(rendered, "")
    if args.segmenter != "exact":
        from structvpr.demo import replace_labels_with_segmenter

        print(replace_labels_with_segmenter(town, args.segmenter, tuple(args.image_size)), flush=True)
    if args.label_noise:
        from structvpr.data.label_noise import corrupt_town_labels

        record = corrupt_town_labels(town, args.label_noise, seed=args.town_seed)
        print(f"label noise: {len(record['replaced'])} night/fog label maps replaced by another place's", flush=True)
    atomic_write_text(done, json.dumps({"places": args.places, "town_seed": args.town_seed}))
    return town


def query_conditions(town: Path, dataset) -> list[str]:
    """Condition of every query of `dataset` (from the town's metadata.csv)."""
    from structvpr.data.layouts._common import read_csv_rows
    from structvpr.data.training_set import METADATA_FILE

    rows = read_csv_rows(town / METADATA_FILE, ["path", "condition"])
    by_path = {str((town / row["path"]).resolve()): row["condition"] for row in rows}
    return [by_path[str(Path(path).resolve())] for path in dataset.query_paths]


def recalls(query: np.ndarray, database: np.ndarray, positives, conditions: list[str]) -> dict:
    """R@1/5/10 (percent) and R@1 per query condition."""
    from structvpr.evaluate.recall import recall_at_n

    result = {f"R@{n}": round(100 * v, 2) for n, v in recall_at_n(query, database, positives, (1, 5, 10)).items()}
    for condition in CONDITIONS:
        chosen = [i for i, c in enumerate(conditions) if c == condition and len(positives[i])]
        if chosen:
            r1 = recall_at_n(query[chosen], database, [positives[i] for i in chosen], (1,))[1]
            result[condition] = round(100 * r1, 2)
    return result


def evaluate_rgb(model, dataset, positives, conditions, config: Config) -> dict:
    from structvpr.train.pipeline import describe_dataset

    descriptors = describe_dataset(model, dataset, config, "cpu")
    return recalls(descriptors[dataset.num_database :], descriptors[: dataset.num_database], positives, conditions)


def evaluate_teacher(path: Path, dataset, positives, conditions, config: Config) -> dict:
    """The teacher's combined [g ; l], global g and label-only l descriptors on the test split."""
    from structvpr.model.branches import load_seg_branch
    from structvpr.segment.classes import load_merge_table
    from structvpr.segment.slme import teacher_input
    from structvpr.train.pipeline import evaluation_items

    teacher, _ = load_seg_branch(path)
    table = load_merge_table(config.structvpr.merge_table)
    parts: dict[str, list[torch.Tensor]] = {"combined": [], "global": [], "label": []}
    with torch.no_grad():
        for batch in evaluation_items(dataset, config, with_labels=True):
            inputs = teacher_input(batch["label_map"], table, teacher.config.in_channels, teacher.config.image_size)
            outputs = teacher.forward_outputs(inputs)
            parts["combined"].append(outputs.descriptor)
            parts["global"].append(outputs.global_descriptor)
            parts["label"].append(outputs.labels.descriptor)
    result = {}
    for name, chunks in parts.items():
        descriptors = torch.cat(chunks).numpy()
        result[name] = recalls(
            descriptors[dataset.num_database :], descriptors[: dataset.num_database], positives, conditions
        )
    return result


def last_checkpoint_model(run_dir: Path):
    """The arm's network at the end of its last epoch (for the 'last' column)."""
    from structvpr.model.model_file import load_model_file

    model, _ = load_model_file(run_dir / "model.pt")
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("network.") :]: v for k, v in state.items() if k.startswith("network.")})
    return model.eval()


def val_curve(run_dir: Path) -> list[float]:
    """Val R@1 (percent) at every validation of a run, in order."""
    history = json.loads((run_dir / "summary.json").read_text())["recall_history"]
    return [round(100 * entry["recalls"]["1"], 2) for entry in history]


def partition_changes(changes: dict) -> dict:
    """The part of an arm's structvpr changes that changes the partition."""
    return {key: value for key, value in changes.items() if key in PARTITION_FIELDS}


def partitions_needed(arms) -> dict[str, dict]:
    """Folder name -> partition changes ({} = the recipe's) of every partition the arms need, once each,
    in name order."""
    chosen = [partition_changes(changes) for _, _, changes, _ in arms]
    needed = {partition_folder_name(changes): changes for changes in chosen}
    return dict(sorted(needed.items()))


def with_structvpr_changes(config: Config, changes: dict) -> Config:
    """`config` with `changes` applied to its structvpr section."""
    return dataclasses.replace(config, structvpr=dataclasses.replace(config.structvpr, **changes))


def partition_folder_name(changes: dict) -> str:
    """'partition' for the recipe's partition, else 'partition-' + the changed values."""
    if not changes:
        return "partition"
    values = (
        "_".join(f"{v:g}" for v in value) if isinstance(value, list) else str(value) for value in changes.values()
    )
    return "partition-" + "-".join(values)


def run_seed(args: argparse.Namespace, town: Path, out: Path, seed: int) -> dict:
    """Everything for one seed; every finished piece is reused."""
    from structvpr.model.model_file import load_model_file
    from structvpr.train.datamodule import open_source
    from structvpr.train.partition_file import load_partition
    from structvpr.train.partition_run import run_partition
    from structvpr.train.pipeline import resuming_if_started
    from structvpr.train.stage1 import run_stage1
    from structvpr.train.stage2 import run_stage2

    root = out / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    timer = Timer(root / "times.json")
    config = experiment_config(args, town, root, seed)
    for branch in ("rgb", "seg"):
        run_dir = root / f"stage1-{branch}"
        if not (run_dir / "model.pt").is_file():
            timer.run(f"stage1-{branch}", run_stage1, resuming_if_started(config, run_dir), branch)
    stage1_rgb = root / "stage1-rgb" / "model.pt"
    arms = {name: ALL_ARMS[name] for name in args.arms}
    for name, changes in partitions_needed(arms.values()).items():
        folder = root / name
        if not (folder / "teacher_cache" / "cache.json").is_file():
            timer.run(name, run_partition, with_structvpr_changes(config, changes), output_dir=folder)
    for run_name, overrides, changes, _ in arms.values():
        run_dir = root / run_name
        if (run_dir / "model.pt").is_file():
            continue
        folder = root / partition_folder_name(partition_changes(changes))
        timer.run(
            run_name,
            run_stage2,
            resuming_if_started(with_structvpr_changes(config, changes), run_dir),
            run_name,
            cache_dir=folder / "teacher_cache",
            init_model=stage1_rgb,
            settings_overrides=overrides,
        )
    # Evaluation on the test split (nothing above looked at it).
    evaluation_file = root / "evaluation.json"
    evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else {}
    dataset = open_source(DatasetSource(path=str(town), layout="utm", split="test"), "test")
    positives = dataset.positives_per_query()
    conditions = query_conditions(town, dataset)

    def remember(key: str, compute, *args) -> dict:
        if key not in evaluation:
            evaluation[key] = timer.run("evaluation", compute, *args)
            atomic_write_text(evaluation_file, json.dumps(evaluation, indent=2))
        return evaluation[key]

    test = (dataset, positives, conditions, config)
    remember("teacher", evaluate_teacher, root / "stage1-seg" / "model.pt", *test)
    remember("stage1-rgb", lambda: evaluate_rgb(load_model_file(stage1_rgb)[0], *test))
    for name, (run_name, _, _, _) in arms.items():
        run_dir = root / run_name
        remember(f"{name}/best", lambda path: evaluate_rgb(load_model_file(path)[0], *test), run_dir / "model.pt")
        remember(f"{name}/last", lambda folder: evaluate_rgb(last_checkpoint_model(folder), *test), run_dir)
    partition = load_partition(root / "partition" / "partition.npz")
    result = {
        "seed": seed,
        "test": dataset.summary(),
        "teacher": evaluation["teacher"],
        "stage1_rgb": evaluation["stage1-rgb"],
        "arms": {
            name: {
                "description": description,
                "best": evaluation[f"{name}/best"],
                "last": evaluation[f"{name}/last"],
                "val_curve": val_curve(root / run_name),
            }
            for name, (run_name, _, _, description) in arms.items()
        },
        "stage1_val_curves": {branch: val_curve(root / f"stage1-{branch}") for branch in ("rgb", "seg")},
        "groups": partition.histogram(),
        "mean_weight": round(float(np.mean(partition.weights)), 3),
        "paired_gain_r1": round(evaluation["student/best"]["R@1"] - evaluation["baseline/best"]["R@1"], 2),
        "seconds": timer.times,
    }
    atomic_write_text(root / "results.json", json.dumps(result, indent=2))
    atomic_write_text(root / "results.md", seed_markdown(result))
    return result


def seed_markdown(result: dict) -> str:
    """One seed's tables: arms x (best R@1/5/10, last R@1, per condition, val curve); teacher; groups."""
    lines = [f"### seed {result['seed']} ({result['test']})", ""]
    header = "| model | R@1 | R@5 | R@10 | last R@1 | " + " | ".join(CONDITIONS) + " | val R@1 per epoch |"
    lines += [header, "|" + "---|" * (6 + len(CONDITIONS))]

    def row(label: str, best: dict, last: dict | None, curve: list[float] | None) -> str:
        cells = [label, best["R@1"], best["R@5"], best["R@10"], "" if last is None else last["R@1"]]
        cells += [best.get(c, "") for c in CONDITIONS]
        cells.append("" if curve is None else " ".join(f"{v:.1f}" for v in curve))
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines.append(row("Stage I RGB", result["stage1_rgb"], None, result["stage1_val_curves"]["rgb"]))
    for name in ("combined", "global", "label"):
        curve = result["stage1_val_curves"]["seg"] if name == "combined" else None
        lines.append(row(f"teacher {name}", result["teacher"][name], None, curve))
    for name, arm in result["arms"].items():
        lines.append(row(f"{name}: {arm['description']}", arm["best"], arm["last"], arm["val_curve"]))
    groups = ", ".join(f"{k}: {v}" for k, v in result["groups"].items())
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    lines += [
        "",
        f"Paired gain student - baseline (best-val checkpoints): **{result['paired_gain_r1']:+.2f} R@1**.",
        f"Groups: {groups}; mean weight {result['mean_weight']}.",
        f"Wall time: {seconds}.",
        "",
    ]
    return "\n".join(lines)


def noise_words(args: argparse.Namespace) -> str:
    """' with F of the night/fog label maps from another place' when --label-noise F is set."""
    return f" with {args.label_noise:g} of the night/fog label maps from another place" if args.label_noise else ""


def summary_markdown(args: argparse.Namespace, results: list[dict]) -> str:
    """Arms x seeds test R@1 (best-val checkpoint), mean, and the paired gains."""
    seeds = [r["seed"] for r in results]
    lines = [
        f"## bench_method: town seed {args.town_seed}, {args.places} places at "
        f"{args.image_size[0]}x{args.image_size[1]}, "
        f"{args.segmenter} labels{noise_words(args)}; Stage I {args.stage1_steps} steps lr {args.stage1_lr:g}, "
        "every Stage II arm "
        f"{args.stage2_steps} steps lr {args.stage2_lr:g}; test R@1 at the best-val checkpoint",
        "",
        "Command: `python benchmarks/bench_method.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|" + "---|" * (len(seeds) + 2),
    ]

    def add(label: str, values: list[float]) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(values):.2f} |")

    add("Stage I RGB", [r["stage1_rgb"]["R@1"] for r in results])
    for name in ("combined", "global", "label"):
        add(f"teacher {name}", [r["teacher"][name]["R@1"] for r in results])
    for name in results[0]["arms"]:
        add(name, [r["arms"][name]["best"]["R@1"] for r in results])
    gains = [r["paired_gain_r1"] for r in results]
    lines.append(
        "| **student - baseline** | " + " | ".join(f"**{g:+.2f}**" for g in gains) + f" | **{np.mean(gains):+.2f}** |"
    )
    if "no_weights" in results[0]["arms"]:
        diffs = [r["arms"]["student"]["best"]["R@1"] - r["arms"]["no_weights"]["best"]["R@1"] for r in results]
        lines.append(
            "| student - no_weights | " + " | ".join(f"{d:+.2f}" for d in diffs) + f" | {np.mean(diffs):+.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    town = build_town(args, out)
    results = []
    for seed in args.seeds:
        results.append(run_seed(args, town, out, seed))
        text = summary_markdown(args, results) + "\n" + "\n".join(seed_markdown(r) for r in results)
        atomic_write_text(out / "results.md", text)
        atomic_write_text(out / "results.json", json.dumps({"args": vars(args), "seeds": results}, indent=2))
    print(summary_markdown(args, results), flush=True)
    print(
        f"bench_method: {time.perf_counter() - start:.0f} s in this call; results in {out / 'results.md'}", flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
