"""The trainer's self-profile: a table of the busiest operations and a step's wall time."""

from __future__ import annotations

import logging
import os

import pytest

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from training.profiling import WARMUP, step_profiler  # noqa: E402

pytestmark = pytest.mark.torch


def test_a_profile_is_logged_once_after_the_warm_up(caplog) -> None:
    layer = torch.nn.Linear(32, 32)
    profiler = step_profiler(3, torch.device("cpu"))
    assert profiler is not None and step_profiler(0, torch.device("cpu")) is None
    with caplog.at_level(logging.INFO, logger="training.profiling"):
        for _ in range(WARMUP + 6):
            layer(torch.randn(8, 32)).sum().backward()
            profiler.step()
        profiler.stop()
    reports = [r.getMessage() for r in caplog.records if "profile of 3" in r.getMessage()]
    assert len(reports) == 1
    assert "aten::addmm" in reports[0] or "aten::linear" in reports[0]
    assert "a step:" in reports[0] and "ms of wall time" in reports[0]
