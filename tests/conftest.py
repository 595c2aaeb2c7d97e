"""Shared fixtures; under CI=true a test that would skip for a missing tool fails instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inktex.data import crohme_root

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FIXTURES = Path(__file__).parent / "fixtures"


def require(condition: bool, reason: str) -> None:
    """Skip when `condition` fails, except in CI, where every test must run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must run every test, but: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def crohme() -> Path:
    root = crohme_root()
    require((root / "test2014.tsv").is_file(), f"the CROHME corpus is not at {root} (INKTEX_DATA)")
    return root


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
