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
One vote per prediction (`functions.common.feedback_store`): the object's id is a hash of
owner and prediction, not of the correction, so a later correction of the same prediction
replaces the stored one instead of adding a vote; the same correction sent again is a
duplicate (200). Where a vote is stored:
- `feedback/pending/<id>.json`: consented, not suspicious; counts towards retraining;
- `feedback/held/<id>.json`: kept (for review and the online-accuracy numbers) and never
  trained on: suspicious, no consent to train, changed more than `max_revisions` times (a
  user flipping one prediction's correction: held, and refused further changes), or a
  prediction whose earlier correction a batch has already claimed.
Once a batch claims a pending vote, `feedback/used/<id>.json` marks it (see `retraining`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from functions.common import telemetry
from functions.common.feedback_store import (
    HELD,
    OWNER_TAG_LEN,
    PENDING,
    USED,
    FeedbackStore,
    StoredVote,
    VoteChanged,
    owner_tag,
    vote_id,
)
from functions.common.store import PredictionStore, check_owner, iso
from inktex import inputs
from inktex.errors import InkTeXError, InputError
from inktex.latex import normalize_latex
from inktex.likelihood import correction_likelihood
from inktex.metrics import edit_distance

MAX_CORRECTION_TOKENS = 150  # training skips longer labels (training.presets max_label_len)
SUSPICIOUS_EDIT_RATIO = 0.5
SUSPICIOUS_MEAN_LOGPROB = math.log(0.01)
MAX_REVISIONS = 3  # changes of one prediction's correction before it is held (Settings)

__all__ = ["HELD", "OWNER_TAG_LEN", "PENDING", "USED", "FeedbackStore", "owner_tag"]


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
    if suspicious and mean_logprob is not None:  # unlikely implies a mean_logprob
        reason = (
            f"rewrites {ratio:.0%} of the prediction and the model gives it a per-token "
            f"probability of {math.exp(mean_logprob):.2%}"
        )
    else:
        reason = "confirms the prediction" if distance == 0 else f"edits {ratio:.0%}"
    return Assessment(kind, distance, round(ratio, 4), mean_logprob, suspicious, reason)


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


class TooManyRevisions(InputError):
    """A prediction whose correction was changed more than the limit takes no more changes."""

    status = 409


def submit_feedback(
    owner: str,
    prediction_id: str,
    latex: object,
    consent: bool,
    predictions: PredictionStore,
    feedback: FeedbackStore,
    recognizer,
    now: datetime | None = None,
    max_revisions: int = MAX_REVISIONS,
) -> tuple[bool, dict]:
    """Check, assess and store one correction: (created, the stored item).

    `created` is False for a duplicate (the correction this prediction's vote already holds,
    with the same consent, before or after a batch claimed it): the stored item is returned.
    A different correction of the same prediction replaces its vote (`created` True).
    """
    telemetry.feedback_received()
    try:
        created, item = _submit(
            owner,
            prediction_id,
            latex,
            consent,
            predictions,
            feedback,
            recognizer,
            now,
            max_revisions,
        )
    except InputError as exc:
        telemetry.feedback_rejected(type(exc).__name__)
        raise
    if created:
        telemetry.feedback_accepted(item)  # online accuracy: each prediction's first vote
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
    max_revisions: int,
) -> tuple[bool, dict]:
    now = now or datetime.now(UTC)
    owner = check_owner(owner)
    record = predictions.get_record(owner, prediction_id)  # 404 for unknown or someone else's
    max_tokens = min(MAX_CORRECTION_TOKENS, int(getattr(recognizer, "max_len", 200)))
    tokens = check_correction(latex, recognizer.vocab, max_tokens)
    vid = vote_id(owner, prediction_id)
    existing = feedback.find(vid)
    if existing is not None and _same_vote(existing.item, tokens, consent):
        return False, existing.item
    revisions = _revisions(existing, tokens, max_revisions)
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
    held_reason = _held_reason(assessment, consent, revisions, max_revisions, existing)
    item = {
        "id": vid,
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
        "held": bool(held_reason),
        "held_reason": held_reason,
        "revisions": revisions,
        "attempts": 0,
        "returned_from": [],
        "previous_versions": [],
    }
    if existing is None:
        if not feedback.put_new(item):  # a concurrent first vote won: this one is its repeat
            raced = feedback.find(vid)
            return False, raced.item if raced else item
    else:
        try:
            feedback.replace(existing, item)
        except VoteChanged as exc:
            raise PredictionGone(
                f"the correction of prediction {prediction_id} changed while this one was "
                "checked: look at it again, then send yours"
            ) from exc
    predictions.note_feedback(owner, prediction_id, feedback_note(item))
    return True, item


def _same_vote(item: dict, tokens: list[str], consent: bool) -> bool:
    return item.get("corrected_latex") == " ".join(tokens) and item.get("consent") == bool(consent)


def _revisions(existing: StoredVote | None, tokens: list[str], max_revisions: int) -> int:
    """How many times this prediction's correction has changed, counting this request; a
    prediction already past the limit takes no more changes (TooManyRevisions)."""
    if existing is None:
        return 0
    done = int(existing.item.get("revisions", 0))
    if existing.item.get("corrected_latex") == " ".join(tokens):
        return done  # only the consent changed
    if done > max_revisions:
        raise TooManyRevisions(
            f"the correction of this prediction has changed {done} times and is held for "
            "review: it takes no more changes (delete the prediction to withdraw it)"
        )
    return done + 1


def _held_reason(
    assessment: Assessment,
    consent: bool,
    revisions: int,
    max_revisions: int,
    existing: StoredVote | None,
) -> str:
    """Why a vote is kept out of training ("" when it counts towards retraining)."""
    if existing is not None and existing.prefix == USED:
        batch = existing.item.get("batch", "?")
        return f"an earlier correction of this prediction is in training batch {batch}"
    if revisions > max_revisions:
        return f"the correction changed {revisions} times (the limit is {max_revisions})"
    if not consent:
        return "sent without consent to train"
    if assessment.suspicious:
        return f"suspicious: {assessment.reason}"
    return ""


def feedback_note(item: dict) -> dict:
    """What a prediction record keeps of its feedback (`feedback`; the history shows it).

    `status`: "confirmed" (the prediction was right) or "corrected", both counting towards
    retraining alike (docs/feedback-loop.md), or "held": kept but never trained on (sent
    without consent, suspicious, changed too often, or of a prediction already used in
    training), a confirmation as a correction; `kind` says which it was.
    """
    kind = item["assessment"]["kind"]
    counts = "confirmed" if kind == "confirmation" else "corrected"
    status = "held" if item["held"] else counts
    return {
        "id": item["id"],
        "status": status,
        "kind": kind,
        "latex": item["corrected_latex"],
        "consent": item["consent"],
        "at": item["created_at"],
    }
