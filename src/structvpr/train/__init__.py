"""Training: Stage I branches (stage1, lightning_vpr, datamodule, losses), partition, Stage II, pipeline.

Submodules import Lightning; import them directly (`from structvpr.train.stage1 import run_stage1`)
so that `import structvpr.train` stays cheap.
"""
