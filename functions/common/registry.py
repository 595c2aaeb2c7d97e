"""The model registry: packages under `models/<version>/` in the model bucket, aliases in SSM.

Each alias (`production`, `candidate`) is one SSM String parameter whose value is the JSON of
its latest move: `{"alias", "version", "previous", "moved_at", "reason", "by"}`. SSM keeps
every value a parameter has had, so the parameter's history *is* the alias's history (which
alias moved, when, from what, to what, why), with no second store to keep in step. The
functions read the value through Powertools Parameters with a short max_age; promotions
therefore reach every warm container within that many seconds.

A package gets in through `ModelRegistry.register`, whoever made it (the fine-tuning job,
the local stack's bundled model, the tests); the bucket's layout is model_bucket.py's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError

from functions.common.aliases import ALIASES, AliasMove, alias_parameter, version_of
from functions.common.model_bucket import (
    CHECKPOINT_VERSION_FILE,
    MODELS_PREFIX,
    checkpoint_key,
    package_key,
    training_result_key,
)
from inktex.errors import InkTeXError
from inktex.package import MANIFEST, ModelPackage

__all__ = ["ALIASES", "AliasMove", "ModelRegistry", "RegistryError", "version_of"]


class RegistryError(InkTeXError):
    """A registry operation that cannot be done as asked (unknown version, nothing to roll back)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ModelRegistry:
    """The registry over one model bucket; `ssm` and `alias_prefix` are needed by the alias
    operations only (the fine-tuning job registers with S3 alone)."""

    def __init__(self, s3, ssm, bucket: str, alias_prefix: str = ""):
        self.s3, self.ssm = s3, ssm
        self.bucket = bucket
        self.alias_prefix = alias_prefix.rstrip("/")

    def parameter_name(self, alias: str) -> str:
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
        return alias_parameter(self.alias_prefix, alias)

    # --- packages -------------------------------------------------------------------------

    def versions(self) -> list[dict]:
        """Every package in the bucket with its metrics, newest upload first."""
        found = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=MODELS_PREFIX, Delimiter="/"
        )
        for page in pages:
            for prefix in page.get("CommonPrefixes", []):
                version = prefix["Prefix"][len(MODELS_PREFIX) :].rstrip("/")
                try:
                    head = self.s3.head_object(Bucket=self.bucket, Key=self._key(version, MANIFEST))
                except ClientError:
                    continue  # a folder without a manifest is not a package (yet)
                found.append(
                    {
                        "version": version,
                        "uploaded_at": head["LastModified"].isoformat(),
                        "metrics": self.metrics(version),
                    }
                )
        return sorted(found, key=lambda v: v["uploaded_at"], reverse=True)

    def has_version(self, version: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(version, MANIFEST))
        except ClientError:
            return False
        return True

    def metrics(self, version: str) -> dict:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(version, "metrics.json"))
            return json.loads(body["Body"].read())
        except (ClientError, ValueError):
            return {}

    def download(self, version: str, dest: Path) -> Path:
        """Fetch a package's files into `dest` (atomically: a partial download never shows)."""
        dest = Path(dest)
        if (dest / MANIFEST).is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
        try:
            keys = self._package_keys(version)
            if not keys:
                raise RegistryError(f"no model package {version} under s3://{self.bucket}/models/")
            for key in keys:
                name = key[len(self._key(version, "")) :]
                if "/" in name or not name:
                    continue  # packages are flat; ignore anything nested
                self.s3.download_file(self.bucket, key, str(staging / name))
            try:
                staging.rename(dest)
            except OSError:  # another worker's download of it finished first: use that one
                if not (dest / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    def verify(self, version: str) -> ModelPackage:
        """Download and check a package (manifest, hashes, version); raises ModelPackageError."""
        with tempfile.TemporaryDirectory() as tmp:
            package = ModelPackage.load(self.download(version, Path(tmp) / version))
        if package.version != version:
            raise RegistryError(f"models/{version}/ holds a package of version {package.version}")
        return package

    def register(self, package: Path, checkpoint: Path | None = None) -> str:
        """Upload a package folder and, when given, its training checkpoint; returns the
        package's version. The package is verified (manifest, hashes) before anything is
        uploaded, and only the files its manifest lists go up (a checkpoint.pt kept in the
        folder does not). Each part is uploaded once: registering again changes nothing."""
        loaded = ModelPackage.load(package)  # raises ModelPackageError before any upload
        version = loaded.version
        if checkpoint is not None and not self._exists(
            checkpoint_key(version, CHECKPOINT_VERSION_FILE)
        ):
            self.s3.upload_file(str(checkpoint), self.bucket, checkpoint_key(version))
            self.s3.put_object(
                Bucket=self.bucket,
                Key=checkpoint_key(version, CHECKPOINT_VERSION_FILE),
                Body=version.encode(),
            )
        if not self.has_version(version):
            manifest = json.loads((loaded.path / MANIFEST).read_text())
            for name in sorted(manifest["files"]):
                self.s3.upload_file(str(loaded.path / name), self.bucket, self._key(version, name))
            self.s3.upload_file(
                str(loaded.path / MANIFEST), self.bucket, self._key(version, MANIFEST)
            )
        return version

    def put_training_result(self, job: str, result: dict) -> None:
        """A fine-tuning job's result record, for the promotion function."""
        self.s3.put_object(
            Bucket=self.bucket,
            Key=training_result_key(job),
            Body=json.dumps(result).encode(),
            ContentType="application/json",
        )

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def _package_keys(self, version: str) -> list[str]:
        keys = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(version, "")
        )
        for page in pages:
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return keys

    @staticmethod
    def _key(version: str, name: str) -> str:
        return package_key(version, name)

    # --- aliases --------------------------------------------------------------------------

    def alias(self, alias: str) -> AliasMove:
        try:
            value = self.ssm.get_parameter(Name=self.parameter_name(alias))["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ParameterNotFound":
                return AliasMove(alias=alias, version="")
            raise
        return AliasMove.from_value(alias, value)

    def history(self, alias: str) -> list[AliasMove]:
        """Every move of an alias, newest first."""
        moves = []
        try:
            pages = self.ssm.get_paginator("get_parameter_history").paginate(
                Name=self.parameter_name(alias)
            )
            for page in pages:
                moves += [AliasMove.from_value(alias, p["Value"]) for p in page["Parameters"]]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ParameterNotFound":
                raise
        return moves[::-1]

    def move(self, alias: str, version: str, reason: str, by: str = "") -> AliasMove:
        if not self.has_version(version):
            raise RegistryError(
                f"no model package {version} in s3://{self.bucket}/models/: "
                "upload it first (see `inktex models list`)"
            )
        current = self.alias(alias)
        if current.version == version:
            raise RegistryError(f"{alias} already points at {version}")
        moved = AliasMove(
            alias=alias,
            version=version,
            previous=current.version,
            moved_at=now_iso(),
            reason=reason,
            by=by,
        )
        self.ssm.put_parameter(
            Name=self.parameter_name(alias), Value=moved.to_json(), Type="String", Overwrite=True
        )
        return moved

    def promote(self, version: str, reason: str, by: str = "", alias: str = "production"):
        return self.move(alias, version, reason, by)

    def rollback(self, reason: str, by: str = "", alias: str = "production") -> AliasMove:
        """Point the alias back at the version it held before its latest move."""
        current = self.alias(alias)
        if not current.previous:
            raise RegistryError(f"{alias} has no previous version to roll back to")
        return self.move(alias, current.previous, reason or f"rollback from {current.version}", by)

    def describe(self) -> dict:
        """The registry's state for operators: aliases with their history, and packages."""
        return {
            "aliases": {
                a: {**asdict(self.alias(a)), "history": [asdict(m) for m in self.history(a)]}
                for a in ALIASES
            },
            "versions": self.versions(),
        }
