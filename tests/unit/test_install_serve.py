"""`make install-serve` alone (no torch, no moto, no dvc) is enough to run `inktex predict`
and to import every Lambda handler: the serve extra declares all they need."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HANDLERS = sorted(p.parent.name for p in (REPO / "functions").glob("*/app.py"))
IMAGE = REPO / "tests" / "fixtures" / "inkml" / "27_em_120.png"
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny_model"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a ceiling: pip on a busy machine


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("serve") / "venv"
    subprocess.run(["make", "-s", "install-serve", f"SERVE_VENV={venv}"], cwd=REPO, check=True)
    return venv


def run(venv: Path, *argv: str) -> subprocess.CompletedProcess:
    # the Lambda functions' environment; nothing of the main venv on the path
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("INKTEX_TEST_RUN")})
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)


def test_the_serve_venv_has_no_training_or_emulator_packages(serve_venv):
    done = run(serve_venv, "python", "-m", "pip", "list", "--format=json")
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(done.stdout)}
    assert {"onnxruntime", "pydantic", "aws-lambda-powertools"} <= installed
    assert not {"torch", "moto", "dvc", "pyyaml"} & installed


def test_inktex_predict_runs_in_it(serve_venv):
    done = run(serve_venv, "inktex", "predict", "--json", "--model", str(TINY_MODEL), str(IMAGE))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["latex"]


def test_every_handler_imports_in_it(serve_venv):
    imports = "; ".join(f"import functions.{handler}.app" for handler in HANDLERS)
    settings = "import sys; sys.path.insert(0, 'tests/unit/functions'); import lambda_testkit"
    done = run(serve_venv, "python", "-c", f"{settings}; {imports}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(HANDLERS) == 5
