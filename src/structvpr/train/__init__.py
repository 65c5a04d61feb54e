"""Training, in pipeline order.

vpr_module (the Lightning module: VPR loss, validation, optimiser of both stages), datamodule (Stage I
and Stage II data), trainer (Trainer set-up, checkpoint IO, best weights), stage1, partition (maths),
partition_file, partition_run, teacher_cache, distill_losses, stage2, pipeline (`--stage all`).

Submodules import Lightning; import them directly (`from structvpr.train.stage1 import run_stage1`)
so that `import structvpr.train` stays cheap.
"""
