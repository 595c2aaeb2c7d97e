"""dvc.yaml's train and export stages depend on the code they run, all of it and no more.

All of it: an edit to anything `training.train` imports (at module scope or inside a
function) must make `dvc repro` train again. No more: an edit to fine-tuning, the
exporter, the functions or the local stack must leave a trained model current; an edit to
the trainer's loop leaves an exported model current.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("inktex", "training", "model_export", "functions", "local_stack")


def module_file(module: str) -> Path | None:
    for path in (REPO / f"{module.replace('.', '/')}.py", REPO / module.replace(".", "/")):
        if path.suffix == ".py" and path.is_file():
            return path
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
    return None


def imported_files(module: str) -> set[Path]:
    """The repository's files that importing `module` can load, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # a package's __init__ runs before any of its modules
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    todo += [a.name for a in node.names if a.name.startswith(PACKAGES)]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    base = node.module or ""
                    if base.startswith(PACKAGES):
                        todo += [base] + [f"{base}.{a.name}" for a in node.names]
    return seen


def test_the_train_stage_depends_on_what_training_imports():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    deps = set(stage["deps"])
    assert "inktex" in deps  # the core, whole: training imports much of it
    listed = {REPO / d for d in deps if d.startswith("training")}
    code = {p for p in imported_files("training.train") if p.is_relative_to(REPO / "training")}
    assert listed == code, {
        "missing": sorted(str(p.relative_to(REPO)) for p in code - listed),
        "not imported": sorted(str(p.relative_to(REPO)) for p in listed - code),
    }
    assert not any(d.startswith(("functions", "local_stack", "model_export")) for d in deps)


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
