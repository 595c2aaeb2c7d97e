"""The metrics' durable state: deltas folded into `metrics/state.json`, a bounded batch at a time.

Every invocation writes one delta (`functions.common.telemetry`). `MetricsStore.compact()`
runs on each scrape (and each `GET /stats`) and costs at most `6 + batch` S3 calls, however
long the history: it reads the state, lists at most `batch` deltas (`MaxKeys`; never a
listing of everything), reads and folds them, and writes the state back. Folded deltas are
deleted, so the prefix only ever holds what is not yet folded, and history costs nothing.

Exactly once, without a lock, by S3 conditional writes:
1. read `state.json` and its ETag; delete the deltas the state names as folded by the
   previous step (`folded`): they are in the state already, and deleting is idempotent;
2. list up to `batch` deltas, skipping any still named in `folded`; read and fold them;
3. write the state with `IfMatch=<ETag>` (`IfNoneMatch='*'` for the first), naming this
   batch in `folded`; then delete the batch (best effort: step 1 of the next run repeats it).
Of two concurrent compactions of the same state, only one write succeeds; the other's work
is discarded (it serves the winner's state). A delta is counted once because every step
that folds it commits in the same conditional write that records it in `folded`, and the
next committed step deletes it before listing.

The state also keeps hourly sums (the last `HOURS_KEPT` hours) for `GET /stats`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from functions.common.telemetry import DELTAS, METRICS, parse_key

log = logging.getLogger(__name__)

STATE_KEY = "metrics/state.json"
BATCH = 500  # deltas folded per compaction: bounds a scrape's S3 calls and time
HOURS_KEPT = 24 * 14
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict")
_MISSING = ("NoSuchKey", "404", "NotFound")


def empty_state() -> dict:
    return {
        "v": 1,
        "counters": {},
        "histograms": {},
        "gauges": {},  # key -> [value, at]
        "hours": {},  # "2025-06-01T10" -> {"counters": {name: n}, "histograms": {name: h}}
        "folded": [],
        "deltas_folded": 0,
        "updated_at": None,
    }


def _add_histogram(into: dict, h: dict) -> None:
    if not into:
        into.update({"b": list(h["b"]), "sum": h["sum"], "n": h["n"]})
        return
    into["b"] = [a + b for a, b in zip(into["b"], h["b"], strict=True)]
    into["sum"] += h["sum"]
    into["n"] += h["n"]


def fold(state: dict, delta: dict) -> None:
    """Add one delta to the state (in place)."""
    at = delta["at"]
    hour = at[:13]
    bucket = state["hours"].setdefault(hour, {"counters": {}, "histograms": {}})
    for key, value in delta.get("counters", {}).items():
        state["counters"][key] = state["counters"].get(key, 0.0) + value
        name = parse_key(key)[0]
        bucket["counters"][name] = bucket["counters"].get(name, 0.0) + value
    for key, h in delta.get("histograms", {}).items():
        if len(h["b"]) != len(METRICS[parse_key(key)[0]].buckets) + 1:
            log.warning("skipping %s: its buckets are not this version's", key)
            continue
        _add_histogram(state["histograms"].setdefault(key, {}), h)
        _add_histogram(bucket["histograms"].setdefault(parse_key(key)[0], {}), h)
    for key, value in delta.get("gauges", {}).items():
        current = state["gauges"].get(key)
        if current is None or current[1] <= at:  # the latest observation wins
            state["gauges"][key] = [value, at]
    state["deltas_folded"] += 1


def _prune_hours(state: dict, now: datetime) -> None:
    oldest = (now - timedelta(hours=HOURS_KEPT)).isoformat()[:13]
    for hour in [h for h in state["hours"] if h < oldest]:
        del state["hours"][hour]


class MetricsStore:
    def __init__(self, s3, bucket: str, batch: int = BATCH):
        self.s3, self.bucket, self.batch = s3, bucket, batch

    def read(self) -> tuple[dict, str | None]:
        """The state and its ETag (an empty state and None before the first compaction)."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=STATE_KEY)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _MISSING:
                return empty_state(), None
            raise
        return json.loads(obj["Body"].read()), obj["ETag"]

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return
        answer = self.s3.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        if answer.get("Errors"):
            raise RuntimeError(f"could not delete folded deltas: {answer['Errors'][:3]}")

    def _write(self, state: dict, etag: str | None) -> bool:
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=STATE_KEY,
                Body=json.dumps(state, separators=(",", ":")).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _CONFLICT:
                return False
            raise
        return True

    def compact(self, now: datetime | None = None) -> dict:
        """Fold up to `batch` new deltas into the state; the state as it now is."""
        state, etag = self.read()
        previous = list(state.get("folded", []))
        self._delete(previous)
        page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=DELTAS, MaxKeys=self.batch)
        skip = set(previous)
        keys = [o["Key"] for o in page.get("Contents", []) if o["Key"] not in skip]
        if not keys and not previous:
            return state
        for key in keys:
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] in _MISSING:
                    return self.read()[0]  # another compaction folded it: serve its state
                raise
            fold(state, json.loads(body))
        now = now or datetime.now(UTC)
        _prune_hours(state, now)
        state["folded"] = keys
        state["updated_at"] = now.isoformat(timespec="seconds")
        if not self._write(state, etag):
            log.info("another compaction won; serving its state")
            return self.read()[0]
        try:
            self._delete(keys)
        except (ClientError, RuntimeError) as exc:  # the next compaction deletes them
            log.warning("deleting folded deltas: %s", exc)
        return state

    def backlog_hint(self, state: dict) -> bool:
        """Whether the last compaction was full (more deltas may be waiting)."""
        return len(state.get("folded", [])) >= self.batch


# --- GET /stats --------------------------------------------------------------------------


def _quantile(h: dict, bounds: tuple, q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (as Prometheus's estimate, coarse)."""
    if not h or not h["n"]:
        return None
    target, seen = q * h["n"], 0
    for i, count in enumerate(h["b"]):
        seen += count
        if seen >= target:
            return float(bounds[i]) if i < len(bounds) else float(bounds[-1])
    return float(bounds[-1])


def hourly(state: dict, hours: int = 48, now: datetime | None = None) -> list[dict]:
    """One row per hour, oldest first, the last `hours` hours (empty hours included)."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    rows = []
    for i in range(hours - 1, -1, -1):
        hour = (now - timedelta(hours=i)).isoformat()[:13]
        got = state["hours"].get(hour, {"counters": {}, "histograms": {}})
        c, h = got["counters"], got["histograms"]
        latency = h.get("inktex_request_duration_seconds", {})
        confidence = h.get("inktex_prediction_confidence", {})
        assessed = c.get("inktex_feedback_assessed_total", 0)
        rows.append(
            {
                "hour": hour + ":00:00Z",
                "predictions": int(c.get("inktex_predictions_total", 0)),
                "requests": int(c.get("inktex_requests_total", 0)),
                "errors": int(c.get("inktex_errors_total", 0)),
                "feedback": int(c.get("inktex_feedback_received_total", 0)),
                "confirmations": int(c.get("inktex_feedback_confirmations_total", 0)),
                "online_accuracy": (
                    c.get("inktex_feedback_confirmations_total", 0) / assessed if assessed else None
                ),
                "latency_p95_s": _quantile(
                    latency, METRICS["inktex_request_duration_seconds"].buckets, 0.95
                ),
                "mean_confidence": (
                    confidence["sum"] / confidence["n"] if confidence.get("n") else None
                ),
            }
        )
    return rows
