"""Corrections of predictions: checked, assessed, and stored as one S3 object each.

`POST /feedback` comes here. A correction is refused (4xx, with the reason) when its LaTeX
is empty or does not normalise, uses tokens outside the production model's vocabulary,
is longer than the model can write, or names a prediction the caller does not own.

An accepted correction is combined with its prediction and assessed:
- `kind`: "confirmation" when the corrected tokens equal the predicted ones, else "correction";
- suspicious: THE RULE (stated once, here, and in docs/feedback-loop.md) is
  `edit_ratio > SUSPICIOUS_EDIT_RATIO and mean_logprob < SUSPICIOUS_MEAN_LOGPROB`:
  the correction rewrites more than half of the predicted tokens (token edit distance over
  the longer of the two lengths) AND the production model, reading the user's own input,
  finds the corrected tokens implausible (a geometric-mean token probability under 1%,
  teacher-forced through the ONNX step graph, `inktex.likelihood`). Either alone is normal:
  a wrong prediction can be far from the truth, and an unusual expression can be unlikely.
Where it is stored (one object per correction, keyed by a hash of owner, prediction and
corrected tokens, so the same correction sent twice is one object):
- `feedback/pending/<id>.json`: consented, not suspicious; counts towards retraining;
- `feedback/held/<id>.json`: suspicious, or no consent to train; kept (for review and the
  online-accuracy numbers) and never trained on.
Once a batch claims a pending correction, `feedback/used/<id>.json` marks it, so a repeat
of it after the claim is still recognised as a duplicate (see `retraining`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from functions.common import telemetry
from functions.common.s3json import put_json
from functions.common.store import PredictionStore, check_owner, iso
from inktex import inputs
from inktex.errors import InkTeXError, InputError
from inktex.latex import normalize_latex
from inktex.likelihood import correction_likelihood
from inktex.metrics import edit_distance

PENDING = "feedback/pending/"
HELD = "feedback/held/"
USED = "feedback/used/"

MAX_CORRECTION_TOKENS = 150  # training skips longer labels (training.presets max_label_len)
SUSPICIOUS_EDIT_RATIO = 0.5
SUSPICIOUS_MEAN_LOGPROB = math.log(0.01)


class FeedbackRejected(InputError):
    """A correction that cannot be accepted; the message says why and what to send."""

    status = 422


class PredictionGone(InputError):
    status = 409


@dataclass(frozen=True)
class Assessment:
    kind: str  # "confirmation" | "correction"
    edit_distance: int
    edit_ratio: float
    mean_logprob: float | None  # of the correction under the production model, per token
    suspicious: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_correction(latex: object, vocab, max_tokens: int = MAX_CORRECTION_TOKENS) -> list[str]:
    """The correction's canonical tokens, or FeedbackRejected saying what is wrong."""
    if not isinstance(latex, str) or not latex.strip():
        raise FeedbackRejected("the correction is empty: send the LaTeX the input really shows")
    try:
        tokens = normalize_latex(latex)
    except InputError as exc:
        raise FeedbackRejected(f"the correction does not parse as LaTeX: {exc}") from exc
    if not tokens:
        raise FeedbackRejected("the correction holds no symbols: send the LaTeX it should be")
    unknown = sorted(set(vocab.unknown(tokens)))
    if unknown:
        raise FeedbackRejected(
            f"the correction uses symbols the model cannot write: {' '.join(unknown)}; "
            "use the symbols it knows (GET /models lists its vocabulary size)"
        )
    if len(tokens) > max_tokens:
        raise FeedbackRejected(
            f"the correction is {len(tokens)} tokens long; the limit is {max_tokens}"
        )
    return tokens


def assess(predicted: list[str], corrected: list[str], mean_logprob: float | None) -> Assessment:
    """Confirmation or correction, and whether it is suspicious (the rule in the docstring)."""
    distance = edit_distance(predicted, corrected)
    ratio = distance / max(len(predicted), len(corrected), 1)
    kind = "confirmation" if distance == 0 else "correction"
    far = ratio > SUSPICIOUS_EDIT_RATIO
    unlikely = mean_logprob is not None and mean_logprob < SUSPICIOUS_MEAN_LOGPROB
    suspicious = far and unlikely
    if suspicious:
        reason = (
            f"rewrites {ratio:.0%} of the prediction and the model gives it a per-token "
            f"probability of {math.exp(mean_logprob):.2%}"
        )
    else:
        reason = "confirms the prediction" if distance == 0 else f"edits {ratio:.0%}"
    return Assessment(kind, distance, round(ratio, 4), mean_logprob, suspicious, reason)


OWNER_TAG_LEN = 12


def owner_tag(owner: str) -> str:
    """The first hex digits of every feedback id of `owner`: one listing of
    `feedback/pending/<tag>` finds a user's corrections (`DELETE /me`) without reading
    anyone else's, and the key does not show the owner's id."""
    return hashlib.sha256(f"owner:{owner}".encode()).hexdigest()[:OWNER_TAG_LEN]


def feedback_id(owner: str, prediction_id: str, tokens: list[str]) -> str:
    """32 hex digits: the owner's tag, then a hash of (owner, prediction, corrected tokens)."""
    identity = json.dumps([owner, prediction_id, tokens])
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return owner_tag(owner) + digest[: 32 - OWNER_TAG_LEN]


def model_input(store: PredictionStore, record: dict, preprocess):
    """The prediction's stored input as the model reads it (None when it cannot be read)."""
    try:
        data, _ = store.get_input(record)
        kind = record.get("input_kind", "image")
        if kind == "strokes":
            return inputs.from_strokes(json.loads(data), preprocess)
        if kind == "inkml":
            return inputs.from_inkml(data, preprocess)
        return inputs.from_image(data, preprocess)
    except (InkTeXError, ValueError):
        return None


class FeedbackStore:
    """Feedback objects in the data bucket."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def find(self, fid: str) -> dict | None:
        """The stored correction `fid`, wherever it is (pending, held, or claimed)."""
        for prefix in (PENDING, HELD, USED):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=f"{prefix}{fid}.json")["Body"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                    continue
                raise
            found = json.loads(body.read())
            return found.get("item", found)  # a used/ marker holds the item it marks
        return None

    def put_new(self, item: dict) -> bool:
        """Write under pending/ or held/ unless it exists; False for a duplicate."""
        prefix = HELD if item["held"] else PENDING
        return put_json(self.s3, self.bucket, f"{prefix}{item['id']}.json", item, only_if_new=True)

    def count_pending(self) -> int:
        count = 0
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=PENDING
        )
        for page in pages:
            count += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".json"))
        return count


def predicted_tokens(record: dict) -> list[str]:
    """The model's output as tokens. A model can emit LaTeX that does not parse (an unclosed
    brace): that is just what a correction is for, so it is taken as emitted, not refused."""
    if isinstance(record.get("tokens"), list):
        return [str(t) for t in record["tokens"]]
    latex = record.get("latex", "")
    try:
        return normalize_latex(latex)
    except InkTeXError:
        return latex.split()


def submit_feedback(
    owner: str,
    prediction_id: str,
    latex: object,
    consent: bool,
    predictions: PredictionStore,
    feedback: FeedbackStore,
    recognizer,
    now: datetime | None = None,
) -> tuple[bool, dict]:
    """Check, assess and store one correction: (created, the stored item).

    `created` is False for a duplicate (the same correction of the same prediction by the
    same user, before or after a batch claimed it): the first one's item is returned.
    """
    telemetry.feedback_received()
    try:
        created, item = _submit(
            owner, prediction_id, latex, consent, predictions, feedback, recognizer, now
        )
    except InputError as exc:
        telemetry.feedback_rejected(type(exc).__name__)
        raise
    if created:
        telemetry.feedback_accepted(item)
    else:
        telemetry.feedback_duplicate()
    return created, item


def _submit(
    owner: str,
    prediction_id: str,
    latex: object,
    consent: bool,
    predictions: PredictionStore,
    feedback: FeedbackStore,
    recognizer,
    now: datetime | None,
) -> tuple[bool, dict]:
    now = now or datetime.now(UTC)
    owner = check_owner(owner)
    record = predictions.get_record(owner, prediction_id)  # 404 for unknown or someone else's
    max_tokens = min(MAX_CORRECTION_TOKENS, int(getattr(recognizer, "max_len", 200)))
    tokens = check_correction(latex, recognizer.vocab, max_tokens)
    fid = feedback_id(owner, prediction_id, tokens)
    existing = feedback.find(fid)
    if existing is not None:
        return False, existing
    if record.get("status") != "ok":
        raise PredictionGone(
            f"prediction {prediction_id} failed ({record.get('error', 'unreadable input')}), "
            "so its input cannot teach the model"
        )
    predicted = predicted_tokens(record)
    image = model_input(predictions, record, recognizer.preprocess)
    if image is None:
        raise PredictionGone(f"the input of prediction {prediction_id} is gone or unreadable")
    likelihood = correction_likelihood(recognizer, image, tokens)
    assessment = assess(predicted, tokens, likelihood.mean_logprob)
    item = {
        "id": fid,
        "prediction_id": prediction_id,
        "owner": owner,
        "input_key": record["input_key"],
        "input_kind": record.get("input_kind", "image"),
        "predicted_latex": " ".join(predicted),
        "corrected_latex": " ".join(tokens),
        "predicted_model_version": record.get("model_version", ""),
        "assessed_with": getattr(recognizer, "version", ""),
        "consent": bool(consent),
        "created_at": iso(now),
        "assessment": assessment.to_dict(),
        "held": assessment.suspicious or not consent,
        "attempts": 0,
        "returned_from": [],
    }
    if not feedback.put_new(item):
        return False, feedback.find(fid) or item
    predictions.note_feedback(owner, prediction_id, feedback_note(item))
    return True, item


def feedback_note(item: dict) -> dict:
    """What a prediction record keeps of its feedback (`feedback`; the history shows it).

    `status`: "confirmed" (the prediction was right), "corrected" (a correction that counts
    towards retraining) or "held" (a correction kept but never trained on: suspicious, or
    sent without consent).
    """
    kind = item["assessment"]["kind"]
    held = "held" if item["held"] else "corrected"
    status = "confirmed" if kind == "confirmation" else held
    return {
        "id": item["id"],
        "status": status,
        "kind": kind,
        "latex": item["corrected_latex"],
        "consent": item["consent"],
        "at": item["created_at"],
    }
