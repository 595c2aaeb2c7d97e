"""The functions' collaborators, built once per container from the environment.

Handlers call `services()`; tests call `services.cache_clear()` inside their moto mock so
the next call builds clients against it. What only some functions need is built, and its
module imported, on first use: the model cache (onnxruntime, numpy) where a model runs, the
registry where packages are read, the SageMaker client where jobs start. So the feedback
trigger and the metrics function import neither onnxruntime nor numpy, and ship without.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from functions.common import telemetry
from functions.common.aliases import AliasReader
from functions.common.aws import S3Client, SSMClient
from functions.common.config import Settings
from functions.common.feedback_store import FeedbackStore
from functions.common.store import PredictionStore


@dataclass
class Services:
    settings: Settings
    s3: S3Client
    ssm: SSMClient
    store: PredictionStore
    feedback: FeedbackStore
    production_version: Callable[[], str]  # the one alias reader (aliases.AliasReader)
    on_model_failure: Callable[[str, str], None] | None = field(default=None, repr=False)

    @functools.cached_property
    def registry(self):
        """The model registry (packages and aliases); imports the package reader."""
        from functions.common.registry import ModelRegistry

        s = self.settings
        return ModelRegistry(self.s3, self.ssm, s.model_bucket, s.alias_prefix)

    @functools.cached_property
    def models(self):
        """The production model, fetched and loaded on first use (functions that run one)."""
        from functions.common.models import ModelCache

        directory = self.settings.model_cache_dir
        return ModelCache(
            resolve=self.production_version,
            fetch=lambda version: self.registry.download(version, directory / version),
            on_failure=self.on_model_failure,
        )

    @functools.cached_property
    def sagemaker(self):
        """Built on first use: only the feedback trigger starts training jobs."""
        return boto3.client("sagemaker")


def build(settings: Settings, s3, ssm, on_model_failure=None) -> Services:
    telemetry.configure(s3, settings.data_bucket)  # each invocation's metrics delta goes there
    return Services(
        settings=settings,
        s3=s3,
        ssm=ssm,
        store=PredictionStore(s3, settings.data_bucket),
        feedback=FeedbackStore(s3, settings.data_bucket),
        production_version=AliasReader(ssm, settings.alias_prefix, settings.alias_max_age_s),
        on_model_failure=on_model_failure,
    )


_failure_hooks: list[Callable[[str, str], None]] = []


def on_model_failure(hook: Callable[[str, str], None]) -> None:
    """Register a callback (a metric, say) for packages that fail their checks."""
    _failure_hooks.append(hook)


@functools.cache
def services() -> Services:
    def failed(version: str, reason: str) -> None:
        for hook in _failure_hooks:
            hook(version, reason)

    # SigV4 for presigned uploads (us-east-1 would otherwise sign the legacy way).
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    return build(Settings.from_env(), s3, boto3.client("ssm"), failed)
