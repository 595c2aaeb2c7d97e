"""Which AWS operations each function performs, measured: an opt-in recorder for least privilege.

`INKTEX_RECORD_AWS_CALLS=calls.jsonl inktex up` (or `LocalSettings.function_env`) makes each
function's process hook boto3's default session, from which every client the functions
build (`functions.common.wiring`, the metrics function's) copies its event hooks, before
the handler is imported. Each AWS operation appends one JSON line to the file when it has
been answered:

    {"function": "ApiFunction", "service": "s3", "operation": "GetObject",
     "params": {"Bucket": "...", "Key": "..."}, "presigned": false, "error": "NoSuchKey"}

Only the parameters that name a resource are kept (never a body); the error code matters to
IAM (a read that finds nothing is answered 404 only with s3:ListBucket, else 403). A
presigned URL is recorded when it is signed, as the operation it allows: S3 checks the
request made with it against the signer's policy. The function is known per process: the
local stack runs each function in a process of its own (local_stack/workers.py). The
least-privilege tests compare the file with template.yaml (tests/iam_policy.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

ENV = "INKTEX_RECORD_AWS_CALLS"

# Parameters that say which resource a call touches (bucket, key, prefix, version, copy
# source, batch delete, parameter or secret name, training job, role, tags).
RESOURCE_PARAMS = (
    "Bucket",
    "Key",
    "Prefix",
    "VersionId",
    "CopySource",
    "Delete",
    "Name",
    "Names",
    "Path",
    "SecretId",
    "TrainingJobName",
    "RoleArn",
    "Tags",
)
_PARAMS = "call_recorder_params"  # where a call's parameters wait for its answer


class CallRecorder:
    """Botocore hooks that pass each call, as a dict, to `sink`, labelled with `function`."""

    def __init__(self, sink: Callable[[dict], None], function: str = ""):
        self.sink, self.function = sink, function

    def install(self, events) -> None:
        events.register("before-parameter-build", self._keep_params)
        events.register("after-call", self._after_call)
        events.register("after-call-error", self._after_error)

    def uninstall(self, events) -> None:
        events.unregister("before-parameter-build", self._keep_params)
        events.unregister("after-call", self._after_call)
        events.unregister("after-call-error", self._after_error)

    def _keep_params(self, params, model, context, **_) -> None:
        kept = {k: params[k] for k in RESOURCE_PARAMS if k in params}
        if context.get("is_presign_request"):  # no request is sent: the URL is the call
            self._record(model, kept, presigned=True)
        else:
            context[_PARAMS] = kept

    def _after_call(self, http_response, parsed, model, context, **_) -> None:
        error = parsed.get("Error", {}).get("Code") if http_response.status_code >= 300 else None
        self._record(model, context.get(_PARAMS, {}), error=error)

    def _after_error(self, exception, model, context, **_) -> None:  # no answer at all
        self._record(model, context.get(_PARAMS, {}), error=type(exception).__name__)

    def _record(
        self, model, params: dict, presigned: bool = False, error: str | None = None
    ) -> None:
        if self.function:  # calls made by no function (test setup, say) are not recorded
            self.sink(
                {
                    "function": self.function,
                    "service": model.service_model.service_name,
                    "operation": model.name,
                    "params": params,
                    "presigned": presigned,
                    "error": error,  # S3's "NoSuchKey", say: what the call was answered
                }
            )


def appender(path: str) -> Callable[[dict], None]:
    """A sink that appends JSON lines; one write per line, so processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(call: dict) -> None:
        os.write(fd, (json.dumps(call, default=str) + "\n").encode())

    return append


def install_from_env(function: str) -> CallRecorder | None:
    """In a function's process: record its calls to the file $INKTEX_RECORD_AWS_CALLS names."""
    path = os.environ.get(ENV)
    if not path:
        return None
    import boto3

    recorder = CallRecorder(appender(path), function)
    recorder.install(boto3._get_default_session().events)
    return recorder


def read_calls(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
