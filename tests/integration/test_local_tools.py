"""`inktex drop`, `inktex invoke` and the DVC remote, against a running local stack on free
ports (conftest.stack: one stack for this module)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stack_kit import EVENTS, IMAGE, OTHER_IMAGE, POLL_S, REPO, TINY_MODEL

from inktex import cli
from local_stack.tokens import subject_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def inktex(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`inktex ARGV` in a fresh process (invoke changes its process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "inktex.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_drop_prints_what_predict_prints(stack, capsys, tmp_path):
    files = [IMAGE, OTHER_IMAGE]
    assert cli.main(["predict", "--model", str(TINY_MODEL), *map(str, files)]) == 0
    expected = capsys.readouterr().out.splitlines()
    assert len(expected) == 2

    owner = subject_of("alice")
    assert stack.cli("drop", *map(str, files), "--user", owner, "--timeout", str(POLL_S)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{f}\t{latex}" for f, latex in zip(files, expected, strict=True)]
    # where the drop went, and whose history it is in
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/{owner}/")["Contents"]
    assert {o["Key"] for o in listed} >= {f"uploads/{owner}/{f.name}" for f in files}

    # dropped again (a new version of the same key): a new prediction, found as well
    assert stack.cli("drop", str(IMAGE), "--user", owner, "--timeout", str(POLL_S)) == 0
    assert capsys.readouterr().out.splitlines() == [f"{IMAGE}\t{expected[0]}"]

    # an unusable upload: its error record's reason, and a failing exit code
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"these bytes are not a picture")
    assert (
        stack.cli("drop", str(bad), "--timeout", str(POLL_S)) == 1
    )  # no --user: uploads/_anonymous/
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{bad}\terror: ") and len(line) > len(f"{bad}\terror: ")


def test_invoke_runs_a_handler_here_against_the_stack(stack):
    done = inktex(
        "invoke", "ApiFunction", "-e", str(EVENTS / "api_health.json"), "--state-dir",
        str(stack.state_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the return value alone; logs go to stderr
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] == "ok"
    assert "No application metrics to publish" not in done.stderr  # GET /health adds none

    # GET /models reads the model registry: the stack's emulator, with its bundled model
    name = stack.info["functions"]["ApiFunction"]  # the physical name works too
    done = inktex(
        "invoke", name, "-e", str(EVENTS / "api_get_models.json"), "--state-dir",
        str(stack.state_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(json.loads(done.stdout)["body"])
    assert body["production"]["version"] == stack.info["model"]["version"]


def test_invoke_reports_an_unknown_function(stack):
    done = inktex(
        "invoke", "NoSuchFunction", "-e", str(EVENTS / "api_health.json"), "--state-dir",
        str(stack.state_dir),
    )  # fmt: skip
    assert done.returncode != 0
    assert "ApiFunction" in done.stderr  # the known ones are listed


def test_the_committed_dvc_remote_is_the_stacks_dvc_bucket(stack):
    from configobj import ConfigObj  # what DVC reads its config with

    config = ConfigObj(str(REPO / ".dvc" / "config"))
    assert config["core"]["remote"] == "local"
    remote = config['remote "local"']
    assert remote["url"] == f"s3://{stack.info['resources']['DvcBucketName']}"
    assert remote["endpointurl"] == "http://127.0.0.1:4566"  # `inktex up`'s default port
    # the keys are the stack's own, from its credentials file in the default state folder
    assert remote["profile"] == stack.info["aws_credentials"]["profile"]
    assert remote["credentialpath"] == "~/.local/state/inktex/local/secrets/aws-credentials"
    assert "access_key_id" not in remote and "secret_access_key" not in remote


def test_dvc_push_and_pull_against_the_stack(stack, tmp_path):
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    ambient = ("PROFILE", "ENDPOINT_URL", "SESSION_TOKEN", "SHARED_CREDENTIALS_FILE")
    ambient += ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")
    for key in ambient:
        env.pop(f"AWS_{key}", None)

    def run(*argv: str) -> str:
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", tmp_path / ".dvc" / "config")
    run(dvc, "remote", "modify", "--local", "local", "endpointurl", stack.info["aws_endpoint"])
    credentials = stack.info["aws_credentials"]["file"]
    run(dvc, "remote", "modify", "--local", "local", "credentialpath", credentials)
    data = tmp_path / "data.txt"
    data.write_text("a tracked file\n")
    run(dvc, "add", "-q", "data.txt")
    run(dvc, "push")
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DvcBucketName"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) >= 1

    data.unlink()
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    run(dvc, "pull")
    assert data.read_text() == "a tracked file\n"
