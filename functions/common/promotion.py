"""The evaluation gate: a finished training job's candidate against production, then the alias.

On "Completed": the entry point left `training/<job>/result.json` (the candidate's version
and lineage) in the model bucket. The candidate alias moves to it; candidate and production
are scored with the serving runtime (`inktex.runtime.OnnxRecognizer`, the Lambda's own) on
- the evaluation set, `datasets/eval/` in the data bucket (`labels.tsv` + `images/<name>.png`,
  CROHME 2013 when seeded from the corpus, else the repository's fixtures; never trained on);
- the batch's held-out slice (corrections kept out of fine-tuning, see `retraining`).
THE RULE: production moves to the candidate only if the candidate's `promotion_metric`
(ExpRate by default) on the evaluation set exceeds production's by more than
`promotion_margin`, and the candidate is not worse on the held-out slice.
The decision, both models' scores and the reason are written to
`decisions/<reversed-ms>-<job>.json` (newest first: `GET /retraining`, `GET /models`) and,
when promoted, into the production alias's history (its reason).

On "Failed" or "Stopped": the batch's corrections return to pending (`release_batch`).
Each job is decided once: `training/<job>/decision.json` is written with IfNoneMatch
(state "claimed") before anything moves, and rewritten with state "done" after the aliases,
the record and the batch's status. A duplicate event finds it done and does nothing; an
event re-delivered after the function died in between (a timeout, a crash between scoring
and the alias swap) finds it "claimed" and finishes the stored decision: every step is
idempotent (an alias already where the decision puts it is left alone, the record's key
comes from the decision's time, a released batch stays released), so the decision takes
effect exactly once and the scores that decided it are the stored ones.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import ClientError

from functions.common import telemetry
from functions.common.model_bucket import training_decision_key, training_result_key
from functions.common.registry import ModelRegistry, RegistryError
from functions.common.retraining import FeedbackBatches, batch_of_job, batch_prefix
from functions.common.s3json import put_json
from functions.common.store import iso
from inktex import inputs
from inktex.errors import InkTeXError
from inktex.latex import normalize_latex
from inktex.metrics import score
from inktex.runtime import OnnxRecognizer

log = logging.getLogger(__name__)

EVAL_PREFIX = "datasets/eval/"
DECISIONS = "decisions/"
_MAX_MS = 10**13 - 1


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    kind: str  # "image" | "strokes" | "inkml"
    tokens: list[str]

    def model_input(self, preprocess):
        if self.kind == "strokes":
            return inputs.from_strokes(json.loads(self.data), preprocess)
        if self.kind == "inkml":
            return inputs.from_inkml(self.data, preprocess)
        return inputs.from_image(self.data, preprocess)


def _read(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def load_eval_set(s3, bucket: str, limit: int = 0) -> list[Case]:
    """The evaluation set in the data bucket (empty when nobody seeded it)."""
    labels = _read(s3, bucket, f"{EVAL_PREFIX}labels.tsv")
    if labels is None:
        return []
    rows = csv.reader(io.StringIO(labels.decode("utf-8")), delimiter="\t")
    cases = []
    for row in rows:
        if len(row) < 2 or not row[0].strip():
            continue
        try:
            tokens = normalize_latex(row[1])
        except InkTeXError:
            continue  # as evaluation does: a label that does not normalise is skipped
        data = _read(s3, bucket, f"{EVAL_PREFIX}images/{row[0].strip()}.png")
        if data is not None:
            cases.append(Case(row[0].strip(), data, "image", tokens))
        if limit and len(cases) >= limit:
            break
    return cases


def load_heldout(s3, bucket: str, manifest: dict) -> list[Case]:
    prefix = batch_prefix(manifest["batch"])
    cases = []
    for entry in manifest["items"]:
        if entry.get("split") != "heldout":
            continue
        raw = _read(s3, bucket, f"{prefix}items/{entry['id']}.json")
        if raw is None:
            continue
        item = json.loads(raw)
        ext = "." + item["input_key"].rsplit(".", 1)[-1] if "." in item["input_key"] else ""
        data = _read(s3, bucket, f"{prefix}inputs/{item['id']}{ext}")
        if data is not None:
            tokens = item["corrected_latex"].split()
            cases.append(Case(item["id"], data, item.get("input_kind", "image"), tokens))
    return cases


def score_recognizer(recognizer, cases: list[Case]) -> dict:
    """The field's metrics for `cases`, recognised by the serving runtime."""
    if not cases:
        return {}
    batch = [c.model_input(recognizer.preprocess) for c in cases]
    results = recognizer.recognize_inputs(batch)
    scores = score((c.tokens, r.tokens) for c, r in zip(cases, results, strict=True))
    return {**scores.to_dict(), "count": len(cases)}


def decide(candidate: dict, production: dict, metric: str, margin: float) -> tuple[bool, str]:
    """THE RULE (module docstring): better on evaluation by > margin, not worse held out."""
    c_eval, p_eval = candidate.get("eval", {}), production.get("eval", {})
    if metric not in c_eval or metric not in p_eval:
        return False, "no evaluation set to judge on: seed one (`inktex seed`)"
    gain = c_eval[metric] - p_eval[metric]
    if gain <= margin:
        return False, (
            f"{metric} {c_eval[metric]:.4f} vs production {p_eval[metric]:.4f}: "
            f"not better by more than {margin}"
        )
    c_held, p_held = candidate.get("heldout", {}), production.get("heldout", {})
    if metric in c_held and metric in p_held and c_held[metric] < p_held[metric]:
        return False, (
            f"better on evaluation (+{gain:.4f}) but worse on the batch's held-out slice "
            f"({c_held[metric]:.4f} vs {p_held[metric]:.4f})"
        )
    return True, f"{metric} {c_eval[metric]:.4f} vs production {p_eval[metric]:.4f} (+{gain:.4f})"


CLAIMED, DONE = "claimed", "done"


class Decisions:
    """Decision records in the model bucket, newest first."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    @staticmethod
    def _claim_key(job: str) -> str:
        return training_decision_key(job)

    def claim(self, job: str, decision: dict) -> bool:
        return put_json(
            self.s3, self.bucket, self._claim_key(job), {**decision, "state": CLAIMED}, True
        )

    def claimed(self, job: str) -> dict | None:
        """The job's claimed decision; state "claimed" until `done` (None: not claimed)."""
        raw = _read(self.s3, self.bucket, self._claim_key(job))
        return None if raw is None else json.loads(raw)

    def done(self, job: str, decision: dict) -> None:
        put_json(self.s3, self.bucket, self._claim_key(job), {**decision, "state": DONE})

    def record(self, decision: dict) -> None:
        """`decisions/<reversed-ms>-<job>.json`, the key from the decision's own time, so a
        resumed decision rewrites its record rather than adding a second one."""
        moment = datetime.fromisoformat(decision["decided_at"].replace("Z", "+00:00"))
        key = f"{DECISIONS}{_MAX_MS - int(moment.timestamp() * 1000):013d}-{decision['job']}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(decision).encode())

    def latest(self, limit: int = 5) -> list[dict]:
        page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=DECISIONS, MaxKeys=limit)
        return [
            json.loads(self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read())
            for o in page.get("Contents", [])
        ]


def decide_once(decisions: Decisions, job: str, decision: dict, apply, count) -> dict:
    """Claim `decision` for `job`, `apply` it (idempotent steps; returns the decision with
    their outcome), record it, mark it done, then `count` it. If the job is claimed already:
    a done decision is a duplicate (nothing happens); a decision left "claimed" by a
    function that died is resumed as stored."""
    resumed = False
    if not decisions.claim(job, decision):
        stored = decisions.claimed(job) or decision
        if stored.get("state", DONE) != CLAIMED:
            return {**stored, "duplicate": True}
        decision, resumed = {k: v for k, v in stored.items() if k != "state"}, True
        log.warning("resuming the interrupted decision for %s: %s", job, decision["decision"])
    decision = apply(decision)
    decisions.record(decision)
    decisions.done(job, decision)
    count(decision)
    return {**decision, "resumed": True} if resumed else decision


def evaluate_versions(
    registry: ModelRegistry, versions: dict[str, str], sets: dict[str, list[Case]]
) -> dict[str, dict]:
    """{role: {set: scores}} for each role's version ("candidate", "production")."""
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for role, version in versions.items():
            if not version:
                out[role] = {}
                continue
            recognizer = OnnxRecognizer.load(registry.download(version, Path(tmp) / version))
            out[role] = {name: score_recognizer(recognizer, cases) for name, cases in sets.items()}
    return out


def on_training_job_state_change(facts: dict, settings, s3, registry: ModelRegistry) -> dict:
    """Decide a finished job once: promote or not (Completed), release the batch (Failed)."""
    job, status = facts["job"], facts["status"]
    batch = batch_of_job(job or "")
    batches = FeedbackBatches(s3, settings.data_bucket)
    decisions = Decisions(s3, settings.model_bucket)
    now = datetime.now(UTC)
    base = {"job": job, "batch": batch, "status": status, "decided_at": iso(now)}
    if status in ("InProgress",) or batch is None:
        return {**base, "decision": "ignored"}
    if status in ("Failed", "Stopped"):
        decision = {**base, "decision": "failed", "reason": facts.get("failure_reason") or status}
        return _decide(decisions, batches, registry, settings, decision)
    if status != "Completed":
        return {**base, "decision": "ignored"}

    stored = decisions.claimed(job)
    if stored is not None:  # decided, or being decided: the stored scores, no scoring again
        return _decide(decisions, batches, registry, settings, stored)
    raw = _read(s3, settings.model_bucket, training_result_key(job))
    if raw is None:
        decision = {**base, "decision": "failed", "reason": "the job left no result.json"}
        return _decide(decisions, batches, registry, settings, decision)
    result = json.loads(raw)
    candidate = result["version"]
    production = registry.alias("production").version
    manifest = batches.manifest(batch) or {"batch": batch, "items": []}
    sets = {
        "eval": load_eval_set(s3, settings.data_bucket, settings.eval_limit),
        "heldout": load_heldout(s3, settings.data_bucket, manifest),
    }
    scores = evaluate_versions(registry, {"candidate": candidate, "production": production}, sets)
    promote, reason = decide(
        scores["candidate"],
        scores["production"],
        settings.promotion_metric,
        settings.promotion_margin,
    )
    if not production:
        promote, reason = True, "no production model yet"
    decision = {
        **base,
        "decision": "promoted" if promote else "rejected",
        "reason": reason,
        "candidate": {"version": candidate, **scores["candidate"]},
        "production": {"version": production, **scores["production"]},
        "metric": settings.promotion_metric,
        "margin": settings.promotion_margin,
        "lineage": result.get("lineage", {}),
    }
    return _decide(decisions, batches, registry, settings, decision)


def _decide(decisions, batches, registry: ModelRegistry, settings, decision: dict) -> dict:
    """`decide_once` with the steps of the decision's kind: a failed job's batch returns to
    pending; a scored candidate moves the aliases and completes the batch."""
    if decision["decision"] == "failed":

        def apply(decision: dict) -> dict:
            released = batches.release(
                decision["batch"], decision["reason"], settings.max_training_attempts
            )
            return {**decision, "released": released}

        def count(decision: dict) -> None:
            telemetry.training_job("failed")

    else:

        def apply(decision: dict) -> dict:
            _swap_aliases(registry, decision)
            batches.set_status(
                decision["batch"],
                "completed",
                decision=decision["decision"],
                candidate=decision["candidate"]["version"],
            )
            return decision

        def count(decision: dict) -> None:
            telemetry.training_job("succeeded")
            telemetry.promotion(decision["decision"])

    return decide_once(decisions, decision["job"], decision, apply, count)


def _swap_aliases(registry: ModelRegistry, decision: dict) -> None:
    """Candidate alias to the candidate; production too when promoted. Idempotent: an alias
    already at the version is left alone (a resumed decision does not move it twice)."""
    job, batch = decision["job"], decision["batch"]
    candidate = decision["candidate"]["version"]
    try:
        registry.move("candidate", candidate, f"trained by {job} on feedback batch {batch}", job)
    except RegistryError as exc:
        log.info("candidate alias: %s", exc)
    if decision["decision"] == "promoted" and registry.alias("production").version != candidate:
        registry.move("production", candidate, f"promoted by {job}: {_summary(decision)}", job)


def _summary(decision: dict) -> str:
    """Both models' scores in a few words (an SSM value holds 4 KB, the alias's history it)."""
    metric = decision["metric"]
    parts = [decision["reason"]]
    for split in ("eval", "heldout"):
        c = decision["candidate"].get(split, {}).get(metric)
        p = decision["production"].get(split, {}).get(metric)
        if c is not None and p is not None:
            parts.append(f"{split} {metric}: candidate {c:.4f}, production {p:.4f}")
    return "; ".join(parts)
