"""dvc.yaml's export stage depends on the training code the exporter imports, and no more:
an edit to fine-tuning, the trainer's loop or the stack leaves an exported model current."""

from __future__ import annotations

import yaml
from test_dvc_stages import REPO, imported_files


def test_the_export_stage_depends_on_the_training_modules_export_imports():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["export"]
    deps = set(stage["deps"])
    assert {"inktex", "model_export"} <= deps and "training" not in deps
    listed = {REPO / d for d in deps if d.startswith("training")}
    code = {
        p for p in imported_files("model_export.release") if p.is_relative_to(REPO / "training")
    }
    assert listed == code, {
        "missing": sorted(str(p.relative_to(REPO)) for p in code - listed),
        "not imported": sorted(str(p.relative_to(REPO)) for p in listed - code),
    }
