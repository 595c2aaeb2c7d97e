"""Helpers for the browser tests: the app in a fresh context, sign-in through the local sign-in
page, CROHME ink replayed on the canvas, screenshots, requests made as a shell would.

A module with its own name (not `conftest`), so test modules import it without clashing with
the other conftest.py files.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from inktex.ink import read_inkml
from inktex.package import MANIFEST, write_manifest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
INKML = REPO / "tests" / "fixtures" / "inkml"
TINY_MODEL = REPO / "tests" / "fixtures" / "tiny_model"
RELEASE = REPO / "models" / "release"
ARTIFACTS = Path(os.environ.get("INKTEX_E2E_ARTIFACTS", REPO / "build" / "e2e"))
CHROMIUM = os.environ.get("INKTEX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 740}

# Runs before any page script (through the DevTools protocol, so the page's CSP does not apply
# to it): records CSP violations and uncaught errors where the tests can read them.
WATCH = """
window.__cspViolations = [];
window.__pageErrors = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI,
                               sample: e.sample});
});
window.addEventListener('error', (e) => window.__pageErrors.push(String(e.message)));
"""


@dataclass
class LocalStack:
    url: str
    state_dir: Path
    info: dict = field(default_factory=dict)

    def token(self, user: str) -> str:
        from local_stack.cli import local_issuer

        return local_issuer(self.state_dir).id_token(user)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """(status, JSON or None), as curl would see it; never raises for an HTTP status."""
        req = urllib.request.Request(
            f"{self.url}{path}", data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, data = exc.code, exc.read()
        return status, json.loads(data) if data else None


def model_with_release_metrics(folder: Path) -> Path:
    """The tiny test model (same version, same answers) with the bundled release's evaluation
    metrics (models/release/metrics.json), so that the Model page shows a real metrics table."""
    model = folder / TINY_MODEL.name
    shutil.copytree(TINY_MODEL, model)
    shutil.copyfile(RELEASE / "metrics.json", model / "metrics.json")
    write_manifest(model, json.loads((TINY_MODEL / MANIFEST).read_text())["version"])
    return model


def open_app(
    browser,
    stack: LocalStack,
    viewport: dict = DESKTOP,
    path: str = "/",
    routes=None,
    color_scheme: str = "light",
):
    """A fresh context (signed out) with the app loaded and ready."""
    context = browser.new_context(viewport=viewport, base_url=stack.url, color_scheme=color_scheme)
    context.add_init_script(WATCH)
    for pattern, handler in (routes or {}).items():
        context.route(pattern, handler)
    page = context.new_page()
    page.set_default_timeout(120_000)  # a ceiling for a hang on a busy machine, not a speed gate
    page.goto(path)
    page.wait_for_selector("body[data-ready=true]")
    return page


def no_csp_trouble(page) -> None:
    assert page.evaluate("window.__cspViolations") == []
    assert page.evaluate("window.__pageErrors") == []


def sign_in(page, user: str) -> None:
    """Through the app's Sign in button and the local sign-in page, back to the app."""
    page.click("#sign-in")
    page.wait_for_url("**/oauth2/authorize**")
    page.fill("#username", user)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready=true][data-signed-in=true]")
    assert page.text_content("#user-name") == user
    assert "code=" not in page.url  # the code never stays in the address bar


def replay_inkml(page, inkml: Path, margin: float = 28) -> int:
    """Draws an InkML file's strokes on the canvas with the mouse, scaled to fit; the count."""
    strokes = [s for s in read_inkml(inkml).strokes if len(s)]
    box = page.locator("#ink").bounding_box()
    xs = [p[0] for s in strokes for p in s]
    ys = [p[1] for s in strokes for p in s]
    width, height = max(xs) - min(xs) or 1, max(ys) - min(ys) or 1
    scale = min((box["width"] - 2 * margin) / width, (box["height"] - 2 * margin) / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    for stroke in strokes:
        points = [(left + (x - min(xs)) * scale, top + (y - min(ys)) * scale) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        last = points[0]
        for point in points[1:]:
            if abs(point[0] - last[0]) + abs(point[1] - last[1]) >= 2:
                page.mouse.move(*point)
                last = point
        page.mouse.move(*points[-1])
        page.mouse.up()
    return len(strokes)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot kept as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header belongs at the top
    page.screenshot(path=str(path), full_page=True)
    return path
