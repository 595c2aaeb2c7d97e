"""Helpers every test folder imports (`from testkit import require`).

They live here, not in a conftest.py: pytest imports each conftest.py under the one module
name `conftest`, so `from conftest import ...` would depend on which folder loaded last.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FIXTURES = Path(__file__).parent / "fixtures"


def require(condition: bool, reason: str) -> None:
    """Skip when `condition` fails, except in CI, where every test must run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must run every test, but: {reason}")
        pytest.skip(reason)


def wait_for(what: str, probe, timeout_s: float = 300, interval_s: float = 0.3):
    """`probe()`'s first truthy value, polled until `timeout_s` (a ceiling for a hang, minutes
    because asynchronous effects are slow on a busy machine); fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def other_processes() -> Iterator[tuple[int, Path]]:
    """(pid, its /proc folder) of every process but this one."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield int(entry.name), entry


def alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (ended, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[-1][0] != "Z"
