"""The main job: the whole StructVPR++ pipeline on the synthetic town, with a side-by-side report.

synth -> label maps -> Stage I (seg teacher, RGB baseline) -> partition -> Stage II -> evaluation
-> index + queries -> ONNX export -> report.html / report.md. Every stage records its finish (and
wall time) in `demo_state.json`, so an interrupted demo resumes at the first unfinished stage.

Modules: settings (DemoSettings, the training config, the demo folder), stages, report, run.
"""

from structvpr.demo.run import run_demo
from structvpr.demo.settings import DemoSettings, load_settings
from structvpr.demo.stages import network_input_size, replace_labels_with_segmenter

__all__ = ["DemoSettings", "load_settings", "network_input_size", "replace_labels_with_segmenter", "run_demo"]
