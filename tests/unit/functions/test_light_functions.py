"""The feedback trigger and the metrics function run no model, so they import neither
onnxruntime nor numpy (nor pillow), and their requirements do not ship them (issue 19);
infra/sam_checks.sh measures their built size. And /stats answers errors as {"message"}."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lambda_testkit import REPO, load_event

from functions.metrics import app as metrics_app

HEAVY = ("numpy", "onnxruntime", "PIL")

BLOCKED_RUN = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, "tests/unit/functions")
import lambda_testkit, boto3
from moto import mock_aws
with mock_aws():
    env = lambda_testkit.ENV
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=env["DATA_BUCKET"])
    s3.put_bucket_versioning(
        Bucket=env["DATA_BUCKET"], VersioningConfiguration={{"Status": "Enabled"}}
    )
    from functions.feedback_trigger import app as trigger
    import functions.metrics.app
    event = lambda_testkit.load_event("s3_feedback_pending.json")
    outcome = trigger.handle_event(
        trigger.S3Event(event), trigger.wiring.services()
    )
    assert outcome["claimed"] is False, outcome
print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
"""


def test_the_trigger_and_the_metrics_function_run_without_onnxruntime_or_numpy():
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_their_requirements_do_not_ship_a_model_runtime():
    for function in ("feedback_trigger", "metrics"):
        lines = (Path(REPO) / "functions" / function / "requirements.txt").read_text().splitlines()
        wanted = [line.split("==")[0].lower() for line in lines if line and line[0] != "#"]
        assert not {"onnxruntime", "numpy", "pillow"} & set(wanted), function


def test_stats_errors_are_a_message(aws, lambda_context, monkeypatch):
    metrics_app.clients.cache_clear()
    event = load_event("api_stats.json")
    event["queryStringParameters"] = {"hours": "0"}
    event["rawQueryString"] = "hours=0"
    response = metrics_app.lambda_handler(event, lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 422 and list(body) == ["message"], body
    assert "hours" in body["message"]
    metrics_app.clients.cache_clear()
