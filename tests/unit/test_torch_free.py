"""Serving never imports torch: the core, the runtime and every function handler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import inktex

ROOT = Path(inktex.__file__).resolve().parent.parent
CORE = ["inktex." + p.stem for p in (ROOT / "inktex").glob("*.py") if p.stem != "__init__"]
HANDLERS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "functions").glob("*/app.py"))


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
