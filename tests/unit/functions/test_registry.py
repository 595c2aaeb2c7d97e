"""The model registry and `inktex models`, against moto."""

from __future__ import annotations

import json
import shutil

import pytest
from lambda_testkit import ENV, TINY_MODEL, TINY_VERSION

from functions.common.model_bucket import checkpoint_key, package_key
from functions.common.registry import RegistryError
from inktex.cli import main
from inktex.errors import ModelPackageError


def test_promote_and_rollback_keep_a_history(aws):
    aws.upload_package(TINY_MODEL)
    aws.upload_package(TINY_MODEL, "v2")
    first = aws.registry.promote(TINY_VERSION, reason="first", by="alice")
    assert (first.previous, first.version) == ("", TINY_VERSION)
    aws.registry.promote("v2", reason="better", by="bob")
    back = aws.registry.rollback(reason="regression", by="carol")
    assert (back.previous, back.version, back.reason) == ("v2", TINY_VERSION, "regression")
    history = aws.registry.history("production")
    assert [(m.version, m.reason, m.by) for m in history] == [
        (TINY_VERSION, "regression", "carol"),
        ("v2", "better", "bob"),
        (TINY_VERSION, "first", "alice"),
        ("", "created by the stack", ""),
    ]
    assert all(m.moved_at for m in history[:3])
    assert aws.registry.alias("candidate").version == ""


def test_refusals(aws):
    with pytest.raises(RegistryError, match="no model package"):
        aws.registry.promote("missing", reason="x")
    with pytest.raises(RegistryError, match="no previous"):
        aws.registry.rollback(reason="x")
    aws.upload_package(TINY_MODEL)
    aws.registry.promote(TINY_VERSION, reason="x")
    with pytest.raises(RegistryError, match="already"):
        aws.registry.promote(TINY_VERSION, reason="x")
    with pytest.raises(RegistryError, match="unknown alias"):
        aws.registry.alias("staging")


def test_versions_and_verify(aws, tmp_path):
    aws.upload_package(TINY_MODEL)
    (listed,) = aws.registry.versions()
    assert listed["version"] == TINY_VERSION and listed["metrics"] == {}
    assert aws.registry.verify(TINY_VERSION).version == TINY_VERSION
    aws.s3.put_object(Bucket=aws.model_bucket, Key=f"models/{TINY_VERSION}/vocab.json", Body=b"{}")
    with pytest.raises(ModelPackageError, match="vocab.json"):
        aws.registry.verify(TINY_VERSION)


def test_a_download_that_loses_a_race_uses_the_winners_copy(aws, tmp_path, monkeypatch):
    """Two workers of one function share the local stack's cache: the second to finish a
    download finds the first's copy in place (a loaded CI run caught this as a 503)."""
    aws.upload_package(TINY_MODEL)
    dest = tmp_path / "cache" / TINY_VERSION
    fetch, raced = aws.registry.s3.download_file, []

    def another_worker_finishes_first(*args, **kwargs):
        if not raced:
            raced.append(True)
            aws.registry.download(TINY_VERSION, dest)
        return fetch(*args, **kwargs)

    monkeypatch.setattr(aws.registry.s3, "download_file", another_worker_finishes_first)
    assert aws.registry.download(TINY_VERSION, dest) == dest and raced
    assert aws.registry.verify(TINY_VERSION).version == TINY_VERSION
    assert [p.name for p in dest.parent.iterdir()] == [TINY_VERSION]  # no staging left


def test_register_uploads_the_package_and_its_checkpoint_once(aws, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(TINY_MODEL, package)
    (package / "checkpoint.pt").write_bytes(b"not in the manifest")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    assert aws.registry.register(package, checkpoint) == TINY_VERSION
    listed = aws.s3.list_objects_v2(Bucket=aws.model_bucket)["Contents"]
    manifest = json.loads((TINY_MODEL / "manifest.json").read_text())
    assert sorted(o["Key"] for o in listed) == sorted(
        [package_key(TINY_VERSION, name) for name in [*manifest["files"], "manifest.json"]]
        + [checkpoint_key(TINY_VERSION), checkpoint_key(TINY_VERSION, "VERSION")]
    )
    base = aws.s3.get_object(Bucket=aws.model_bucket, Key=checkpoint_key(TINY_VERSION, "VERSION"))
    assert base["Body"].read().decode() == TINY_VERSION  # a fine-tune from it names its base
    assert aws.registry.verify(TINY_VERSION).version == TINY_VERSION
    checkpoint.write_bytes(b"other weights")
    aws.registry.register(package, checkpoint)  # again: nothing is replaced
    body = aws.s3.get_object(Bucket=aws.model_bucket, Key=checkpoint_key(TINY_VERSION))["Body"]
    assert body.read() == b"weights"


def test_register_refuses_an_altered_package_before_uploading_anything(aws, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(TINY_MODEL, package)
    (package / "vocab.json").write_text("{}")
    with pytest.raises(ModelPackageError, match="vocab.json"):
        aws.registry.register(package, tmp_path / "model.pt")
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=aws.model_bucket)


def cli(*argv: str) -> int:
    return main(["models", "--bucket", ENV["MODEL_BUCKET"], "--stage", "dev", *argv])


def test_cli_list_promote_rollback(aws, capsys):
    aws.upload_package(TINY_MODEL)
    aws.upload_package(TINY_MODEL, "v2")
    assert cli("promote", TINY_VERSION, "--reason", "first") == 0
    assert "production: (none) -> " + TINY_VERSION in capsys.readouterr().out
    assert cli("promote", "v2") == 2  # its manifest names another version
    assert "v2" in capsys.readouterr().err
    assert cli("promote", "v2", "--no-verify", "--alias", "candidate") == 0
    capsys.readouterr()
    assert cli("list") == 0
    out = capsys.readouterr().out
    assert f"production  {TINY_VERSION}" in out and "candidate   v2" in out
    assert cli("list", "--json") == 0
    described = json.loads(capsys.readouterr().out)
    assert described["aliases"]["production"]["history"][0]["reason"] == "first"
    assert cli("rollback") == 2 and "no previous" in capsys.readouterr().err
    assert cli("promote", "v2", "--no-verify") == 0
    assert cli("rollback", "--reason", "regression") == 0
    assert f"production: v2 -> {TINY_VERSION} (regression)" in capsys.readouterr().out
