"""Fixtures that start stacks and servers for the integration tests, and always stop them.

Each one registers its stop (a finaliser) right after it starts something, so a failure or
a pytest-timeout in the middle of a module leaves nothing running; a stack that `inktex down`
cannot stop is killed with its whole process group (stack_kit.LocalStackClient.stop).
Plain helpers (requests, ports, waiting) live in stack_kit.py.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from stack_kit import REPO, TINY_MODEL, LocalStackClient, free_port


@pytest.fixture(scope="module")
def launch_stack(request, tmp_path_factory) -> Callable[..., LocalStackClient]:
    """`launch_stack(*up_args, model=...)`: `inktex up --detach` on free ports in a fresh
    state folder; stopped (or killed) when the module ends, however it ends."""

    def launch(*extra: str, model: Path = TINY_MODEL) -> LocalStackClient:
        client = LocalStackClient(tmp_path_factory.mktemp("stack"))
        request.addfinalizer(client.stop)  # before `up`: a half-started stack is stopped too
        client.up(*extra, model=model)
        return client

    return launch


@pytest.fixture(scope="module")
def stack(launch_stack) -> LocalStackClient:
    """A stack with the test model, as `inktex up --detach` starts it."""
    return launch_stack()


@pytest.fixture(scope="module")
def start_in_process(request):
    """`start_in_process(settings)`: a LocalStack in this process (tests that reach into it:
    its functions, its gateway); stopped when the module ends, its function processes
    killed when stopping fails."""
    from local_stack.stack import LocalStack

    def start(settings) -> LocalStack:
        local = LocalStack(settings)

        def stop() -> None:
            try:
                local.stop(snapshot=False)
            finally:
                for runtime in local.runtimes.values():
                    with contextlib.suppress(Exception):
                        runtime.kill()

        request.addfinalizer(stop)
        local.start()
        return local

    return start


@pytest.fixture
def capturing_gateway(tmp_path):
    """The gateway alone on a free port, its functions replaced by a recorder: (url,
    issuer, the events it sent)."""
    from local_stack.gateway import Gateway
    from local_stack.template import Stack
    from local_stack.tokens import Issuer

    stack = Stack.from_file(REPO / "template.yaml")
    api = stack.http_api()
    authorizer = next(iter(api.authorizers.values()))
    issuer = Issuer.load(tmp_path, authorizer.issuer, authorizer.audience[0])
    seen: list[dict] = []

    def invoke(function, event):
        seen.append(event)
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}

    gateway = Gateway(api, invoke, issuer, stack.account_id, stack.region, [], None, {})
    port = free_port()
    server = gateway.serve("127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", issuer, seen
    finally:
        server.shutdown()
        server.server_close()
