"""Shared fixtures; under CI=true a test that would skip for a missing tool fails instead.
After the run, no process it started may be left (`pytest_sessionfinish`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from testkit import FIXTURES, alive, other_processes, require

from inktex.data import crohme_root


@pytest.fixture(scope="session")
def crohme() -> Path:
    root = crohme_root()
    require((root / "test2014.tsv").is_file(), f"the CROHME corpus is not at {root} (INKTEX_DATA)")
    return root


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


# Every process a test run starts inherits this mark in its environment, so the run can find
# what it left behind even after the process was orphaned to init (a timed-out fixture).
RUN_MARK = "INKTEX_TEST_RUN"


def pytest_configure(config) -> None:
    os.environ[RUN_MARK] = f"{os.getpid()}-{time.time_ns()}"  # fresh, even in a nested run


def pytest_sessionfinish(session, exitstatus) -> None:
    """No process of this run may outlive it: any left is killed, and the run fails."""
    left = leaked_processes(os.environ[RUN_MARK], grace_s=15)
    if not left:
        return
    for pid, command in left.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"\nleaked process {pid}: {command}", file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def leaked_processes(mark: str, grace_s: float) -> dict[int, str]:
    """{pid: command line} of the processes carrying `mark`, other than this one, once
    `grace_s` has given stopping ones time to exit."""
    deadline = time.monotonic() + grace_s
    while True:
        found = dict(marked_processes(mark))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def marked_processes(mark: str):
    needle = f"{RUN_MARK}={mark}".encode()
    for pid, entry in other_processes():
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(pid):
                yield pid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # exited meanwhile, or not ours to read
            continue
