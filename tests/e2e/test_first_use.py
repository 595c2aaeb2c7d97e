"""What a new user meets first (issue 21): the result card's empty state once signed in, no
focus ring around the page after sign-in, the sign-in page's look and icon, the Model page's
names and units, thumbnails that hold the whole ink, what a confirmation does to the count of
examples waiting for retraining, and the metrics token's 401 on the local stack.
"""

from __future__ import annotations

import io
import re
import urllib.request
import uuid

import numpy as np
import pytest
from e2e_kit import INKML, replay_inkml, sign_in
from PIL import Image
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e]  # the ceiling for a hang: pyproject.toml's timeout

TOKEN = "JSON.parse(localStorage.getItem('inktex.session')).idToken"  # the app's ID token


def user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def recognise_drawn(page, inkml) -> dict:
    with page.expect_response(
        lambda r: r.url.endswith("/predictions") and r.request.method == "POST"
    ) as r:
        replay_inkml(page, inkml)
        page.click("#recognize-ink")
    assert r.value.status == 201, r.value.text()
    page.wait_for_selector("#result-body:not([hidden]) #preview .katex")
    return r.value.json()


def test_signed_in_the_empty_result_does_not_say_signed_out_and_no_ring_surrounds_the_page(
    page,
):
    expect(page.locator("#result-empty")).to_be_visible()
    expect(page.locator("#result-empty-account")).to_have_text(re.compile("^Signed out"))
    missing = []  # anything the sign-in page or the app asks for and does not get
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    page.click("#sign-in")
    page.wait_for_url("**/oauth2/authorize**")
    # the sign-in page has the app's look: its mark, its accent on the button, a card
    expect(page.locator(".brand")).to_contain_text("InkTeX")
    assert (
        page.eval_on_selector("button[type=submit]", "b => getComputedStyle(b).backgroundColor")
        == "rgb(48, 71, 201)"
    )  # --accent
    assert page.eval_on_selector("main", "m => getComputedStyle(m).borderRadius") == "14px"
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon.startswith("data:image/svg+xml")  # nothing to fetch: no /favicon.ico
    page.fill("#username", user("newcomer"))
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready=true][data-signed-in=true]")

    expect(page.locator("#result-empty")).to_be_visible()
    expect(page.locator("#result-empty-account")).to_have_text(re.compile("^Signed in"))
    assert "nothing is kept" not in page.text_content("#result-empty")
    # the view took focus for screen readers, but no ring is drawn around the whole page
    assert page.evaluate("document.activeElement.id") == "main"
    ring = page.eval_on_selector(
        "#main", "m => [getComputedStyle(m).boxShadow, getComputedStyle(m).outlineStyle]"
    )
    assert ring == ["none", "none"], ring
    assert missing == [], missing


def test_the_model_page_names_every_metric_with_its_unit(page, stack):
    page.click("nav >> text=Model")
    page.wait_for_selector("#production table.kv tr")
    rows = page.eval_on_selector_all(
        "#production table.kv tr",
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])",
    )
    labels = [label for label, _ in rows]
    assert not [label for label in labels if "_" in label or re.search(r"[a-z]\d", label)], labels
    values = dict(rows)
    # models/release/metrics.json: crohme2014 exprate 41.2779, mean_edit_distance 3.1897
    assert values["CROHME 2014 · Expressions exactly right (ExpRate)"] == "41.3%"
    assert values["CROHME 2014 · At most one token wrong"] == "59.8%"
    assert values["CROHME 2013 · Token error rate"] == "20.9%"
    assert values["CROHME 2014 · Mean token edits per expression"] == "3.19 edits"
    assert values["CROHME 2014 · Expressions evaluated"] == "986"
    rates = [v for label, v in rows if "edits" not in v and "evaluated" not in label]
    assert rates and all(re.fullmatch(r"\d{1,3}\.\d%", v) for v in rates), rates

    # the usage note agrees with its numbers: "1 error", "2 errors"
    sign_in(page, user("counter"))
    page.wait_for_selector("#stats svg")
    note = page.text_content("#stats-note")
    for number, noun in re.findall(r"(\d[\d,]*) (predictions?|errors?)\b", note):
        assert (number == "1") == (not noun.endswith("s")), note
    assert page.evaluate(
        "import('/app/stats.js').then((m) => [m.counted(1, 'error'), m.counted(2, 'error')])"
    ) == ["1 error", "2 errors"]


def ink_box(pixels: np.ndarray, dark: int = 128) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the dark pixels of a grey image."""
    ys, xs = np.nonzero(pixels < dark)
    assert len(xs), "no ink"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.mark.parametrize("sample", ["27_em_120", "MfrDB1843"])  # \sqrt{15}, a wide equation
def test_a_history_thumbnail_shows_the_whole_ink_with_its_aspect(page, stack, sample):
    sign_in(page, user("thumbs"))
    record = recognise_drawn(page, INKML / f"{sample}.inkml")
    token = page.evaluate(TOKEN)
    # The input as the API renders it: its ink's box is what the thumbnail must show whole.
    req = urllib.request.Request(
        f"{stack.url}/predictions/{record['id']}/input",
        headers={"authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as response:
        source = np.asarray(Image.open(io.BytesIO(response.read())).convert("L"))
    left, top, right, bottom = ink_box(source)
    source_aspect = (right - left + 1) / (bottom - top + 1)

    page.click("nav >> text=History")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#history-list .thumb')]"
        ".some((img) => img.complete && img.naturalWidth > 0)"
    )
    frame = page.locator(f"#history-list > li[data-id='{record['id']}'] .thumb-frame")
    shot = np.asarray(Image.open(io.BytesIO(frame.screenshot())).convert("L"))
    inner = shot[2:-2, 2:-2]  # inside the frame's 1 px border
    x0, y0, x1, y1 = ink_box(inner)
    height, width = inner.shape
    # the whole ink is inside, clear of every edge, and fills the frame's width or height
    assert x0 > 0 and y0 > 0 and x1 < width - 1 and y1 < height - 1, ((x0, y0, x1, y1), inner.shape)
    assert (x1 - x0 + 1) >= 0.6 * width or (y1 - y0 + 1) >= 0.6 * height
    thumb_aspect = (x1 - x0 + 1) / (y1 - y0 + 1)
    assert thumb_aspect == pytest.approx(source_aspect, rel=0.2), (thumb_aspect, source_aspect)


def test_a_confirmation_is_counted_as_an_example_the_same_everywhere(page, stack):
    sign_in(page, user("confirmer"))
    auth = {"authorization": f"Bearer {page.evaluate(TOKEN)}"}
    status, before = stack.request("GET", "/retraining", headers=auth)
    assert status == 200
    recognise_drawn(page, INKML / "27_em_120.inkml")
    page.check("#consent")
    with page.expect_response(lambda r: r.url.endswith("/feedback")) as r:
        page.click("#mark-correct")
    assert r.value.status == 201 and r.value.json()["assessment"]["kind"] == "confirmation"
    page.wait_for_function(
        "() => document.querySelector('#feedback-status').textContent.includes('waiting')"
    )
    status, after = stack.request("GET", "/retraining", headers=auth)
    assert status == 200 and after["pending"] == before["pending"] + 1  # it counts, as said:
    text = page.text_content("#feedback-status")
    assert text.startswith("Marked as correct.")
    assert (
        f"Examples waiting for the next retraining: {after['pending']} of {after['threshold']}"
        " (corrections and confirmations both count)." in text
    ), text
    assert "corrections are waiting" not in text

    page.click("nav >> text=Model")
    pending = page.locator("#retraining .pending")
    expect(pending).to_have_text(
        f"{after['pending']} of {after['threshold']} examples waiting for the next retraining"
    )
    expect(page.locator("#retraining")).to_contain_text(
        "An example is a correction or a confirmation"
    )


def test_the_local_metrics_401_says_where_the_token_is(stack):
    status, body = stack.request("GET", "/metrics", headers={"authorization": "Bearer wrong"})
    assert status == 401 and "`inktex info`" in body["message"], body
