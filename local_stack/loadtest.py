"""A bounded load test of the running local stack: N clients on loopback for T seconds.

    python -m local_stack.loadtest --clients 16 --seconds 60 [--state-dir DIR] [--json]

Each client signs in as its own user (a token from the stack's local issuer). All clients
start at once with an anonymous POST /recognize (a burst past that route's throttle) and a
prediction, then until the deadline each picks one of: a prediction (POST /predictions, a
real CROHME image or pen strokes), a page of its history (GET /predictions), a correction of
one of its predictions (POST /feedback, with and without consent), the deletion of one of
its predictions that it has not corrected (DELETE /predictions/{id}) or an anonymous
recognition. It is a closed loop: one request in flight per client, so the load is bounded
by the number of clients. Nothing is retried: a 429 (the throttle of template.yaml, as API
Gateway applies it) is counted and the client pauses briefly.

Afterwards it checks what the issue asks of a load test, and reports each failure:
- no 5xx and no connection errors;
- every accepted correction (201) is stored (feedback/pending, held or used);
- every deleted prediction (204) is gone (404);
- the stack's own metrics (GET /metrics with its token, read before and after) moved by
  exactly what the clients counted: predictions, accepted and duplicate corrections, and
  the API's requests by route and status.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "tests" / "fixtures" / "inkml" / "518_em_425.png"  # a real CROHME sample
STROKES = {"strokes": [[[10, 10], [60, 60]], [[60, 10], [10, 60]], [[80, 35], [120, 35]]]}
CORRECTIONS = ["x", "x^{2}", "a+b", "1+2", "y=x", "\\frac{1}{2}", "\\sqrt{x}", "n+1", "2x"]
MIX = (
    ("predict", 0.3),
    ("history", 0.3),
    ("feedback", 0.25),
    ("delete", 0.05),
    ("recognize", 0.1),
)
ROUTES = {
    "recognize": "POST /recognize",  # anonymous, and throttled hardest (2/s): 429s are certain
    "predict": "POST /predictions",
    "history": "GET /predictions",
    "feedback": "POST /feedback",
    "delete": "DELETE /predictions/{prediction_id}",
}
THROTTLE_PAUSE_S = 0.1


@dataclass
class Sample:
    op: str
    status: int  # 0: no answer (a connection error)
    seconds: float
    created: str | None = None  # a prediction's or correction's id (a deletion: its target)
    client: int = -1  # which client sent it


@dataclass
class LoadResult:
    clients: int
    seconds: float  # wall time, first request to last answer
    samples: list[Sample] = field(default_factory=list)

    def of(self, op: str) -> list[Sample]:
        return [s for s in self.samples if s.op == op]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class _Client:
    """One user on one keep-alive connection."""

    def __init__(self, api_url: str, token: str, rng: random.Random):
        split = urlsplit(api_url)
        self.host, self.port = split.hostname, split.port or 80
        self.auth = {"authorization": f"Bearer {token}"}
        self.rng = rng
        self.conn: http.client.HTTPConnection | None = None
        self.predictions: list[str] = []
        self.corrected: set[str] = set()  # never deleted: their corrections are checked

    def call(self, method: str, path: str, body: bytes | None = None, headers=None):
        """(status, body); status 0 when no answer came. An empty header value drops it."""
        sent = {k: v for k, v in {**self.auth, **(headers or {})}.items() if v}
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=sent)
                response = self.conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return 0, b""
                continue
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return response.status, data
        return 0, b""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def predict(self) -> Sample:
        if self.rng.random() < 0.5:
            body, kind = IMAGE.read_bytes(), "image/png"
        else:
            body, kind = json.dumps(STROKES).encode(), "application/json"
        return self._timed("predict", "POST", "/predictions", body, {"content-type": kind})

    def recognize(self) -> Sample:
        began = time.perf_counter()
        headers = {"content-type": "image/png", "authorization": ""}
        status, _ = self.call("POST", "/recognize", IMAGE.read_bytes(), headers)
        return Sample("recognize", status, time.perf_counter() - began)

    def history(self) -> Sample:
        return self._timed("history", "GET", "/predictions?limit=10")

    def feedback(self) -> Sample:
        if not self.predictions:
            return self.predict()
        target = self.rng.choice(self.predictions)
        self.corrected.add(target)
        payload = {
            "prediction_id": target,
            "latex": self.rng.choice(CORRECTIONS),
            "consent": self.rng.random() < 0.5,
        }
        body = json.dumps(payload).encode()
        return self._timed(
            "feedback", "POST", "/feedback", body, {"content-type": "application/json"}
        )

    def delete(self) -> Sample:
        deletable = [p for p in self.predictions if p not in self.corrected]
        if not deletable:
            return self.predict()
        target = self.rng.choice(deletable)
        self.predictions.remove(target)  # asked once, whatever the answer
        sample = self._timed("delete", "DELETE", f"/predictions/{target}")
        sample.created = target
        return sample

    def _timed(self, op, method, path, body=None, headers=None) -> Sample:
        began = time.perf_counter()
        status, data = self.call(method, path, body, headers)
        sample = Sample(op, status, time.perf_counter() - began)
        if status in (200, 201) and op in ("predict", "feedback"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                sample.created = json.loads(data)["id"]
            if op == "predict" and sample.created:
                self.predictions.append(sample.created)
        return sample


def run_load(api_url: str, tokens: list[str], seconds: float, seed: int = 0) -> LoadResult:
    """`len(tokens)` clients, one per token, each in its own thread, until the deadline."""
    samples: list[Sample] = []
    lock = threading.Lock()
    ops, weights = zip(*MIX, strict=True)
    began = time.perf_counter()
    deadline = began + seconds

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        c = _Client(api_url, tokens[index], rng)
        start.wait()  # all clients at once: a burst on POST /recognize (burst 5) is throttled
        mine = [c.recognize(), c.predict()]
        while time.perf_counter() < deadline:
            op = rng.choices(ops, weights)[0]
            sample = getattr(c, op)()
            sample.client = index
            mine.append(sample)
            if sample.status == 429:
                time.sleep(THROTTLE_PAUSE_S * (1 + rng.random()))
        c.close()
        with lock:
            samples.extend(mine)

    start = threading.Barrier(len(tokens))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(len(tokens), time.perf_counter() - began, samples)


def summary(result: LoadResult) -> dict:
    """Throughput, latency percentiles (answered, not throttled) and statuses, per operation."""

    def stats(samples: list[Sample]) -> dict:
        served = [s.seconds for s in samples if s.status not in (0, 429)]
        p50, p95 = percentile(served, 50), percentile(served, 95)
        return {
            "requests": len(samples),
            "served": len(served),
            "throttled_429": sum(s.status == 429 for s in samples),
            "statuses": dict(sorted(Counter(str(s.status) for s in samples).items())),
            "p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p95_ms": None if p95 is None else round(p95 * 1000, 1),
        }

    total = stats(result.samples)
    return {
        "clients": result.clients,
        "seconds": round(result.seconds, 1),
        "throughput_rps": round(len(result.samples) / result.seconds, 2),
        "served_rps": round(total["served"] / result.seconds, 2),
        **total,
        "server_errors_5xx": sum(s.status >= 500 for s in result.samples),
        "connection_errors": sum(s.status == 0 for s in result.samples),
        "by_operation": {op: stats(result.of(op)) for op in ROUTES},
    }


# --- checks against the stack's own records ----------------------------------------------


def scrape(api_url: str, token: str, timeout_s: float = 120) -> dict[tuple, float]:
    """GET /metrics until no deltas are left to fold: {(name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    split = urlsplit(api_url)
    deadline = time.monotonic() + timeout_s
    while True:
        conn = http.client.HTTPConnection(split.hostname, split.port or 80, timeout=60)
        try:
            conn.request("GET", "/metrics", headers={"authorization": f"Bearer {token}"})
            response = conn.getresponse()
            status, text = response.status, response.read().decode()
        finally:
            conn.close()
        if status == 429:
            time.sleep(0.5)
            continue
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status}: {text[:200]}")
        values: dict[tuple, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                values[(s.name, tuple(sorted(s.labels.items())))] = s.value
        if not values.get(("inktex_metrics_backlog", ())):
            return values
        if time.monotonic() > deadline:
            raise RuntimeError(f"the metrics backlog did not clear within {timeout_s:.0f} s")


def _sum(values: dict[tuple, float], name: str, **match) -> float:
    return sum(
        v
        for (n, labels), v in values.items()
        if n == name and all(dict(labels).get(k) == w for k, w in match.items())
    )


def metric_mismatches(result: LoadResult, before: dict, after: dict) -> list[str]:
    """What the stack counted, against what the clients saw."""

    def moved(name: str, **match) -> float:
        return _sum(after, name, **match) - _sum(before, name, **match)

    def count(op: str, status: int) -> int:
        return sum(s.status == status for s in result.of(op))

    expected = {
        ("inktex_predictions_total", "source=api"): (
            moved("inktex_predictions_total", source="api"),
            count("predict", 201) + count("recognize", 200),
        ),
        ("inktex_feedback_accepted_total", ""): (
            moved("inktex_feedback_accepted_total"),
            count("feedback", 201),
        ),
        ("inktex_feedback_duplicates_total", ""): (
            moved("inktex_feedback_duplicates_total"),
            count("feedback", 200),
        ),
    }
    for op, route in ROUTES.items():
        for status in {s.status for s in result.of(op)} - {0, 429}:
            expected[("inktex_requests_total", f"{route} {status}")] = (
                moved("inktex_requests_total", route=route, status=str(status)),
                count(op, status),
            )
    return [
        f"{name}{{{labels}}} moved by {got:g}, the clients counted {want}"
        for (name, labels), (got, want) in expected.items()
        if got != want
    ]


def missing_corrections(result: LoadResult, s3, bucket: str) -> list[str]:
    """Accepted corrections that are not stored (pending/, held/ or, once claimed, used/)."""
    from functions.common.feedback import FeedbackStore

    store = FeedbackStore(s3, bucket)
    accepted = {s.created for s in result.of("feedback") if s.status == 201 and s.created}
    return sorted(fid for fid in accepted if store.find(fid) is None)


def deleted_but_found(result: LoadResult, api_url: str, tokens: list[str]) -> list[str]:
    """Predictions whose deletion was acknowledged (204) that the API still returns."""
    found = []
    for s in result.of("delete"):
        if s.status != 204 or not s.created:
            continue
        c = _Client(api_url, tokens[s.client], random.Random(0))
        status, _ = c.call("GET", f"/predictions/{s.created}")
        c.close()
        if status != 404:
            found.append(s.created)
    return found


def check(result: LoadResult, report: dict, before: dict, after: dict, s3, bucket: str):
    problems = []
    if report["server_errors_5xx"]:
        problems.append(f"{report['server_errors_5xx']} answers were 5xx")
    if report["connection_errors"]:
        problems.append(f"{report['connection_errors']} requests got no answer")
    problems += metric_mismatches(result, before, after)
    lost = missing_corrections(result, s3, bucket)
    if lost:
        problems.append(f"{len(lost)} accepted corrections are not stored, e.g. {lost[0]}")
    return problems


def run_against(info: dict, state_dir: Path, clients: int, seconds: float, seed: int = 0):
    """The load test against the stack `info` describes: (report, problems)."""
    from local_stack.cli import local_issuer
    from local_stack.emulator import stack_client

    issuer = local_issuer(state_dir)
    tokens = [issuer.id_token(f"load-{seed}-{i}", ttl_s=int(seconds) + 600) for i in range(clients)]
    metrics_token = Path(info["metrics"]["token_file"]).read_text().strip()
    before = scrape(info["api_url"], metrics_token)
    result = run_load(info["api_url"], tokens, seconds, seed)
    report = summary(result)
    after = scrape(info["api_url"], metrics_token)
    s3 = stack_client("s3", info)
    bucket = info["resources"]["DataBucketName"]
    problems = check(result, report, before, after, s3, bucket)
    back = deleted_but_found(result, info["api_url"], tokens)
    if back:
        problems.append(f"{len(back)} acknowledged deletions are undone, e.g. {back[0]}")
    report["deletions_acknowledged"] = sum(s.status == 204 for s in result.of("delete"))
    report["corrections_accepted"] = report["by_operation"]["feedback"]["statuses"].get("201", 0)
    report["checks"] = problems or "passed"
    return report, problems


def _print(report: dict) -> None:
    print(
        f"{report['clients']} clients for {report['seconds']} s: {report['requests']} requests, "
        f"{report['throughput_rps']} req/s ({report['served_rps']} req/s served), "
        f"p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms"
    )
    print(
        f"throttled (429): {report['throttled_429']}   5xx: {report['server_errors_5xx']}   "
        f"no answer: {report['connection_errors']}   "
        f"corrections accepted: {report['corrections_accepted']}"
    )
    print(
        f"{'operation':<22}{'requests':>9}{'served':>8}{'429':>6}{'p50 ms':>9}{'p95 ms':>9}"
        "  statuses"
    )
    for op, s in report["by_operation"].items():
        print(
            f"{ROUTES[op]:<22}{s['requests']:>9}{s['served']:>8}{s['throttled_429']:>6}"
            f"{s['p50_ms'] or '-':>9}{s['p95_ms'] or '-':>9}  {s['statuses']}"
        )
    checks = report["checks"]
    print(
        "checks: passed (no 5xx; every accepted correction stored; metrics agree)"
        if checks == "passed"
        else "checks FAILED:\n  " + "\n  ".join(checks)
    )


def main(argv: list[str] | None = None) -> int:
    from local_stack.stack import default_state_dir, running_info

    parser = argparse.ArgumentParser(
        prog="python -m local_stack.loadtest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, help="the stack's (default: as `inktex up`)")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 0 < args.seconds <= 3600:
        parser.error("--clients is 1..256 and --seconds 0..3600: the load stays bounded")
    state_dir = args.state_dir or default_state_dir()
    info = running_info(state_dir)
    if info is None:
        print(f"no local stack is up with {state_dir}: `inktex up` first", file=sys.stderr)
        return 2
    report, problems = run_against(info, state_dir, args.clients, args.seconds, args.seed)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
