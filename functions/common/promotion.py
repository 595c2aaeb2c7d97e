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
Each job is decided once: `training/<job>/decision.json` is written with IfNoneMatch, so
a duplicate event finds it and does nothing.
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


class Decisions:
    """Decision records in the model bucket, newest first."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def claim(self, job: str, decision: dict) -> bool:
        key = f"training/{job}/decision.json"
        return put_json(self.s3, self.bucket, key, decision, only_if_new=True)

    def record(self, decision: dict, now: datetime) -> None:
        key = f"{DECISIONS}{_MAX_MS - int(now.timestamp() * 1000):013d}-{decision['job']}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(decision).encode())

    def latest(self, limit: int = 5) -> list[dict]:
        page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=DECISIONS, MaxKeys=limit)
        return [
            json.loads(self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read())
            for o in page.get("Contents", [])
        ]


def evaluate_versions(
    registry: ModelRegistry, versions: dict[str, str], sets: dict[str, list[Case]]
) -> dict[str, dict]:
    """{role: {set: scores}} for each role's version ("candidate", "production")."""
    out = {}
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
        if not decisions.claim(job, decision):
            return {**decision, "duplicate": True}
        released = batches.release(batch, decision["reason"], settings.max_training_attempts)
        decision["released"] = released
        decisions.record(decision, now)
        telemetry.training_job("failed")
        return decision
    if status != "Completed":
        return {**base, "decision": "ignored"}

    raw = _read(s3, settings.model_bucket, f"training/{job}/result.json")
    if raw is None:
        decision = {**base, "decision": "failed", "reason": "the job left no result.json"}
        if decisions.claim(job, decision):
            decision["released"] = batches.release(
                batch, decision["reason"], settings.max_training_attempts
            )
            decisions.record(decision, now)
            telemetry.training_job("failed")
        return decision
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
    if not decisions.claim(job, decision):
        return {**decision, "duplicate": True}
    try:
        registry.move("candidate", candidate, f"trained by {job} on feedback batch {batch}", job)
    except RegistryError as exc:
        log.info("candidate alias: %s", exc)
    if promote:
        registry.move("production", candidate, f"promoted by {job}: {_summary(decision)}", job)
    decisions.record(decision, now)
    batches.set_status(batch, "completed", decision=decision["decision"], candidate=candidate)
    telemetry.training_job("succeeded")
    telemetry.promotion(decision["decision"])
    return decision


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
