"""Functions run concurrently, as Lambda runs them (issue 18, "Concurrent like Lambda").

Three users each send a large stroke body (about 3.5 MB: seconds of work in the API
function); while they are being worked on, a fourth user's ordinary prediction is answered
first. With one process per function it waited its turn behind them.

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

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

SLOW = 3


def large_strokes() -> bytes:
    """About 3.5 MB of strokes: under the API's 4 MiB limit, slow to parse and draw."""
    rng = random.Random(7)
    strokes = [
        [[round(rng.uniform(0, 2000), 2), round(rng.uniform(0, 800), 2)] for _ in range(220)]
        for _ in range(1000)
    ]
    return json.dumps({"strokes": strokes}).encode()


def test_a_slow_request_does_not_hold_up_another_users(stack):
    body = large_strokes()
    assert 3_000_000 < len(body) < 4_194_304

    def predict(user: str, data: bytes, kind: str) -> float:
        status, _, answer = request(
            "POST",
            f"{stack.api}/predictions",
            data,
            {"content-type": kind, **bearer(stack.token(user))},
        )
        assert status in (201, 400, 413, 422), answer[:300]  # answered, whatever it says
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
