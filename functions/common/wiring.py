"""The functions' collaborators, built once per container from the environment.

Handlers call `services()`; tests call `services.cache_clear()` inside their moto mock so
the next call builds clients against it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import boto3
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config

from functions.common import telemetry
from functions.common.config import Settings
from functions.common.feedback import FeedbackStore
from functions.common.models import ModelCache
from functions.common.registry import ModelRegistry, version_of
from functions.common.store import PredictionStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    s3: object
    store: PredictionStore
    registry: ModelRegistry
    models: ModelCache
    production_version: Callable[[], str]
    ssm: object = None
    feedback: FeedbackStore | None = None

    @functools.cached_property
    def sagemaker(self):
        """Built on first use: only the feedback trigger starts training jobs."""
        return boto3.client("sagemaker")


def build(settings: Settings, s3, ssm, on_model_failure=None) -> Services:
    telemetry.configure(s3, settings.data_bucket)  # each invocation's metrics delta goes there
    registry = ModelRegistry(s3, ssm, settings.model_bucket, settings.alias_prefix)
    provider = SSMProvider(boto3_client=ssm)
    name = registry.parameter_name("production")

    def production_version() -> str:
        try:
            return version_of(provider.get(name, max_age=settings.alias_max_age_s))
        except GetParameterError as exc:
            log.error("cannot read the production alias %s: %s", name, exc)
            return ""

    models = ModelCache(
        resolve=production_version,
        fetch=lambda version: registry.download(version, settings.model_cache_dir / version),
        on_failure=on_model_failure,
    )
    return Services(
        settings=settings,
        s3=s3,
        store=PredictionStore(s3, settings.data_bucket),
        registry=registry,
        models=models,
        production_version=production_version,
        ssm=ssm,
        feedback=FeedbackStore(s3, settings.data_bucket),
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
