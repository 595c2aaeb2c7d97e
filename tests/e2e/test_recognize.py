"""Recognising in the browser, signed out: real CROHME ink replayed on the canvas, a real CROHME
image uploaded, dropped and pasted, the LaTeX edited with its live preview, the CSP, and the
messages for rejected input and an unreachable API. Fixtures: tests/fixtures/README.md.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from e2e_kit import INKML, TINY_MODEL, open_app, replay_inkml, screenshot
from PIL import Image
from playwright.sync_api import expect

from inktex.runtime import OnnxRecognizer

pytestmark = [pytest.mark.e2e]  # the ceiling for a hang: pyproject.toml's timeout

IMAGE = INKML / "518_em_425.png"


@pytest.fixture(scope="module")
def recognizer() -> OnnxRecognizer:
    return OnnxRecognizer.load(TINY_MODEL)


def recognise_and_capture(page, click: str = "#recognize-ink", path: str = "/recognize"):
    """Clicks, and returns the request the page sent and the JSON the API answered."""
    with page.expect_response(lambda r: r.url.endswith(path) and r.request.method == "POST") as r:
        page.click(click)
    response = r.value
    assert response.ok, response.text()
    return response.request, response.json()


def shown_latex(page) -> str:
    """The TeX that KaTeX rendered in the preview (from its MathML annotation)."""
    page.wait_for_selector("#preview .katex")
    return page.text_content("#preview annotation[encoding='application/x-tex']")


def test_replayed_crohme_ink_is_sent_as_strokes_and_rendered(page, recognizer):
    drawn = replay_inkml(page, INKML / "27_em_120.inkml")
    request, result = recognise_and_capture(page)

    sent = request.post_data_json
    assert request.headers["content-type"].startswith("application/json")
    assert len(sent["strokes"]) == drawn
    assert all(len(p) == 2 and p[0] >= 0 and p[1] >= 0 for s in sent["strokes"] for p in s)
    # What the API answers for those strokes is what the model gives for them, here.
    assert result["latex"] == recognizer.recognize_strokes(sent["strokes"]).latex
    assert page.input_value("#latex") == result["latex"]
    assert shown_latex(page) == result["latex"]
    # Every token is listed; the uncertain ones (token_probs) are highlighted.
    assert page.locator("#tokens li").count() == len(result["tokens"])
    uncertain = sum(p < 0.5 for p in result["token_probs"])
    assert page.locator("#tokens .token-low, #tokens .token-very-low").count() == uncertain
    expect(page.locator("#confidence-value")).to_have_text(re.compile("%$"))
    assert page.locator("#alternatives li").count() == len(result["alternatives"])
    # Signed out: nothing is kept, so there is nothing to correct.
    expect(page.locator("#feedback-anonymous")).to_be_visible()
    expect(page.locator("#feedback-form")).to_be_hidden()
    screenshot(page, "recognize-desktop")


def test_undo_redo_and_clear(page):
    drawn = replay_inkml(page, INKML / "RIT_2014_19.inkml")
    assert drawn > 2
    page.click("#undo")
    page.click("#undo")
    page.click("#redo")
    page.keyboard.press("Control+z")  # the canvas has focus after drawing
    page.keyboard.press("Control+y")
    request, _ = recognise_and_capture(page)
    assert len(request.post_data_json["strokes"]) == drawn - 1
    page.click("#clear")
    expect(page.locator("#recognize-ink")).to_be_disabled()
    expect(page.locator("#ink-hint")).to_be_visible()
    page.click("#undo")  # clearing is undoable too
    request, _ = recognise_and_capture(page)
    assert len(request.post_data_json["strokes"]) == drawn - 1


def test_an_uploaded_crohme_image_is_recognised(page, recognizer):
    page.click("#tab-image")
    with page.expect_response(lambda r: r.url.endswith("/recognize")) as r:
        page.set_input_files("#file", str(IMAGE))
    result = r.value.json()
    assert r.value.request.headers["content-type"] == "image/png"
    assert result["latex"] == recognizer.recognize_file(IMAGE).latex
    assert shown_latex(page) == result["latex"]
    expect(page.locator("#image-preview img")).to_be_visible()


@pytest.mark.parametrize("how", ["paste", "drop"])
def test_a_pasted_or_dropped_image_is_recognised(page, recognizer, how):
    data = base64.b64encode(IMAGE.read_bytes()).decode()
    with page.expect_response(lambda r: r.url.endswith("/recognize")) as r:
        page.evaluate(
            """([data, how]) => {
              const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
              const dt = new DataTransfer();
              dt.items.add(new File([bytes], 'formula.png', {type: 'image/png'}));
              const init = {bubbles: true, cancelable: true};
              const event = how === 'paste'
                ? new ClipboardEvent('paste', {...init, clipboardData: dt})
                : new DragEvent('drop', {...init, dataTransfer: dt});
              // A paste goes to the page; a drop lands on the canvas, away from the drop zone.
              const target = how === 'paste' ? document.body : document.querySelector('#ink');
              target.dispatchEvent(event);
            }""",
            [data, how],
        )
    assert r.value.json()["latex"] == recognizer.recognize_file(IMAGE).latex
    expect(page.locator("#tab-image")).to_have_attribute("aria-selected", "true")


def test_a_photo_over_the_payload_limit_is_scaled_down_first(page, tmp_path):
    # The CROHME image enlarged, with sensor-like noise so PNG cannot compress it below 4 MB.
    ink = Image.open(IMAGE).convert("L").resize((2600, 1300), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).integers(-12, 12, (1300, 2600, 3))
    pixels = np.clip(np.asarray(ink)[..., None].astype(int) + noise, 0, 255).astype(np.uint8)
    big = tmp_path / "photo.png"
    Image.fromarray(pixels).save(big)
    assert big.stat().st_size > 5 * 1024 * 1024

    page.click("#tab-image")
    with page.expect_response(lambda r: r.url.endswith("/recognize")) as r:
        page.set_input_files("#file", str(big))
    assert r.value.ok, r.value.text()
    caption = page.text_content("#image-preview-caption")  # "...: scaled down from A MB to B MB"
    sent_mb = float(re.search(r"scaled down from [\d.]+ MB to ([\d.]+) MB", caption).group(1))
    assert sent_mb <= 4.0
    assert page.evaluate("document.querySelector('#image-preview-img').naturalWidth") <= 2000
    page.wait_for_selector("#preview .katex")


def test_the_size_limits_shown_are_the_ones_the_api_enforces(page, stack):
    # config.json's limits (issue 19: the page once said 6 MB where the API took 4 MiB).
    status, config = stack.request("GET", "/config.json")
    assert status == 200
    limits = config["limits"]
    largest = limits["maxBodyBytes"]
    shown = f"{largest / 2**20:g} MB"  # the page's sizeText: 4194304 -> "4 MB"

    # The API refuses one byte more than config.json says, and not the limit itself.
    png = {"content-type": "image/png"}
    status, answer = stack.request("POST", "/recognize", b"\0" * (largest + 1), png)
    assert status == 413 and f"the limit is {largest}" in answer["message"]
    status, answer = stack.request("POST", "/recognize", b"\0" * largest, png)
    assert status == 400 and answer["message"].startswith("not a readable image")

    # The image tab states it, and takes the types the API reads.
    page.click("#tab-image")
    expect(page.locator("#image-limits")).to_contain_text(f"or InkML up to {shown};")
    accept = page.get_attribute("#file", "accept").split(",")
    assert accept[: len(limits["imageTypes"])] == limits["imageTypes"]

    # A 413 names it too, whoever sends it (here API Gateway's own, which says no number).
    def too_large(route):
        body = json.dumps({"message": "Request Entity Too Large"})
        route.fulfill(status=413, content_type="application/json", body=body)

    page.route("**/recognize", too_large)
    page.click("#tab-draw")
    replay_inkml(page, INKML / "27_em_120.inkml")
    page.click("#recognize-ink")
    expect(page.locator("#banner-text")).to_have_text(
        f"That input is larger than the API accepts ({shown}): use a smaller image."
    )


def test_editing_the_latex_updates_the_live_preview(page):
    replay_inkml(page, INKML / "27_em_120.inkml")
    recognise_and_capture(page)
    page.fill("#latex", r"\frac{a}{b} + \sqrt{15}")
    assert shown_latex(page) == r"\frac{a}{b} + \sqrt{15}"
    assert page.locator("#preview .mfrac, #preview .sqrt").count() >= 2
    expect(page.locator("#revert")).to_be_visible()

    page.fill("#latex", r"\frac{a}{")
    expect(page.locator("#preview-error")).to_contain_text("Not valid LaTeX")
    expect(page.locator("#latex")).to_have_attribute("aria-invalid", "true")

    page.click("#revert")
    expect(page.locator("#preview-error")).to_be_hidden()
    expect(page.locator("#revert")).to_be_hidden()

    # One click puts an alternative in the editor (the tiny model's may not even parse).
    alternatives = page.locator("#alternatives button")
    if alternatives.count():
        page.click("#alternatives-block summary")
        alternatives.first.click()
        expect(page.locator("#latex")).to_have_value(alternatives.first.get_attribute("data-latex"))
        expect(page.locator("#revert")).to_be_visible()


def test_the_csp_blocks_inline_script_and_the_app_needs_none(page):
    replay_inkml(page, INKML / "27_em_120.inkml")
    recognise_and_capture(page)
    page.wait_for_selector("#preview .katex")  # KaTeX rendered, styles and all
    assert page.evaluate("window.__cspViolations") == []

    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__inlineRan = true'; document.body.append(s); }"""
    )
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert page.evaluate("window.__inlineRan") is None
    violations = page.evaluate("window.__cspViolations")
    # One report per policy in force: the page's <meta> and the server's header both block it.
    assert {v["directive"] for v in violations} == {"script-src-elem"}
    page.evaluate("window.__cspViolations = []")  # the fixture checks the app made none


def test_a_rejected_input_shows_the_apis_reason(page, tmp_path):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(IMAGE.read_bytes()[:64])  # a real file, cut short in transfer
    page.click("#tab-image")
    with page.expect_response(lambda r: r.url.endswith("/recognize")) as r:
        page.set_input_files("#file", str(truncated))
    assert r.value.status == 400
    page.wait_for_selector("#banner:not([hidden])")
    message = r.value.json()["message"]
    assert message.startswith("not a readable image")
    expect(page.locator("#banner-text")).to_have_text(message[0].upper() + message[1:])

    page.click("#banner-close")
    notes = tmp_path / "notes.txt"
    notes.write_text("x^2")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#banner:not([hidden])")
    expect(page.locator("#banner-text")).to_contain_text("is not an image")


def test_an_unreachable_api_says_so(browser, stack):
    # Only config.json is replaced (pointing at a closed port); API calls go out unaltered.
    def config(route):
        body = {"apiUrl": "http://127.0.0.1:9", "local": True}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page = open_app(browser, stack, routes={"**/config.json": config})
    try:
        page.wait_for_selector("#banner:not([hidden])")
        text = page.text_content("#banner-text")
        assert "cannot be reached" in text and "http://127.0.0.1:9" in text
        expect(page.locator("#sign-in")).to_be_hidden()  # no sign-in without its settings
    finally:
        page.context.close()


def test_the_keyboard_reaches_everything(page):
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.focus("#tab-draw")
    page.keyboard.press("ArrowRight")  # the ARIA tabs pattern
    assert page.get_attribute("#tab-image", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-image"
    page.keyboard.press("Tab")  # into the image panel: the file chooser
    assert page.evaluate("document.activeElement.id") == "file"
    page.focus("#tab-image")
    page.keyboard.press("ArrowLeft")
    drawn = replay_inkml(page, INKML / "RIT_2014_19.inkml")
    page.focus("#ink")
    with page.expect_request(lambda r: r.url.endswith("/recognize")) as request:
        page.keyboard.press("Control+Enter")
    assert len(request.value.post_data_json["strokes"]) == drawn
    page.wait_for_selector("#preview .katex")
    page.focus("#latex")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "copy"
    page.keyboard.press("Enter")
    page.wait_for_selector(".toast-visible")
    expect(page.locator("#toast")).to_have_text("LaTeX copied to the clipboard.")
