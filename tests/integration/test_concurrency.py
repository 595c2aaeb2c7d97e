"""Functions run concurrently, as Lambda runs them (issue 18, "Concurrent like Lambda").

Three users each send the largest stroke body the API accepts (1,000 strokes, 100,000
points: seconds of parsing, drawing and reading in the API function); while they are being
worked on, a fourth user's ordinary prediction is answered first. With one process per
function it waited its turn behind them.

The test compares order, not seconds: on any machine the small request finishes before the
large ones that started earlier.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from stack_kit import IMAGE, bearer, request

from inktex.ink import MAX_POINTS, MAX_STROKES

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

SLOW = 3


def large_strokes() -> bytes:
    """As many strokes and points as the API accepts: slow to parse, draw and read. (A body
    over the point limit was refused after parsing, in well under a second: no margin.)"""
    rng = random.Random(7)
    points = MAX_POINTS // MAX_STROKES
    strokes = [
        [[round(rng.uniform(0, 2000), 2), round(rng.uniform(0, 800), 2)] for _ in range(points)]
        for _ in range(MAX_STROKES)
    ]
    return json.dumps({"strokes": strokes}).encode()


def test_a_slow_request_does_not_hold_up_another_users(stack):
    body = large_strokes()
    assert len(body) < 4_194_304  # the API's body limit

    def predict(user: str, data: bytes, kind: str) -> float:
        status, _, answer = request(
            "POST",
            f"{stack.api}/predictions",
            data,
            {"content-type": kind, **bearer(stack.token(user))},
        )
        assert status == 201, answer[:300]  # read, not refused early
        return time.monotonic()

    # Every container warm first (a cold start is not what is measured): SLOW + 1 requests
    # at once, twice, so that as many containers start. One left cold made the small request
    # wait out its start on a loaded machine and end after a large one.
    together = threading.Barrier(SLOW + 1)

    def warm(i: int) -> float:
        together.wait()
        return predict(f"warm-{i}", IMAGE.read_bytes(), "image/png")

    for _ in range(2):
        with ThreadPoolExecutor(SLOW + 1) as pool:
            list(pool.map(warm, range(SLOW + 1)))

    started = threading.Barrier(SLOW + 1)
    with ThreadPoolExecutor(SLOW) as pool:

        def slow(i: int) -> float:
            started.wait()
            return predict(f"heavy-{i}", body, "application/json")

        slow_done = [pool.submit(slow, i) for i in range(SLOW)]
        started.wait()
        time.sleep(0.5)  # the large bodies are on their way in
        fast_done = predict("light", IMAGE.read_bytes(), "image/png")
        ends = [f.result() for f in slow_done]
    assert fast_done < min(ends), (
        f"the small request ended {fast_done - min(ends):+.1f} s after the first large one"
    )
