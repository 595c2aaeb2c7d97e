"""The functions' settings, read once from the environment that `template.yaml` sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    model_bucket: str
    alias_prefix: str  # SSM path holding one parameter per alias: <prefix>/production
    model_cache_dir: Path = Path("/tmp/inktex-models")
    alias_max_age_s: int = 30  # how stale a cached alias may be: promotions apply within this
    upload_url_expiry_s: int = 900
    max_upload_bytes: int = 20 * 1024 * 1024  # drops above this get an error record
    # A request body's limit: Lambda's 6 MB invocation payload holds 4 MiB base64-encoded.
    max_body_bytes: int = 4 * 1024 * 1024
    operators_group: str = "operators"  # Cognito group that sees the registry's details
    # The feedback loop (issue 8): what starts a training job, and how it is run and judged.
    stage: str = "dev"
    threshold_parameter: str = ""  # SSM parameter: pending corrections that start a job
    training_role_arn: str = ""  # the SageMaker execution role
    training_image: str = ""  # an AWS PyTorch Deep Learning Container (training, GPU)
    training_instance_type: str = "ml.g5.xlarge"
    training_source_uri: str = ""  # s3://.../sourcedir.tar.gz: this repository (script mode)
    training_max_runtime_s: int = 3600
    training_hyperparameters: str = "{}"  # JSON: fine-tuning settings passed to the entry point
    max_training_attempts: int = 3  # a batch whose job fails this often is held, not retried
    # One vote per prediction (issue 19): votes of one user and one day that count towards a
    # batch, and changes of one prediction's correction before it is held.
    feedback_daily_cap: int = 20
    max_correction_revisions: int = 3
    promotion_metric: str = "exprate"
    promotion_margin: float = 0.0  # the candidate must beat production by more than this
    eval_limit: int = 0  # evaluation images per set; 0 = all
    # Monitoring (issue 10): the bearer token Prometheus sends, and the compaction batch.
    metrics_token_secret: str = ""  # Secrets Manager secret id (template.yaml)
    metrics_compaction_batch: int = 500  # deltas folded per scrape: bounds its cost

    @property
    def job_prefix(self) -> str:
        """What the EventBridge rule matches (template.yaml: inktex-<stage>-)."""
        return f"inktex-{self.stage}-"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            data_bucket=env["DATA_BUCKET"],
            model_bucket=env["MODEL_BUCKET"],
            alias_prefix=env["ALIAS_PARAMETER_PREFIX"].rstrip("/"),
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR", "/tmp/inktex-models")),
            alias_max_age_s=int(env.get("ALIAS_MAX_AGE_S", "30")),
            upload_url_expiry_s=int(env.get("UPLOAD_URL_EXPIRY_S", "900")),
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES", str(20 * 1024 * 1024))),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", str(4 * 1024 * 1024))),
            operators_group=env.get("OPERATORS_GROUP", "operators"),
            stage=env.get("STAGE", "dev"),
            threshold_parameter=env.get("RETRAINING_THRESHOLD_PARAMETER", ""),
            training_role_arn=env.get("TRAINING_ROLE_ARN", ""),
            training_image=env.get("TRAINING_IMAGE", ""),
            training_instance_type=env.get("TRAINING_INSTANCE_TYPE", "ml.g5.xlarge"),
            training_source_uri=env.get("TRAINING_SOURCE_URI", ""),
            training_max_runtime_s=int(env.get("TRAINING_MAX_RUNTIME_S", "3600")),
            training_hyperparameters=env.get("TRAINING_HYPERPARAMETERS", "{}"),
            max_training_attempts=int(env.get("MAX_TRAINING_ATTEMPTS", "3")),
            feedback_daily_cap=int(env.get("FEEDBACK_DAILY_CAP", "20")),
            max_correction_revisions=int(env.get("MAX_CORRECTION_REVISIONS", "3")),
            promotion_metric=env.get("PROMOTION_METRIC", "exprate"),
            promotion_margin=float(env.get("PROMOTION_MARGIN", "0")),
            eval_limit=int(env.get("EVAL_LIMIT", "0")),
            metrics_token_secret=env.get("METRICS_TOKEN_SECRET", ""),
            metrics_compaction_batch=int(env.get("METRICS_COMPACTION_BATCH", "500")),
        )
