"""The import rules: serving never imports torch (the core, the runtime, every function
handler), and the core imports none of the packages beside it (STYLE 1 and 10).

The core's rule is checked twice: on what loads when every core module is imported, and
on the source itself (every `import` in inktex/, at module scope or inside a function), so
a lazy import that no test happens to reach breaks it too. The packages beside the core
add to it through entry points (inktex/plugins.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import inktex

ROOT = Path(inktex.__file__).resolve().parent.parent
CORE = ["inktex." + p.stem for p in (ROOT / "inktex").glob("*.py") if p.stem != "__init__"]
HANDLERS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "functions").glob("*/app.py"))
# What the core must never import, lazily or not: the packages beside it, and what they need.
BESIDE = {"functions", "training", "model_export", "local_stack"}
HEAVY = {"torch", "boto3", "botocore", "aws_lambda_powertools", "moto"}


def _imported_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(out.stdout.split())


def test_importing_the_core_and_runtime_never_imports_torch():
    modules = _imported_after("; ".join(f"import {m}" for m in sorted(CORE)))
    assert "inktex.runtime" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}


def test_the_core_imports_no_aws_or_powertools():
    core = [m for m in CORE if m not in ("inktex.runtime",)]
    modules = _imported_after("; ".join(f"import {m}" for m in sorted(core)))
    assert not {
        m
        for m in modules
        if m.split(".")[0] in ("boto3", "botocore", "aws_lambda_powertools", "torch")
    }


def test_no_function_handler_imports_torch():
    for handler in HANDLERS:
        statement = (
            f"import importlib.util, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"spec = importlib.util.spec_from_file_location('h', {handler!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)"
        )
        modules = _imported_after(statement)
        assert "torch" not in modules, handler


def _imports_in_source(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a file, wherever it sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_the_core_source_imports_nothing_beside_it_lazily_or_not():
    files = sorted((ROOT / "inktex").rglob("*.py"))
    assert len(files) >= len(CORE)
    broken = [
        f"{path.relative_to(ROOT)}:{line}: imports {package}"
        for path in files
        for line, package in _imports_in_source(path)
        if package in BESIDE | HEAVY
    ]
    assert not broken, "\n".join(broken)


def test_the_source_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    from training.decoding import TorchRecognizer\n"
        "    import local_stack.cli, json\n"
        "    from . import sibling\n"
    )
    assert _imports_in_source(sample) == [
        (1, "os"),
        (3, "training"),
        (4, "local_stack"),
        (4, "json"),
    ]


def test_importing_the_core_loads_nothing_beside_it():
    modules = _imported_after("; ".join(f"import {m}" for m in sorted(CORE)))
    assert not {m for m in modules if m.split(".")[0] in BESIDE}


def test_training_imports_neither_the_exporter_nor_the_stack_nor_the_functions():
    # model_export -> training, one way: the retraining job (model_export/finetune_job.py)
    # sits above both, so fine-tuning never reaches back into the exporter.
    broken = [
        f"{path.relative_to(ROOT)}:{line}: imports {package}"
        for path in sorted((ROOT / "training").rglob("*.py"))
        for line, package in _imports_in_source(path)
        if package in {"model_export", "local_stack", "functions"}
    ]
    assert not broken, "\n".join(broken)
