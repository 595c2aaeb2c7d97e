"""Plain helpers for the integration tests (fixtures are in this folder's conftest.py).

A module with its own name, not `conftest`, so tests here and in tests/e2e import it without
depending on which conftest.py pytest loaded last.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

from testkit import alive, free_port, other_processes, wait_for  # noqa: F401  (re-exported)

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "tests" / "fixtures" / "inkml" / "518_em_425.png"
OTHER_IMAGE = REPO / "tests" / "fixtures" / "inkml" / "27_em_120.png"
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny_model"
EVENTS = REPO / "events"

# Ceilings for hangs, not performance gates: they hold on a machine with both cores busy.
STARTUP_S = 600  # `inktex up` until the stack answers
STOP_S = 300  # `inktex down` until the process has gone
POLL_S = 300  # an asynchronous effect (a drop's prediction, a queued event)


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body bytes); never raises for an HTTP status. The headers are
    looked up without regard to case, as HTTP's are."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=POLL_S) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def processes_using(state_dir: Path) -> list[int]:
    """The pids whose command line names `state_dir` (a detached `inktex up` passes it as
    --state-dir), found even when the stack never wrote its stack.json."""
    needle = str(state_dir).encode()
    found = []
    for pid, entry in other_processes():
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(pid)
    return found


def kill_groups(pids: list[int]) -> None:
    """SIGKILL each process's whole group (a detached stack leads its own session, with its
    functions' processes in it)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LocalStackClient:
    """A stack run as a user runs it: `inktex up --detach` and `inktex down`."""

    def __init__(self, state_dir: Path, aws_port: int | None = None, api_port: int | None = None):
        self.state_dir = Path(state_dir)
        self.aws_port = aws_port or free_port()
        self.api_port = api_port or free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.info: dict = {}

    def cli(self, *argv: str) -> int:
        from inktex import cli

        return cli.main([*argv, "--state-dir", str(self.state_dir)])

    def up(self, *extra: str, model: Path = TINY_MODEL) -> dict:
        argv = ["up", "--detach", "--aws-port", str(self.aws_port), "--api-port"]
        argv += [str(self.api_port), "--model", str(model), *extra]
        assert self.cli(*argv) == 0
        self.info = json.loads((self.state_dir / "stack.json").read_text())
        return self.info

    def down(self) -> None:
        assert self.cli("down", "--timeout", str(STOP_S)) == 0
        assert not (self.state_dir / "stack.json").exists()

    def stop(self) -> None:
        """Down by any means: `inktex down`, and when that fails or leaves anything, a
        process-group kill of whatever still names this state folder. For finalisers."""
        with contextlib.suppress(Exception):  # whatever went wrong, the kill still runs
            self.cli("down", "--timeout", str(STOP_S))
        kill_groups(processes_using(self.state_dir))

    def kill(self) -> None:
        """kill -9 the stack (a crash): nothing of it runs on, nothing is saved."""
        pid = int(self.info["pid"])
        kill_groups([pid, *processes_using(self.state_dir)])
        wait_for("the killed stack to go", lambda: not alive(pid), 60, 0.1)

    def token(self, user: str, ttl: int = 600, groups: list[str] | None = None) -> str:
        from local_stack.cli import local_issuer

        return local_issuer(self.state_dir).id_token(user, ttl_s=ttl, groups=groups or [])

    def aws(self, service: str):
        from local_stack.emulator import stack_client

        return stack_client(service, self.info)
