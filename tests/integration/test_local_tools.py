"""`inktex drop`, `inktex invoke` and the DVC remote, against a running local stack on free
ports (the fixture of test_local_stack.py, one stack for this module)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_local_stack import IMAGE, REPO, TINY_MODEL, LocalStackClient, free_port

from inktex import cli
from local_stack.tokens import subject_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EVENTS = REPO / "events"
OTHER_IMAGE = REPO / "tests" / "fixtures" / "inkml" / "27_em_120.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    client = LocalStackClient(tmp_path_factory.mktemp("stack"), free_port(), free_port())
    client.up()
    yield client
    client.down()


def inktex(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
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
    assert stack.cli("drop", *map(str, files), "--user", owner) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{f}\t{latex}" for f, latex in zip(files, expected, strict=True)]
    # where the drop went, and whose history it is in
    s3 = stack.aws("s3")
    bucket = stack.info["resources"]["DataBucketName"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"uploads/{owner}/")["Contents"]
    assert {o["Key"] for o in listed} >= {f"uploads/{owner}/{f.name}" for f in files}

    # dropped again (a new version of the same key): a new prediction, found as well
    assert stack.cli("drop", str(IMAGE), "--user", owner) == 0
    assert capsys.readouterr().out.splitlines() == [f"{IMAGE}\t{expected[0]}"]

    # an unusable upload: its error record's reason, and a failing exit code
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"these bytes are not a picture")
    assert stack.cli("drop", str(bad)) == 1  # no --user: uploads/_anonymous/
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


def test_dvc_push_and_pull_against_the_stack(stack, tmp_path):
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        env.pop(key, None)

    def run(*argv: str) -> str:
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", tmp_path / ".dvc" / "config")
    run(dvc, "remote", "modify", "--local", "local", "endpointurl", stack.info["aws_endpoint"])
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
