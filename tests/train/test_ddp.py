"""Multi-process training is real: 2-process DDP on CPU (gloo) through Lightning's strategy="ddp".

Lightning's "ddp" strategy re-launches the running script for rank 1, so the training runs in a
script file started with subprocess (not in the pytest process). Each rank writes the sha256 of
its weights before and after training; DDP must leave both ranks with the same, changed weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DDP_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path

    import torch
    from structvpr.config import load_config
    from structvpr.train import stage1

    def weights_hash(module):
        digest = hashlib.sha256()
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    class Recording(stage1.VPRLightningModule):
        def on_train_start(self):
            self.initial_hash = weights_hash(self.network)
            self.seen_places = []

        def on_train_batch_start(self, batch, batch_idx):
            self.seen_places.append(sorted(set(batch["place"].tolist())))

    stage1.VPRLightningModule = Recording  # fit_stage1 builds this subclass: records, changes nothing

    def main():
        config_path, out_dir = sys.argv[1], Path(sys.argv[2])
        trainer, module = stage1.fit_stage1(load_config(config_path), "rgb")
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "strategy": type(trainer.strategy).__name__,
                  "backend": str(getattr(trainer.strategy, "process_group_backend", "")),
                  "global_step": trainer.global_step, "initial": module.initial_hash,
                  "final": weights_hash(module.network), "places": module.seen_places,
                  "val_r1": module.last_recalls.get(1)}
        (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

    if __name__ == "__main__":
        main()
""")


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_identical(fixtures_dir: Path, tmp_path: Path) -> None:
    from structvpr.config import dump_config, load_config

    nordland = fixtures_dir / "nordland_64x32"
    source = {
        "path": str(nordland),
        "layout": "sequence",
        "index_range": [0, 80],
        "options": {"database_folder": "summer", "query_folder": "winter", "frame_tolerance": 1},
    }
    config = load_config(
        None,
        [
            f"data.train={json.dumps(source)}",
            f"data.val={json.dumps({**source, 'index_range': [0, 11]})}",
            "data.num_workers=0",
            "data.val_batch_size=4",
            "model.backbone=resnet18",
            "model.pretrained=false",
            "model.image_size=[32,32]",
            "train.places_per_batch=4",
            "train.images_per_place=2",
            "train.batches_per_epoch=3",
            "train.epochs=1",
            "train.lr=1e-3",
            "train.accelerator=cpu",
            "train.devices=2",
            "train.strategy=ddp",
            "train.validate_before_training=false",
            f"train.output_dir={tmp_path / 'runs'}",
        ],
    )
    dump_config(config, tmp_path / "ddp.yaml")
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ddp.yaml"), str(tmp_path)],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["strategy"] == "DDPStrategy" and r["backend"] == "gloo" for r in ranks)
    assert all(r["global_step"] == 3 for r in ranks)
    assert ranks[0]["initial"] == ranks[1]["initial"]  # same seed -> same start
    assert ranks[0]["final"] == ranks[1]["final"]  # gradients all-reduced -> same weights
    assert ranks[0]["final"] != ranks[0]["initial"]  # and training did change them
    assert ranks[0]["places"] != ranks[1]["places"]  # each rank trained on its own batches
    assert ranks[0]["val_r1"] == ranks[1]["val_r1"] is not None  # validation gathered over both ranks
    assert (tmp_path / "runs" / "stage1-rgb" / "checkpoints" / "last.ckpt").is_file()
