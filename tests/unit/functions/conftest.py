"""Fixtures for the functions' tests: moto-backed AWS, the tiny model in the registry, a
Lambda context. Helpers live in lambda_testkit.py.

"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from lambda_testkit import ENV, TINY_MODEL
from moto import mock_aws

from functions.common import wiring
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
