"""Shared fixtures; under CI=true a test that would skip for a missing tool fails instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import FIXTURES, require

from inktex.data import crohme_root


@pytest.fixture(scope="session")
def crohme() -> Path:
    root = crohme_root()
    require((root / "test2014.tsv").is_file(), f"the CROHME corpus is not at {root} (INKTEX_DATA)")
    return root


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
