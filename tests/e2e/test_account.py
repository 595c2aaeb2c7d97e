"""Signed in through the local sign-in page: predictions kept in the history (thumbnails, rendered
LaTeX, feedback status, pages, delete), a correction sent and confirmed, the model's status,
sign-out; axe-core on every view at desktop and phone widths, with screenshots of each.
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from e2e_kit import (
    DESKTOP,
    INKML,
    PHONE,
    WEB,
    no_csp_trouble,
    open_app,
    replay_inkml,
    screenshot,
    sign_in,
)
from PIL import Image
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e]  # the ceiling for a hang: pyproject.toml's timeout

IMAGE = INKML / "518_em_425.png"
TRUTH = {  # tests/fixtures/inkml/labels.tsv
    line.split("\t")[0]: line.split("\t")[1].strip()
    for line in (INKML / "labels.tsv").read_text().splitlines()
}
TOKEN = "JSON.parse(localStorage.getItem('inktex.session')).idToken"  # the app's ID token


def user(name: str) -> str:
    """A user of this test only: histories do not mix between tests on the shared stack."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def history_rows(page, count: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('#history-list > li').length === {count}"
        " && document.querySelector('#history-busy').hidden"
        " && !document.querySelector('#view-history').hidden"  # not the list left from before
    )


def thumbnails_loaded(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#history-list .thumb')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )


def recognise(page, trigger) -> dict:
    """Runs `trigger`, waits for POST /predictions, returns its JSON."""
    with page.expect_response(
        lambda r: r.url.endswith("/predictions") and r.request.method == "POST"
    ) as r:
        trigger()
    assert r.value.status == 201, r.value.text()
    page.wait_for_selector("#preview .katex")
    return r.value.json()


def test_sign_in_and_sign_out(page):
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-out")).to_be_hidden()
    name = user("ada")
    sign_in(page, name)
    page.reload()
    page.wait_for_selector("body[data-ready=true][data-signed-in=true]")  # the session is kept
    page.click("#sign-out")
    page.wait_for_selector("body[data-ready=true][data-signed-in=false]")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#user-name")).to_be_hidden()
    page.click("nav >> text=History")
    expect(page.locator("#history-signed-out")).to_be_visible()  # the router runs on hashchange


def test_a_prediction_is_corrected_and_found_in_the_history(page, stack):
    sign_in(page, user("grace"))
    drawn = recognise(
        page, lambda: (replay_inkml(page, INKML / "27_em_120.inkml"), page.click("#recognize-ink"))
    )
    assert drawn["source"] == "api"

    # Correct it: edit the LaTeX, consent, send; the UI confirms and shows what is pending.
    expect(page.locator("#feedback-form")).to_be_visible()
    expect(page.locator("#send-correction")).to_be_disabled()
    page.fill("#latex", TRUTH["27_em_120"])
    page.check("#consent")
    with page.expect_response(lambda r: r.url.endswith("/feedback")) as r:
        page.click("#send-correction")
    assert r.value.status == 201, r.value.text()
    sent = r.value.request.post_data_json
    assert sent == {"prediction_id": drawn["id"], "latex": TRUTH["27_em_120"], "consent": True}
    page.wait_for_function(
        "() => document.querySelector('#feedback-status').textContent"
        ".includes('waiting for the next')"
    )
    status = page.text_content("#feedback-status")
    assert status.startswith("Correction recorded.")
    assert re.search(r"Examples waiting for the next retraining: \d+ of \d+", status)

    page.click("#tab-image")
    uploaded = recognise(page, lambda: page.set_input_files("#file", str(IMAGE)))

    page.click("nav >> text=History")
    history_rows(page, 2)
    thumbnails_loaded(page)
    rows = page.locator("#history-list > li")
    assert [rows.nth(i).get_attribute("data-id") for i in range(2)] == [uploaded["id"], drawn["id"]]
    assert page.locator("#history-list .history-math .katex").count() == 2
    assert "Corrected" in rows.nth(1).text_content()
    screenshot(page, "history-after-correction")

    # Open an entry again: it is back in the editor, its feedback shown.
    rows.nth(1).get_by_role("button", name=re.compile("^Open")).click()
    expect(page.locator("#latex")).to_have_value(drawn["latex"])
    expect(page.locator("#feedback-status")).to_have_text(re.compile("^Corrected"))

    # Delete the upload: the dialog asks first, then it is gone here and in the API.
    page.click("nav >> text=History")
    history_rows(page, 2)
    page.locator("#history-list > li").first.get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    page.click("#confirm button[value=ok]")
    history_rows(page, 1)
    status, body = stack.request(
        "GET", "/predictions", headers={"authorization": f"Bearer {page.evaluate(TOKEN)}"}
    )
    assert status == 200 and [i["id"] for i in body["items"]] == [drawn["id"]]
    # the record itself carries its feedback: what the history's badge showed
    note = body["items"][0]["feedback"]
    assert note["kind"] == "correction" and note["status"] in ("corrected", "held")


def test_a_large_photo_goes_whole_through_a_presigned_upload(page, stack, tmp_path):
    # The CROHME image enlarged, with sensor-like noise so PNG cannot compress it below 4 MB.
    ink = Image.open(IMAGE).convert("L").resize((2600, 1300), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(1).integers(-12, 12, (1300, 2600, 3))
    pixels = np.clip(np.asarray(ink)[..., None].astype(int) + noise, 0, 255).astype(np.uint8)
    big = tmp_path / "photo.png"
    Image.fromarray(pixels).save(big)
    assert big.stat().st_size > 4 * 1024 * 1024

    sign_in(page, user("mary"))
    page.click("#tab-image")
    with page.expect_request(lambda r: r.method == "PUT" and "/uploads/" in r.url) as put:
        page.set_input_files("#file", str(big))
    assert put.value.headers["content-type"] == "image/png"
    page.wait_for_selector("#result-body:not([hidden]) #preview .katex", timeout=300_000)
    expect(page.locator("#image-preview-caption")).to_contain_text("uploaded whole")
    key = unquote(urlsplit(put.value.url).path).split("/", 2)[2]  # /<bucket>/<key>
    status, body = stack.request(
        "GET", "/predictions", headers={"authorization": f"Bearer {page.evaluate(TOKEN)}"}
    )
    assert [i["source_key"] for i in body["items"]] == [key]
    assert page.input_value("#latex") == body["items"][0]["latex"]


def test_history_pages(page, stack):
    name = user("emmy")
    token = stack.token(name)  # the same user (its sub) as signing in with that name
    samples = sorted(INKML.glob("*.inkml"))
    for i in range(12):
        status, _ = stack.request(
            "POST",
            "/predictions",
            json.dumps({"inkml": samples[i % len(samples)].read_text()}).encode(),
            {"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        assert status == 201
    sign_in(page, name)
    page.click("nav >> text=History")
    history_rows(page, 10)
    assert page.is_disabled("#history-newer") and page.is_enabled("#history-older")
    first_page = page.locator("#history-list > li").first.get_attribute("data-id")
    page.click("#history-older")
    history_rows(page, 2)
    expect(page.locator("#history-page")).to_have_text("Page 2")
    expect(page.locator("#history-older")).to_be_disabled()
    page.click("#history-newer")
    history_rows(page, 10)
    assert page.locator("#history-list > li").first.get_attribute("data-id") == first_page


def test_delete_my_data_erases_the_history_and_signs_out(page, stack):
    name = user("rosalind")
    token = stack.token(name)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    for sample in sorted(INKML.glob("*.inkml"))[:2]:
        body = json.dumps({"inkml": sample.read_text()}).encode()
        assert stack.request("POST", "/predictions", body, headers)[0] == 201
    sign_in(page, name)
    page.click("nav >> text=History")
    history_rows(page, 2)

    # Cancelled: nothing is erased.
    page.click("#delete-my-data")
    expect(page.locator("#confirm-title")).to_have_text("Delete all your data?")
    page.click("#confirm >> text=Cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#delete-my-data")).to_be_visible()
    history_rows(page, 2)

    page.click("#delete-my-data")
    with page.expect_response(
        lambda r: r.url.endswith("/me") and r.request.method == "DELETE"
    ) as r:
        page.click("#confirm-ok")
    assert r.value.status == 200  # (its body is gone: sign-out navigates away at once)
    page.wait_for_selector("body[data-ready=true][data-signed-in=false]")
    expect(page.locator("#delete-my-data")).to_be_hidden()
    expect(page.locator("#sign-in")).to_be_visible()

    status, body = stack.request("GET", "/predictions", None, headers)
    assert status == 200 and body["items"] == []  # gone on the server too
    sign_in(page, name)
    page.click("nav >> text=History")
    page.wait_for_selector("#history-empty:not([hidden])")


def test_model_status(page, stack):
    page.click("nav >> text=Model")
    page.wait_for_selector("#production .version")
    expect(page.locator("#production .version code")).to_have_text(stack.info["model"]["version"])
    expect(page.locator("#retraining")).to_contain_text(
        "Sign in"
    )  # GET /retraining needs an account
    sign_in(page, user("alan"))
    page.wait_for_selector("#retraining .pending")
    expect(page.locator("#retraining .pending")).to_have_text(
        re.compile(r"\d+ of \d+ examples waiting")
    )


def test_the_model_page_charts_usage_over_time(page, stack):
    name = user("florence")
    token = stack.token(name)
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    samples = sorted(INKML.glob("*.inkml"))[:3]
    ids = []
    for sample in samples:
        status, body = stack.request(
            "POST", "/predictions", json.dumps({"inkml": sample.read_text()}).encode(), auth
        )
        assert status == 201
        ids.append(body["id"])
    feedback = {"prediction_id": ids[0], "latex": "x", "consent": False}
    assert stack.request("POST", "/feedback", json.dumps(feedback).encode(), auth)[0] == 201

    page.click("nav >> text=Model")
    page.wait_for_selector("#stats-note:has-text('Sign in')")  # GET /stats needs an account
    assert page.locator("#stats svg").count() == 0
    sign_in(page, name)
    page.wait_for_selector("#stats svg.chart-kind-bar rect.chart-bar")
    status, stats = stack.request("GET", "/stats?hours=24", headers=auth)
    assert status == 200 and len(stats["hours"]) == 24
    figures = page.locator("#stats figure")
    assert [figures.nth(i).get_attribute("data-chart") for i in range(4)] == [
        "predictions",
        "accuracy",
        "latency",
        "confidence",
    ]
    # one bar per hour with predictions; the latest bar's tooltip gives that hour's count
    busy = [h["predictions"] for h in stats["hours"] if h["predictions"]]
    bars = page.locator("#stats [data-chart=predictions] rect.chart-bar")
    assert bars.count() == len(busy) and busy[-1] >= len(samples)
    assert bars.last.locator("title").text_content().endswith(f": {busy[-1]}")
    for chart in ("accuracy", "latency", "confidence"):  # feedback, requests, predictions
        assert page.locator(f"#stats [data-chart={chart}] circle.chart-dot").count() >= 1, chart
    label = page.get_attribute("#stats [data-chart=predictions] svg", "aria-label")
    assert label.startswith("Predictions per hour:") and "in all" in label
    assert re.search(r"\d+ predictions?, \d+ errors? and", page.text_content("#stats-note"))

    # Another period: fetched again, drawn again, as wide as its figure.
    with page.expect_response(lambda r: "/stats?hours=168" in r.url) as r:
        page.select_option("#stats-hours", "168")
    assert r.value.status == 200 and len(r.value.json()["hours"]) == 168
    page.wait_for_function(
        "() => document.querySelectorAll('#stats [data-chart=accuracy] circle').length >= 1"
        " && !document.querySelector('#stats').hasAttribute('aria-busy')"
    )
    box = page.locator("#stats [data-chart=latency]").bounding_box()
    svg = page.locator("#stats [data-chart=latency] svg").bounding_box()
    assert abs(svg["width"] - box["width"]) <= 2
    screenshot(page, "models-charts")


AXE = (
    (WEB / "node_modules" / "axe-core" / "axe.min.js").read_text()
    if (WEB / "node_modules" / "axe-core").is_dir()
    else ""
)


def axe_problems(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE)  # through DevTools: the page's CSP does not apply to the test's tools
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3)}))"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("size", ["desktop", "phone", "dark"])
def test_every_view_passes_axe_and_fits_the_screen(browser, stack, size):
    assert AXE, "axe-core is missing: npm ci in web/"
    page = open_app(
        browser,
        stack,
        viewport=PHONE if size == "phone" else DESKTOP,
        color_scheme="dark" if size == "dark" else "light",
    )
    try:
        sign_in(page, user("hopper"))
        page.click("#tab-image")
        recognise(page, lambda: page.set_input_files("#file", str(IMAGE)))
        page.click("#tab-draw")
        replay_inkml(page, INKML / "MfrDB1843.inkml")
        recognise(page, lambda: page.click("#recognize-ink"))
        page.check("#consent")
        page.click("#mark-correct")
        page.wait_for_function(
            "() => document.querySelector('#feedback-status').textContent.includes('waiting')"
        )
        page.click("#alternatives-block summary")
        views = {"recognize": None, "history": "History", "models": "Model"}
        for view, link in views.items():
            if link:
                page.click(f"nav >> text={link}")
            if view == "history":
                history_rows(page, 2)
                thumbnails_loaded(page)
            if view == "models":
                page.wait_for_selector("#retraining .pending")
                page.wait_for_selector("#stats svg.chart-kind-bar rect.chart-bar")
            assert axe_problems(page) == [], view
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= page.viewport_size["width"], f"{view} scrolls sideways ({width}px)"
            outside = page.evaluate(
                "() => [...document.querySelectorAll('.topbar > *, .nav a, .card')]"
                ".filter((e) => e.getBoundingClientRect().right > innerWidth - 8)"
                ".map((e) => e.className)"
            )
            assert outside == [], f"{view}: {outside} reach the screen's edge"
            screenshot(page, f"{view}-{size}")
        no_csp_trouble(page)
    finally:
        page.context.close()
