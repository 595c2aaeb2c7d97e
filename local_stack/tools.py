"""`inktex drop` and `inktex invoke`: the running local stack's S3 drop and a handler run here.

`drop` puts files where a phone or `aws s3 cp` would (`uploads/<owner>/` of the data bucket)
and reads back the prediction records the drop function writes. `invoke` runs one function's
handler in this process with a sample event, in the environment the stack gives that
function (pointed at the stack's emulator), as `sam local invoke` does in a container.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from local_stack.stack import LocalSettings, LocalStack, LocalStackError

ANONYMOUS = "_anonymous"  # functions.common.store.ANONYMOUS: drops that belong to no user


def aws_client(info: dict, service: str):
    from local_stack.emulator import stack_client

    return stack_client(service, info)


# --- drop ---------------------------------------------------------------------------------


def drop_key(owner: str | None, path: Path) -> str:
    return f"uploads/{owner or ANONYMOUS}/{Path(path).name}"


def drop(info: dict, files: list[Path], owner: str | None = None, timeout_s: float = 30.0):
    """Upload each file under uploads/<owner>/ and yield (file, record or None) as each
    file's prediction record appears (None: none within `timeout_s` of the uploads)."""
    from functions.common.store import PredictionStore, iso

    s3 = aws_client(info, "s3")
    bucket = info["resources"]["DataBucketName"]
    store = PredictionStore(s3, bucket)
    # A record names the object version it read; without versioning, the ETag and the S3
    # event's time (its created_at, at or after the upload) tell a new drop from an old one.
    since = iso(datetime.now(UTC) - timedelta(seconds=1))
    pending = {}
    for path in files:
        key = drop_key(owner, path)
        with open(path, "rb") as f:
            put = s3.put_object(Bucket=bucket, Key=key, Body=f.read())
        pending[Path(path)] = (key, put.get("VersionId"), put.get("ETag", "").strip('"'))
    deadline = time.time() + timeout_s
    while pending:
        records, _ = store.list_records(owner, limit=100)
        for path, (key, version, etag) in list(pending.items()):
            for record in records:
                if record.get("source_key") != key:
                    continue
                if version and record.get("source_version") != version:
                    continue
                if not version and (
                    record.get("source_etag", "").strip('"') != etag
                    or record.get("created_at", "") < since
                ):
                    continue
                del pending[path]
                yield path, record
                break
        if pending and time.time() >= deadline:
            for path in list(pending):
                del pending[path]
                yield path, None
        elif pending:
            time.sleep(0.3)


def describe(record: dict | None, timeout_s: float) -> tuple[bool, str]:
    """(ok, the line's text): the LaTeX, or why there is none."""
    if record is None:
        return False, f"error: no prediction within {timeout_s:.0f} s (`inktex logs`)"
    if record.get("status") == "ok":
        return True, record.get("latex", "")
    return False, f"error: {record.get('error', record.get('status', 'unknown'))}"


# --- invoke -------------------------------------------------------------------------------


def stack_for(info: dict) -> LocalStack:
    """A LocalStack object for the running stack (its template, settings and state folder);
    nothing is started."""
    api = urlsplit(info["api_url"])
    aws = urlsplit(info["aws_endpoint"])
    settings = LocalSettings(
        host=api.hostname or "127.0.0.1",
        api_port=api.port or 3000,
        aws_port=aws.port or 4566,
        state_dir=Path(info["state_dir"]),
        parameter_overrides=dict(info.get("parameter_overrides") or {}),
    )
    return LocalStack(settings)


def find_function(stack: LocalStack, name: str) -> str:
    """A function's logical id from its logical id or its physical name."""
    functions = stack.stack.functions()
    if name in functions:
        return name
    for logical_id, function in functions.items():
        if function.name == name:
            return logical_id
    known = ", ".join(sorted(functions))
    raise LocalStackError(f"no function {name!r} in template.yaml (known: {known})")


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The handler's logs (Powertools writes to stdout) go to stderr, so that stdout is the
    return value alone, as with `sam local invoke`."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def invoke(info: dict, function: str, event: dict) -> tuple[bool, object]:
    """Run the function's handler here: (True, its return value) or (False, Lambda's error
    payload: errorMessage, errorType, stackTrace)."""
    import traceback

    from local_stack.workers import LambdaContext

    stack = stack_for(info)
    logical_id = find_function(stack, function)
    spec = stack.stack.functions()[logical_id]
    env = stack.function_env(logical_id, info["aws_endpoint"])
    module_name, func_name = spec.handler.rsplit(".", 1)
    context = LambdaContext(
        function_name=spec.name,
        memory_limit_in_mb=spec.memory_mb,
        invoked_function_arn=stack.stack.get_att(logical_id, "Arn"),
        aws_request_id=str(uuid.uuid4()),
        deadline=time.time() + spec.timeout_s,
        log_group_name=f"/aws/lambda/{spec.name}",
    )
    with _environment(env), _stdout_to_stderr(), warnings.catch_warnings():
        # Powertools warns when a request added no metric (GET /health): noise here, where
        # stdout is the return value and stderr the handler's own logs.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        try:
            handler = getattr(importlib.import_module(module_name), func_name)
            result = handler(event, context)
            json.dumps(result)
        except Exception as exc:
            traceback.print_exc()
            return False, {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
    return True, result
