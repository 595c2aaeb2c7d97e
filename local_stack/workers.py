"""Functions as Lambda runs them: each function a pool of containers (processes) up to its
concurrency, each with a cold start on first use and warm after; and the pollers that
deliver asynchronous events.

A container is a process that imports the function's handler with the environment
template.yaml gives it, plus what differs locally (the emulator's endpoint, the stack's
keys, a cache folder in the state directory), then answers one event at a time over a
socket. Its stdout and stderr (Powertools' structured logs) go to
`<state>/logs/<Function>.log`, which `inktex logs` reads. With INKTEX_RECORD_AWS_CALLS set,
it records every AWS call it makes (call_recorder.py). A handler that runs past its timeout
is killed and that container's next event gets a cold start, as in Lambda.

Concurrency is Lambda's: a function runs as many events at once as it has containers, up to
its `ReservedConcurrentExecutions` in template.yaml, else `DEFAULT_CONCURRENCY`; an event
past that waits for a container to be free. A slow request (a large body being decoded)
holds up one container, not another user's request.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from local_stack import call_recorder
from local_stack.template import Function

log = logging.getLogger(__name__)

# Containers per function when template.yaml reserves none. Four on a two-core machine:
# two run while two wait on I/O or the CPU, so a few slow requests do not queue everyone
# else behind them. Containers start on demand (each holds its own copy of the model).
DEFAULT_CONCURRENCY = 4
_CHILD = "from local_stack.workers import _serve; _serve()"


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


def _serve() -> None:
    """A container's process: import the handler once, then answer events until closed."""
    conn = Connection(int(os.environ.pop("INKTEX_LOCAL_WORKER_FD")))
    logical_id, handler, context = conn.recv()
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
        except (EOFError, OSError):  # the stack closed this container: end now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # no interpreter teardown (seconds of it, with boto3 and onnxruntime)
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


class Container:
    """One process of a function; its invocations take turns."""

    def __init__(self, runtime: FunctionRuntime, generation: int):
        self.runtime, self.generation = runtime, generation
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        r = self.runtime
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
        env.update(r.env)
        env["INKTEX_LOCAL_WORKER_FD"] = str(theirs.fileno())
        with open(r.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
            )
        theirs.close()
        self.conn = Connection(ours.detach())
        context = {
            "function_name": r.function.name,
            "memory_limit_in_mb": r.function.memory_mb,
            "invoked_function_arn": r.arn,
            "log_group_name": f"/aws/lambda/{r.function.name}",
        }
        self.conn.send((r.function.logical_id, r.function.handler, context))

    def invoke(self, event: dict, timeout: int):
        if not self.alive:
            self.start()
        request_id = str(uuid.uuid4())
        try:
            self.conn.send((event, request_id, timeout))
            # a cold start's imports do not count against the handler's timeout here
            if not self.conn.poll(timeout + 30):
                self.kill()
                raise FunctionError(f"Task timed out after {timeout} seconds")
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            raise FunctionError(f"the function's process exited ({exc!r})") from exc

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
        self._close()

    def stop(self) -> None:
        """Close its socket (the process ends its loop), then make sure it has gone."""
        self._close()
        self.wait()

    def wait(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.process = None

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


_AMBIENT = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class FunctionRuntime:
    """A function's containers: up to `concurrency` events at once, one per container."""

    def __init__(
        self,
        function: Function,
        env: dict[str, str],
        log_dir: Path,
        arn: str,
        concurrency: int = DEFAULT_CONCURRENCY,
    ):
        self.function, self.env, self.arn = function, env, arn
        self.concurrency = max(1, concurrency)
        self.log_path = Path(log_dir) / f"{function.logical_id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._idle: list[Container] = []
        self._busy: set[Container] = set()
        self._generation = 0  # stop() starts a new one: older containers end when free

    def _acquire(self) -> Container:
        with self._cond:
            while True:
                if self._idle:
                    container = self._idle.pop()
                    break
                if len(self._busy) < self.concurrency:
                    container = Container(self, self._generation)
                    break
                self._cond.wait()
            self._busy.add(container)
            return container

    def _release(self, container: Container) -> None:
        with self._cond:
            self._busy.discard(container)
            if container.alive and container.generation == self._generation:
                self._idle.append(container)
            else:
                container.stop()
            self._cond.notify()

    def warm(self) -> None:
        """A cold start now, in the caller's thread, so the first event finds it warm."""
        container = self._acquire()
        try:
            if not container.alive:
                container.start()
        finally:
            self._release(container)

    def invoke(self, event: dict):
        container = self._acquire()
        try:
            status, value = container.invoke(event, self.function.timeout_s)
        finally:
            self._release(container)
        if status != "ok":
            raise FunctionError(value)
        return value

    def containers(self) -> int:
        with self._cond:
            return len(self._idle) + len(self._busy)

    def stop(self, wait: bool = True) -> list[Container]:
        """Every idle container ends now, busy ones when their event is done; the next
        event gets a cold start. With `wait=False` their sockets are closed and the
        containers returned, for the caller to `wait()` on (a whole stack stops at once)."""
        with self._cond:
            self._generation += 1
            idle, self._idle = self._idle, []
        for container in idle:
            container._close()
        if wait:
            for container in idle:
                container.wait()
        return idle

    def kill(self) -> None:
        """SIGKILL every container (a finaliser's last resort)."""
        with self._cond:
            everyone = [*self._idle, *self._busy]
            self._idle = []
            self._generation += 1
        for container in everyone:
            container.kill()


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
        on_done=None,
    ):
        super().__init__(name=f"poll-{runtime.function.logical_id}", daemon=True)
        self.sqs, self.queue_url, self.runtime = sqs, queue_url, runtime
        self.max_retries, self.on_failure_url = max_retries, on_failure_url
        self.unwrap = unwrap or json.loads
        self.on_done = on_done  # called with each event finished with, before its deletion
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
        if self.on_done is not None:
            self.on_done(event)
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
