"""Fixtures for the functions' tests: moto-backed AWS (with the state-setting helpers that
several test modules share, as methods of `aws`), the tiny model in the registry, faked
promotion scores, a Lambda context. Helpers that need no fixture live in lambda_testkit.py;
no test module imports another.

"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from lambda_testkit import ENV, JOB, TINY_MODEL, load_event
from moto import mock_aws

from functions.common import promotion, wiring
from functions.common.feedback import FeedbackStore
from functions.common.model_bucket import package_key
from functions.common.registry import ALIASES, ModelRegistry


def pytest_collection_modifyitems(items):
    # Powertools warns when a request added no metric (GET /health); that is expected here.
    for item in items:
        if "tests/unit/functions" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore:No application metrics"))


@dataclass
class LambdaContext:
    function_name: str = "inktex-test"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:inktex-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@dataclass
class Aws:
    s3: object
    ssm: object
    data_bucket: str
    model_bucket: str
    registry: ModelRegistry

    def upload_package(self, folder: Path, version: str | None = None) -> str:
        """Register a package as anyone does (ModelRegistry.register); with `version`, store
        its files under that version as they are, unchecked: a fault to test against."""
        if version is None:
            return self.registry.register(folder)
        for path in sorted(folder.iterdir()):
            self.s3.upload_file(str(path), self.model_bucket, package_key(version, path.name))
        return version

    def add_feedback(self, n: int, start: int = 0) -> list[str]:
        """n pending corrections by user-1, each with its input under inputs/; their ids."""
        store = FeedbackStore(self.s3, self.data_bucket)
        ids = []
        for i in range(start, start + n):
            fid = f"{i:032x}"
            key = f"inputs/user-1/{i:013d}-{i:024x}.json"
            self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=b"[[[0, 0], [5, 5]]]")
            item = {
                "id": fid,
                "prediction_id": f"{i:013d}-{i:024x}",
                "owner": "user-1",
                "input_key": key,
                "input_kind": "strokes",
                "corrected_latex": "x + 1",
                "held": False,
                "attempts": 0,
                "returned_from": [],
            }
            assert store.put_new(item)
            ids.append(fid)
        return ids

    def data_keys(self, prefix: str) -> list[str]:
        """The data bucket's keys under `prefix`, sorted."""
        page = self.s3.list_objects_v2(Bucket=self.data_bucket, Prefix=prefix)
        return sorted(o["Key"] for o in page.get("Contents", []))

    def put_upload(self, key: str, body: bytes) -> dict:
        """Put an object and return the S3 event for it, shaped as events/s3_upload.json."""
        response = self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=body)
        event = load_event("s3_upload.json")
        obj = event["Records"][0]["s3"]["object"]
        obj.update(
            key=key.replace(" ", "+"),  # S3 URL-encodes keys in events, spaces as '+'
            size=len(body),
            eTag=response["ETag"].strip('"'),
            versionId=response["VersionId"],
        )
        return event

    def add_candidate(self, version: str = "cand-0001") -> str:
        """The tiny model stored as `version`, named by training job JOB's result.json (what
        a finished fine-tuning job leaves); the version."""
        self.upload_package(TINY_MODEL, version)
        self.s3.put_object(
            Bucket=self.model_bucket,
            Key=f"training/{JOB}/result.json",
            Body=json.dumps({"version": version, "lineage": {"batch": 1}}).encode(),
        )
        return version


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Buckets and alias parameters as template.yaml creates them, in moto."""
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "models"))
    with mock_aws():
        s3 = boto3.client("s3")
        ssm = boto3.client("ssm")
        for bucket in (ENV["DATA_BUCKET"], ENV["MODEL_BUCKET"]):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for alias in ALIASES:
            ssm.put_parameter(
                Name=f"{ENV['ALIAS_PARAMETER_PREFIX']}/{alias}",
                Type="String",
                Value=json.dumps({"alias": alias, "version": "", "reason": "created by the stack"}),
            )
        registry = ModelRegistry(s3, ssm, ENV["MODEL_BUCKET"], ENV["ALIAS_PARAMETER_PREFIX"])
        wiring.services.cache_clear()
        yield Aws(s3, ssm, ENV["DATA_BUCKET"], ENV["MODEL_BUCKET"], registry)
        wiring.services.cache_clear()


@pytest.fixture
def production(aws) -> str:
    """The tiny model uploaded and promoted to production; its version."""
    version = aws.upload_package(TINY_MODEL)
    aws.registry.promote(version, reason="test setup", by="pytest")
    return version


@pytest.fixture
def fake_scores(monkeypatch):
    """`fake_scores(cand, prod, held=(1.0, 1.0))`: the promotion gate sees these ExpRates
    (eval set, and held-out feedback) for the candidate and production, scoring nothing."""

    def set_scores(cand: float, prod: float, held: tuple[float, float] = (1.0, 1.0)) -> None:
        def evaluate(registry, versions, sets):
            return {
                "candidate": {"eval": {"exprate": cand}, "heldout": {"exprate": held[0]}},
                "production": {"eval": {"exprate": prod}, "heldout": {"exprate": held[1]}},
            }

        monkeypatch.setattr(promotion, "evaluate_versions", evaluate)

    return set_scores
