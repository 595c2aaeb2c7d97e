"""POST /feedback and GET /retraining through the API handler, and the assessment rule."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from lambda_testkit import TINY_MODEL, as_user, call_api, load_event

from functions.common import feedback
from inktex.likelihood import correction_likelihood, sequence_likelihoods
from inktex.runtime import OnnxRecognizer


def predict(lambda_context, sub: str = "user-1") -> dict:
    status, body = call_api(as_user(load_event("api_create_prediction.json"), sub), lambda_context)
    assert status == 201, body
    return body


def send(lambda_context, payload: dict, sub: str = "user-1") -> tuple[int, dict]:
    event = as_user(load_event("api_create_feedback.json"), sub)
    event["body"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return call_api(event, lambda_context)


def objects(aws, prefix: str) -> list[str]:
    page = aws.s3.list_objects_v2(Bucket=aws.data_bucket, Prefix=prefix)
    return [o["Key"] for o in page.get("Contents", [])]


def test_a_correction_is_one_pending_object_and_a_repeat_is_a_duplicate(
    aws, production, lambda_context
):
    pred = predict(lambda_context)
    payload = {"prediction_id": pred["id"], "latex": "x^{2}+1", "consent": True}
    status, item = send(lambda_context, payload)
    assert status == 201, item
    assert item["corrected_latex"] == "x ^ { 2 } + 1"  # normalised
    assert item["predicted_latex"] == " ".join(pred["tokens"])
    assert item["input_key"] == pred["input_key"] and item["prediction_id"] == pred["id"]
    assert item["consent"] is True and item["created_at"] and not item["duplicate"]
    assert objects(aws, "feedback/pending/") == [f"feedback/pending/{item['id']}.json"]
    stored = json.loads(
        aws.s3.get_object(Bucket=aws.data_bucket, Key=f"feedback/pending/{item['id']}.json")[
            "Body"
        ].read()
    )
    assert stored["owner"] == "user-1" and stored["assessment"]["kind"] in (
        "correction",
        "confirmation",
    )
    # the same correction, written differently, is the same correction
    status, again = send(lambda_context, {**payload, "latex": "x ^ 2 + 1"})
    assert status == 200 and again["duplicate"] and again["id"] == item["id"]
    assert len(objects(aws, "feedback/")) == 1


def test_a_prediction_that_does_not_parse_can_be_corrected(aws, production, lambda_context):
    """A degraded model emits unbalanced LaTeX; correcting it must not be refused."""
    from functions.common.store import record_key

    pred = predict(lambda_context)
    key = record_key("user-1", pred["id"])
    record = json.loads(aws.s3.get_object(Bucket=aws.data_bucket, Key=key)["Body"].read())
    record.update(latex="\\sqrt { 1 5", tokens=["\\sqrt", "{", "1", "5"])
    aws.s3.put_object(Bucket=aws.data_bucket, Key=key, Body=json.dumps(record).encode())
    status, item = send(
        lambda_context, {"prediction_id": pred["id"], "latex": "\\sqrt{15}", "consent": True}
    )
    assert status == 201, item
    assert item["predicted_latex"] == "\\sqrt { 1 5"
    assert item["corrected_latex"] == "\\sqrt { 1 5 }"
    assert item["assessment"]["edit_distance"] == 1
    assert feedback.predicted_tokens({"latex": "x ^ {"}) == ["x", "^", "{"]


def test_a_confirmation_is_told_apart(aws, production, lambda_context):
    pred = predict(lambda_context)
    latex = pred["latex"] or "x"
    status, item = send(
        lambda_context, {"prediction_id": pred["id"], "latex": latex, "consent": True}
    )
    assert status == 201, item
    if pred["latex"]:
        assert item["assessment"]["kind"] == "confirmation"
        assert item["assessment"]["edit_distance"] == 0 and not item["held"]


def test_without_consent_it_is_held_not_pending(aws, production, lambda_context):
    pred = predict(lambda_context)
    status, item = send(
        lambda_context, {"prediction_id": pred["id"], "latex": "y", "consent": False}
    )
    assert status == 201 and item["held"]
    assert objects(aws, "feedback/pending/") == []
    assert objects(aws, "feedback/held/") == [f"feedback/held/{item['id']}.json"]


@pytest.mark.parametrize(
    ("latex", "status", "words"),
    [
        ("", 422, "empty"),
        ("   ", 422, "empty"),
        ("\\frac{1}{", 422, "parse"),
        ("\\aleph + 1", 422, "cannot write"),
        ("1+" * 80 + "1", 422, "limit"),
    ],
)
def test_bad_corrections_are_refused_with_their_reason(
    aws, production, lambda_context, latex, status, words
):
    pred = predict(lambda_context)
    got, body = send(lambda_context, {"prediction_id": pred["id"], "latex": latex, "consent": True})
    assert got == status and words in body["message"], body
    assert objects(aws, "feedback/") == []


def test_unknown_or_someone_elses_prediction_is_404(aws, production, lambda_context):
    pred = predict(lambda_context, sub="user-2")
    status, body = send(
        lambda_context, {"prediction_id": pred["id"], "latex": "x", "consent": True}
    )
    assert status == 404 and pred["id"] in body["message"]
    unknown = "8234567890123-0123456789abcdef01234567"
    status, body = send(lambda_context, {"prediction_id": unknown, "latex": "x", "consent": True})
    assert status == 404
    status, body = send(lambda_context, {"prediction_id": "nope", "latex": "x", "consent": True})
    assert status == 422 and "prediction_id" in body["message"]


def history(lambda_context, sub: str = "user-1") -> list[dict]:
    status, body = call_api(as_user(load_event("api_list_predictions.json"), sub), lambda_context)
    assert status == 200, body
    return body["items"]


def test_the_prediction_record_carries_its_feedback_status(aws, production, lambda_context):
    corrected, confirmed, held = (predict(lambda_context) for _ in range(3))
    send(lambda_context, {"prediction_id": corrected["id"], "latex": "x^{2}", "consent": True})
    right = confirmed["latex"] or "x"
    send(lambda_context, {"prediction_id": confirmed["id"], "latex": right, "consent": True})
    send(lambda_context, {"prediction_id": held["id"], "latex": "y", "consent": False})
    items = {item["id"]: item for item in history(lambda_context)}
    note = items[corrected["id"]]["feedback"]
    assert note["latex"] == "x ^ { 2 }" and note["at"] and note["consent"] is True
    assert (note["status"], note["kind"]) in (("corrected", "correction"), ("held", "correction"))
    if confirmed["latex"]:
        assert items[confirmed["id"]]["feedback"]["status"] == "confirmed"
    if held["tokens"] != ["y"]:
        assert items[held["id"]]["feedback"]["status"] == "held"
    # the note is part of the record (GET /predictions/{id}), and a later correction replaces it
    send(lambda_context, {"prediction_id": corrected["id"], "latex": "x^{3}", "consent": True})
    event = as_user(load_event("api_get_prediction.json"), "user-1")
    event["pathParameters"] = {"prediction_id": corrected["id"]}
    event["rawPath"] = f"/predictions/{corrected['id']}"
    status, record = call_api(event, lambda_context)
    assert status == 200 and record["feedback"]["latex"] == "x ^ { 3 }"


def test_feedback_needs_a_signed_in_user(aws, production, lambda_context):
    event = load_event("api_create_feedback.json")
    event["requestContext"].pop("authorizer")
    assert call_api(event, lambda_context)[0] == 401


def test_retraining_state_shows_pending_and_threshold(aws, production, lambda_context):
    aws.ssm.put_parameter(
        Name="/inktex/dev/settings/retraining-threshold", Value="3", Type="String"
    )
    pred = predict(lambda_context)
    send(lambda_context, {"prediction_id": pred["id"], "latex": "x+1", "consent": True})
    status, body = call_api(load_event("api_get_retraining.json"), lambda_context)
    assert status == 200, body
    assert body["pending"] == 1 and body["threshold"] == 3
    assert body["running_job"] is None and body["decisions"] == []


# --- the assessment rule ------------------------------------------------------------------


def test_the_suspicious_rule_needs_both_a_large_edit_and_a_low_likelihood():
    pred = list("x+1=2")
    far = list("abcde")
    unlikely, likely = math.log(0.001), math.log(0.5)
    assert feedback.assess(pred, far, unlikely).suspicious
    assert not feedback.assess(pred, far, likely).suspicious  # far but plausible
    assert not feedback.assess(pred, list("x+1=3"), unlikely).suspicious  # small edit
    confirmation = feedback.assess(pred, pred, unlikely)
    assert confirmation.kind == "confirmation" and not confirmation.suspicious
    assert feedback.assess(pred, list("x+1=3"), likely).kind == "correction"


def test_teacher_forced_likelihood_matches_the_greedy_search():
    recognizer = OnnxRecognizer.load(TINY_MODEL)
    image = np.random.default_rng(0).random((1, 64, 160), dtype=np.float32)
    best = recognizer.search(image, beam=1)[0].best
    v = recognizer.vocab
    forced = sequence_likelihoods(recognizer.step_model(image), [best.ids], v.sos_id, v.eos_id)
    assert forced[0].logprob == pytest.approx(best.logprob, abs=1e-4)
    tokens = v.decode(best.ids)
    assert correction_likelihood(recognizer, image[0], tokens).logprob == pytest.approx(
        best.logprob, abs=1e-4
    )
    other = correction_likelihood(recognizer, image[0], [*tokens, "x", "+", "1"])
    assert len(other.token_logprobs) == len(tokens) + 4 and other.logprob < 0


# --- one vote per prediction (issue 19) ---------------------------------------------------


def test_a_later_correction_replaces_the_vote_and_flipping_holds_it(
    aws, production, lambda_context
):
    """The attack of issue 19: 20 contradictory corrections of one prediction. They make one
    vote, not 20; after MAX_CORRECTION_REVISIONS changes it is held, then takes no more."""
    pred = predict(lambda_context)
    answers = []
    for n in range(5, 25):
        payload = {"prediction_id": pred["id"], "latex": f"\\sqrt{{{n}}}", "consent": True}
        answers.append(send(lambda_context, payload))
    statuses = [status for status, _ in answers]
    assert statuses[:5] == [201] * 5 and set(statuses[5:]) == {409}
    assert "held for review" in answers[5][1]["message"]
    first, fourth, fifth = answers[0][1], answers[3][1], answers[4][1]
    assert first["id"] == fourth["id"] == fifth["id"]  # one vote, rewritten
    assert not fourth["held"] and fourth["revisions"] == 3
    assert fifth["held"] and fifth["revisions"] == 4 and "changed 4 times" in fifth["held_reason"]
    assert objects(aws, "feedback/pending/") == []
    assert objects(aws, "feedback/held/") == [f"feedback/held/{first['id']}.json"]
    status, body = call_api(load_event("api_get_retraining.json"), lambda_context)
    assert body["pending"] == 0
    record = history(lambda_context)[0]
    assert record["feedback"]["status"] == "held" and record["feedback"]["latex"].endswith("9 }")
    assert "previous_versions" not in record and "previous_versions" not in fifth


def test_a_replaced_vote_counts_once_towards_retraining(aws, production, lambda_context):
    preds = [predict(lambda_context) for _ in range(2)]
    for latex in ("x+1", "x+2", "x+3"):
        send(lambda_context, {"prediction_id": preds[0]["id"], "latex": latex, "consent": True})
    send(lambda_context, {"prediction_id": preds[1]["id"], "latex": "y", "consent": True})
    pending = objects(aws, "feedback/pending/")  # a vote the model doubts is held instead
    key = pending + objects(aws, "feedback/held/")
    assert len(key) == 2  # two predictions, two votes
    status, body = call_api(load_event("api_get_retraining.json"), lambda_context)
    assert status == 200 and body["pending"] == len(pending)
    # the stored vote is the latest correction
    items = [
        json.loads(aws.s3.get_object(Bucket=aws.data_bucket, Key=k)["Body"].read()) for k in key
    ]
    assert sorted(i["corrected_latex"] for i in items) == ["x + 3", "y"]


def test_the_max_revisions_is_configurable(aws, production, lambda_context, monkeypatch):
    from functions.common import wiring

    monkeypatch.setenv("MAX_CORRECTION_REVISIONS", "0")
    wiring.services.cache_clear()
    pred = predict(lambda_context)
    send(lambda_context, {"prediction_id": pred["id"], "latex": "x+1", "consent": True})
    status, item = send(
        lambda_context, {"prediction_id": pred["id"], "latex": "x+2", "consent": True}
    )
    assert status == 201 and item["held"] and item["revisions"] == 1
