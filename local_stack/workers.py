"""Functions as Lambda runs them: one process per function (its own environment, a cold start
on first use, a warm container after), and the pollers that deliver asynchronous events.

A function's process imports its handler with the environment template.yaml gives it, plus
what differs locally (the emulator's endpoint, fake credentials, a cache folder in the state
directory). Its stdout and stderr (Powertools' structured logs) go to
`<state>/logs/<Function>.log`, which `inktex logs` reads. With INKTEX_RECORD_AWS_CALLS set,
the process records every AWS call it makes (call_recorder.py). A handler that runs past its
timeout is killed and the next event gets a fresh process, as in Lambda.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from local_stack import call_recorder
from local_stack.template import Function

log = logging.getLogger(__name__)


class FunctionError(Exception):
    """A handler raised, timed out or its process died; the message says which."""


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


def _serve(
    conn, logical_id: str, handler: str, env: dict[str, str], log_path: str, context: dict
) -> None:
    """The function's process: import the handler once, then answer events until closed."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(env)
    call_recorder.install_from_env(logical_id)  # before the handler builds any client
    module_name, func_name = handler.rsplit(".", 1)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except BaseException as exc:  # an init error fails every invocation, as in Lambda
        traceback.print_exc()
        init_error = f"{type(exc).__name__}: {exc}"
        func = None
    while True:
        try:
            event, request_id, timeout_s = conn.recv()
        except EOFError:
            return
        if func is None:
            conn.send(("error", f"Runtime.ImportModuleError: {init_error}"))
            continue
        ctx = LambdaContext(aws_request_id=request_id, deadline=time.time() + timeout_s, **context)
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        try:
            result = func(event, ctx)
            json.dumps(result)  # Lambda returns JSON: fail here, not in the caller
            conn.send(("ok", result))
        except Exception as exc:
            traceback.print_exc()
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        print(f"END RequestId: {request_id}", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()


class FunctionRuntime:
    """One warm 'container' for a function; invocations take turns, as one container does."""

    def __init__(self, function: Function, env: dict[str, str], log_dir: Path, arn: str):
        self.function, self.env, self.arn = function, env, arn
        self.log_path = Path(log_dir) / f"{function.logical_id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._process = None
        self._conn = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        context = {
            "function_name": self.function.name,
            "memory_limit_in_mb": self.function.memory_mb,
            "invoked_function_arn": self.arn,
            "log_group_name": f"/aws/lambda/{self.function.name}",
        }
        self._process = ctx.Process(
            target=_serve,
            args=(
                child,
                self.function.logical_id,
                self.function.handler,
                self.env,
                str(self.log_path),
                context,
            ),
            name=f"inktex-{self.function.logical_id}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent

    def warm(self) -> None:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()

    def invoke(self, event: dict):
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            request_id = str(uuid.uuid4())
            timeout = self.function.timeout_s
            try:
                self._conn.send((event, request_id, timeout))
                # a cold start's imports do not count against the handler's timeout here
                if not self._conn.poll(timeout + 30):
                    self._kill()
                    raise FunctionError(f"Task timed out after {timeout} seconds")
                status, value = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
                self._kill()
                raise FunctionError(f"the function's process exited ({exc!r})") from exc
        if status != "ok":
            raise FunctionError(value)
        return value

    def kill(self) -> None:
        """SIGKILL the function's process (a finaliser's last resort)."""
        self._kill()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        self._process = None

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._process is not None:
                self._process.join(3)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join(3)
            self._process = self._conn = None


class QueuePoller(threading.Thread):
    """Delivers a queue's messages (S3 notifications, EventBridge events) to a function as
    asynchronous invocations: retried up to `max_retries` times, then sent to the
    function's on-failure destination with Lambda's invocation record around it."""

    def __init__(
        self,
        sqs,
        queue_url: str,
        runtime: FunctionRuntime,
        max_retries: int = 2,
        on_failure_url: str | None = None,
        unwrap=None,
    ):
        super().__init__(name=f"poll-{runtime.function.logical_id}", daemon=True)
        self.sqs, self.queue_url, self.runtime = sqs, queue_url, runtime
        self.max_retries, self.on_failure_url = max_retries, on_failure_url
        self.unwrap = unwrap or json.loads
        self.stopping = threading.Event()
        self.idle = threading.Event()  # set while the queue has nothing for us

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                got = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=1,
                    AttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as exc:  # the emulator is going away
                if not self.stopping.is_set():
                    log.warning("polling %s failed: %s", self.queue_url, exc)
                    time.sleep(0.5)
                continue
            messages = got.get("Messages", [])
            if not messages:
                self.idle.set()
                continue
            self.idle.clear()
            for message in messages:
                self._deliver(message)

    def _deliver(self, message: dict) -> None:
        receipt = message["ReceiptHandle"]
        event = self.unwrap(message["Body"])
        if event.get("Event") == "s3:TestEvent":
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
            return
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            self.runtime.invoke(event)
        except FunctionError as exc:
            log.warning(
                "%s failed (attempt %d): %s", self.runtime.function.logical_id, attempt, exc
            )
            if attempt <= self.max_retries:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=attempt
                )
                return
            if self.on_failure_url:
                self.sqs.send_message(
                    QueueUrl=self.on_failure_url,
                    MessageBody=json.dumps(self._failure_record(event, attempt, str(exc))),
                )
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

    def _failure_record(self, event: dict, attempts: int, error: str) -> dict:
        return {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{self.runtime.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error},
        }

    def stop(self) -> None:
        self.stopping.set()
