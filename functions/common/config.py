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
    operators_group: str = "operators"  # Cognito group that sees the registry's details

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
            operators_group=env.get("OPERATORS_GROUP", "operators"),
        )
