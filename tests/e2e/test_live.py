"""Live recognition in the browser (issue 22): the production package run by onnxruntime-web in
a Web Worker after each stroke, its JS preprocessing and search held to the core's answers, the
fallback to the server, the toggle, axe, and the latency from pen-up to LaTeX beside the
server's.

The parity test needs no stack: a small HTTP server gives Chromium the page's modules and a
model package's files, and the page runs web/app/recognizer.js on CROHME's InkML strokes;
the answers must be `inktex predict`'s (`OnnxRecognizer.recognize_file`, what the CLI runs)
token for token, with probabilities within 1e-3, and the model input pixel for pixel. It
runs on a package of each decoder the page drives: a GRU (96 x 256 inputs) and a Transformer
trained both ways (the writer's scale, its beam rescored right to left): the bundled release
for its kind, and the other exported from `models/lineage/` for the session.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import importlib.util
import itertools
import json
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from e2e_kit import (
    ARTIFACTS,
    DESKTOP,
    INKML,
    RELEASE,
    TINY_MODEL,
    WATCH,
    WEB,
    LocalStack,
    no_csp_trouble,
    open_app,
    screenshot,
)
from playwright.sync_api import expect
from testkit import require

from inktex.data import iter_inkml_split
from inktex.ink import read_inkml
from inktex.inputs import from_path, from_strokes
from inktex.package import ModelPackage, write_manifest
from inktex.runtime import OnnxRecognizer
from inktex.transformer_runtime import READ_FILE

pytestmark = [pytest.mark.e2e]

CROHME_PARITY = 200  # CROHME 2014 expressions read greedily, in the browser and by the core
# ... and with the package's beam (5), as `inktex predict` reads them: all 200 (2 min 12 s for
# both searches on an idle core; docs/web.md). INKTEX_PARITY_BEAM=N checks only the first N.
CROHME_BEAM_PARITY = int(os.environ.get("INKTEX_PARITY_BEAM", str(CROHME_PARITY)))
LATENCY_EXPRESSIONS = 20  # pen-up to LaTeX, up to 20 tokens
PROB_TOLERANCE = 1e-3
LINEAGE = RELEASE.parent / "lineage"
# A package of each decoder kind the page drives: the release for its own kind, else these.
LINEAGE_OF_KIND = {
    "gru": LINEAGE / "0286bacd14897312.pt",  # the GRU release before the Transformer
    "transformer": LINEAGE / "session10-transformer.pt",  # BTTR's decoder, read both ways
}


# --- drawing ---------------------------------------------------------------------------------


def _page_strokes(page, strokes, margin: float = 28) -> list[list[tuple[float, float]]]:
    """InkML strokes scaled to fit the canvas, in page coordinates (as replay_inkml does)."""
    box = page.locator("#ink").bounding_box()
    points = np.concatenate([s for s in strokes if len(s)])
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    width, height = (x1 - x0) or 1, (y1 - y0) or 1
    scale = min((box["width"] - 2 * margin) / width, (box["height"] - 2 * margin) / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    return [[(left + (x - x0) * scale, top + (y - y0) * scale) for x, y in s] for s in strokes]


def draw_stroke(page, points, min_step: float = 2) -> None:
    """One stroke with the mouse, a move at least every `min_step` px (each is a round trip)."""
    page.mouse.move(*points[0])
    page.mouse.down()
    last = points[0]
    for point in points[1:]:
        if abs(point[0] - last[0]) + abs(point[1] - last[1]) >= min_step:
            page.mouse.move(*point)
            last = point
    page.mouse.move(*points[-1])
    page.mouse.up()


def live_generation(page) -> int:
    return int(page.evaluate("document.body.dataset.liveGeneration || '0'"))


def ink_generation(page) -> int:
    """How many times the drawing changed (each stroke, undo, redo or clear)."""
    return int(page.evaluate("document.body.dataset.inkGeneration || '0'"))


def wait_for_live(page, generation: int) -> float:
    """Waits until the live result for the drawing's `generation`-th change is on the card;
    its pen-up to LaTeX time in ms (measured in the page)."""
    page.wait_for_selector(f'body[data-live-generation="{generation}"]', timeout=60_000)
    assert live_generation(page) == generation
    return float(page.evaluate("document.body.dataset.liveLatencyMs"))


def recognise_on_server(page) -> dict:
    with page.expect_response(
        lambda r: r.url.endswith("/recognize") and r.request.method == "POST"
    ) as response:
        page.click("#recognize-ink")
    assert response.value.ok, response.value.text()
    expect(page.locator("#result-meta")).to_contain_text("on the server")
    return {"request": response.value.request.post_data_json, "answer": response.value.json()}


def open_live_app(browser, stack: LocalStack, init: str = "", routes=None):
    """The app in a fresh context, with `init` run before the page's scripts."""
    context = browser.new_context(viewport=DESKTOP, base_url=stack.url)
    context.add_init_script(WATCH + init)
    for pattern, handler in (routes or {}).items():
        context.route(pattern, handler)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")
    return page


AXE = (
    (WEB / "node_modules" / "axe-core" / "axe.min.js").read_text()
    if (WEB / "node_modules" / "axe-core").is_dir()
    else ""
)


def axe_problems(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    assert AXE, "axe-core is missing: npm ci in web/"
    page.evaluate(AXE)  # through DevTools: the page's CSP does not apply to the test's tools
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' '))}))"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


# --- live mode on the local stack (the test model) ------------------------------------------


@pytest.mark.timeout(240)
def test_live_mode_updates_after_each_stroke_and_recognise_still_asks_the_server(page):
    require(
        (WEB / "vendor" / "onnxruntime-web" / "ort.wasm.min.mjs").is_file(),
        "web/vendor/onnxruntime-web is missing: npm ci in web/",
    )
    expect(page.locator("#live-toggle")).to_be_checked()
    strokes = read_inkml(INKML / "27_em_120.inkml").strokes
    for i, points in enumerate(_page_strokes(page, strokes), start=1):
        draw_stroke(page, points)
        wait_for_live(page, i)
        live = {
            "latex": page.input_value("#latex"),
            "confidence": page.text_content("#confidence-value"),
            "meta": page.text_content("#result-meta"),
        }
        assert "in this browser" in live["meta"]
        expect(page.locator("#live-status")).to_contain_text("Live, in this browser: model")
        # The server reads the same strokes the same way: same model, same search.
        server = recognise_on_server(page)
        assert len(server["request"]["strokes"]) == i
        assert live["latex"] == server["answer"]["latex"]
        assert server["answer"]["model_version"] in live["meta"]
        assert page.input_value("#latex") == server["answer"]["latex"]
    # a live result is kept nowhere, so it offers no feedback form
    draw_stroke(page, [(p[0] + 5, p[1]) for p in _page_strokes(page, strokes)[0]])
    wait_for_live(page, len(strokes) + 1)
    expect(page.locator("#feedback-anonymous")).to_contain_text("Read in this browser")
    assert axe_problems(page) == []
    no_csp_trouble(page)


@pytest.mark.timeout(120)
def test_the_toggle_turns_live_recognition_off(page):
    manifests = []
    page.on("request", lambda r: manifests.append(r.url) if "/production/web" in r.url else None)
    page.uncheck("#live-toggle")
    expect(page.locator("#live-status")).to_contain_text("Live recognition is off")
    for points in _page_strokes(page, read_inkml(INKML / "27_em_120.inkml").strokes):
        draw_stroke(page, points)
    recognise_on_server(page)
    assert manifests == [] and live_generation(page) == 0  # no model was even loaded
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#live-toggle")).not_to_be_checked()  # the choice is remembered


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "how, said",
    [
        ("no-worker", "runs no Web Workers"),
        ("model-fails", "answered 500"),
        ("slow-device", "for a short recognition"),
    ],
)
def test_live_recognition_falls_back_to_the_server_with_a_note(browser, stack, how, said):
    init, routes = "", None
    if how == "no-worker":
        init = "delete window.Worker;"
    elif how == "model-fails":
        routes = {"**/web/encoder.onnx": lambda route: route.fulfill(status=500, body="broken")}
    else:
        init = "window.INKTEX_LIVE_SLOW_MS = 0;"  # every device is too slow for this limit
    page = open_live_app(browser, stack, init, routes)
    try:
        for points in _page_strokes(page, read_inkml(INKML / "27_em_120.inkml").strokes):
            draw_stroke(page, points)
        page.wait_for_selector("body[data-live=failed]", timeout=60_000)
        status = page.locator("#live-status")
        expect(status).to_contain_text(said)
        expect(status).to_contain_text("Recognise asks the server")
        assert live_generation(page) == 0  # nothing from the browser reached the card
        server = recognise_on_server(page)
        assert page.input_value("#latex") == server["answer"]["latex"]
        assert axe_problems(page) == []
        no_csp_trouble(page)
    finally:
        page.context.close()


# --- parity: the JS path against `inktex predict` -------------------------------------------


def _decoder(package: Path) -> str:
    return ModelPackage.load(package).settings.get("decoder") or "gru"


def _export(checkpoint: Path, out: Path) -> Path:
    """A package as `model_export.release candidate` makes it: the weights rounded to fp16,
    exported, and held by the export's parity check, here on the fixtures' strokes (the
    candidate step reads the prepared data, which a test run may not have)."""
    require(importlib.util.find_spec("torch") is not None, "exporting needs the train extra")
    from model_export.export import export_package
    from model_export.release import write_half
    from training.checkpoint import load_checkpoint

    half = out.parent / f"{out.name}.pt"
    write_half(checkpoint, half)
    pre = load_checkpoint(half)[2]
    samples = [from_path(p, pre) for p in sorted(INKML.glob("*.inkml"))]
    return export_package(half, out, samples).path


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Path]:
    """The packages the parity tests read, by name: one of each decoder kind (the release for
    its own), and the tiny test model."""
    found = {"tiny": TINY_MODEL, _decoder(RELEASE): RELEASE}
    for kind, checkpoint in LINEAGE_OF_KIND.items():
        if kind not in found:
            found[kind] = _export(checkpoint, tmp_path_factory.mktemp(kind) / "package")
    # the Transformer without its read graph: both runtimes rescore it step by step
    stepwise = tmp_path_factory.mktemp("stepwise") / "package"
    shutil.copytree(found["transformer"], stepwise, ignore=shutil.ignore_patterns(READ_FILE))
    write_manifest(stepwise, ModelPackage.load(found["transformer"]).version)
    found["transformer-stepwise"] = stepwise
    return found


class _Files(http.server.SimpleHTTPRequestHandler):
    """web/ at /, the model packages at /models/<name>/, and an empty page at /parity.html."""

    packages: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if parts[0] == "models" and len(parts) == 3 and parts[1] in self.packages:
            return str(self.packages[parts[1]] / parts[2])
        return str(WEB / "/".join(parts))

    def do_GET(self):
        if self.path == "/parity.html":
            body = b"<!doctype html><title>parity</title>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def files_server(packages):
    _Files.packages = packages
    _Files.extensions_map = {**_Files.extensions_map, ".mjs": "text/javascript"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LOAD = """async ([name, base]) => {
  const ort = await import(base + '/vendor/onnxruntime-web/ort.wasm.min.mjs');
  const { BrowserRecognizer, configureOrt } = await import(base + '/app/recognizer.js');
  configureOrt(ort, base + '/vendor/onnxruntime-web/');
  const get = async (f) => fetch(`${base}/models/${name}/${f}`);
  const json = async (f) => (await get(f)).json();
  const bytes = async (f) => new Uint8Array(await (await get(f)).arrayBuffer());
  const model = await json('model.json');
  const { version, files } = await json('manifest.json');
  // a package read both ways rescores its beam through its read graph, where it has one
  const read = 'decoder_read.onnx';
  const reader = model.bidirectional && files[read] ? await bytes(read) : null;
  const manifest = { version,
    vocab: await json('vocab.json'), preprocess: await json('preprocess.json'), search: model,
    files: null, browser: true, reason: '' };
  window.recognizers = window.recognizers || {};
  window.recognizers[name] = await BrowserRecognizer.create(ort, manifest,
    await bytes('encoder.onnx'), await bytes('decoder_step.onnx'), reader);
  window.preprocess = await import(base + '/app/preprocess.js');
}"""

RECOGNISE = """async ([name, items, beam]) => {
  const rec = window.recognizers[name];
  const out = [];
  for (const strokes of items) {
    const input = window.preprocess.strokesToModelInput(strokes, rec.manifest.preprocess);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', input.data));
    const r = await rec.recognize(strokes, beam);
    out.push({ tokens: r.tokens, confidence: r.confidence, token_probs: r.token_probs,
      alternatives: r.alternatives, latency_ms: r.latency_ms, shape: [input.height, input.width],
      sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('') });
  }
  return out;
}"""


@pytest.fixture(scope="module")
def parity_page(browser, files_server, packages):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(600_000)
    page.goto(f"{files_server}/parity.html")
    for name in packages:
        page.evaluate(LOAD, [name, files_server])
    yield page
    context.close()


@functools.cache
def _python_recognizer(package: Path) -> OnnxRecognizer:
    return OnnxRecognizer.load(package)


def _check_parity(page, packages: dict, name: str, paths: list[Path], beam: int) -> dict:
    """The browser's answers for InkML files against `inktex predict`'s; a summary."""
    python = _python_recognizer(packages[name])
    strokes = [[s.tolist() for s in read_inkml(p).strokes] for p in paths]
    browser_answers = []
    for start in range(0, len(paths), 25):  # a call per 25: no single evaluate runs for long
        browser_answers += page.evaluate(RECOGNISE, [name, strokes[start : start + 25], beam])
    mismatches, worst = [], 0.0
    for path, got, drawn in zip(paths, browser_answers, strokes, strict=True):
        want = python.recognize_file(path, beam=beam)
        model_input = from_strokes([np.asarray(s) for s in drawn], python.preprocess)
        assert got["shape"] == list(model_input.shape), path.name
        digest = hashlib.sha256(model_input.astype(np.float32).tobytes()).hexdigest()
        assert got["sha256"] == digest, f"{path.name}: the model input differs from the core's"
        if got["tokens"] != want.tokens:
            mismatches.append((path.name, " ".join(got["tokens"]), want.latex))
            continue
        diffs = [abs(got["confidence"] - want.confidence)]
        diffs += [abs(a - b) for a, b in zip(got["token_probs"], want.token_probs, strict=True)]
        alts = zip(got["alternatives"], want.alternatives, strict=True)
        for a, b in alts:
            assert a["latex"] == b["latex"], f"{path.name}: alternative {a} != {b}"
            diffs.append(abs(a["confidence"] - b["confidence"]))
        worst = max(worst, *diffs)
    assert mismatches == [], f"beam {beam}: the browser's tokens differ: {mismatches[:5]}"
    assert worst <= PROB_TOLERANCE
    latencies = [a["latency_ms"] for a in browser_answers]
    return {"n": len(paths), "worst_prob_diff": worst, "p50_ms": statistics.median(latencies)}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("model", ["gru", "transformer", "transformer-stepwise", "tiny"])
def test_the_browser_reads_the_fixtures_as_inktex_predict(parity_page, packages, model):
    paths = sorted(INKML.glob("*.inkml"))
    for beam in (1, 5):
        _check_parity(parity_page, packages, model, paths, beam)


@pytest.mark.crohme
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_the_browser_reads_crohme_2014_as_inktex_predict(
    parity_page, packages, model, crohme, capsys
):
    samples = list(itertools.islice(iter_inkml_split(crohme, "test2014"), CROHME_PARITY))
    folder = crohme / "inkml" / "test2014"
    paths = [folder / f"{s.name}.inkml" for s in samples]
    summary = {}
    for beam, count in ((1, len(paths)), (5, CROHME_BEAM_PARITY)):
        started = time.perf_counter()
        found = _check_parity(parity_page, packages, model, paths[:count], beam)
        summary[f"beam {beam}"] = found
        summary[f"beam {beam}"]["wall_s"] = round(time.perf_counter() - started, 1)
    with capsys.disabled():
        print(f"\n{model}: parity on {len(paths)} CROHME 2014 expressions: {json.dumps(summary)}")


# --- live mode for a Transformer package, on a stack of its own -----------------------------


@contextlib.contextmanager
def _stack_serving(model: Path, state: Path) -> Iterator[LocalStack]:
    """A local stack of its own serving `model` (the session's serves the test model)."""
    from inktex import cli

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    where = ["--state-dir", str(state)]
    up = ["up", "--detach", "--aws-port", ports[0], "--api-port", ports[1], "--model", str(model)]
    assert cli.main([*up, *where]) == 0, f"inktex up failed; see {state}/stack.log"
    try:
        info = json.loads((state / "stack.json").read_text())
        yield LocalStack(info["api_url"], state, info)
    finally:
        cli.main(["down", *where])


@pytest.mark.timeout(300)
def test_live_mode_runs_a_transformer_package_as_the_server_does(
    browser, packages, tmp_path_factory
):
    """The whole way for a Transformer read both ways: the API offers its three graphs (each
    under an API answer's limit), the worker loads them and its answers are the server's."""
    require(
        (WEB / "vendor" / "onnxruntime-web" / "ort.wasm.min.mjs").is_file(),
        "web/vendor/onnxruntime-web is missing: npm ci in web/",
    )
    state = tmp_path_factory.mktemp("transformer-stack")
    with _stack_serving(packages["transformer"], state) as stack:
        page = open_live_app(browser, stack)
        try:
            offered = page.evaluate("async () => (await fetch('/models/production/web')).json()")
            assert offered["browser"] is True, offered["reason"]
            assert offered["search"]["decoder"] == "transformer"
            assert offered["search"]["bidirectional"] is True
            assert sorted(offered["files"]) == [READ_FILE, "decoder_step.onnx", "encoder.onnx"]
            strokes = read_inkml(INKML / "27_em_120.inkml").strokes
            for points in _page_strokes(page, strokes):
                draw_stroke(page, points)
            wait_for_live(page, len(strokes))
            live_latex = page.input_value("#latex")
            expect(page.locator("#result-meta")).to_contain_text("in this browser")
            server = recognise_on_server(page)["answer"]
            assert live_latex == server["latex"]
            assert server["model_version"] == offered["version"]
            no_csp_trouble(page)
        finally:
            page.context.close()


# --- latency: pen-up to LaTeX, in the browser and on the server (the release model) ----------


@pytest.fixture(scope="module")
def release_stack(tmp_path_factory):
    """A second local stack serving the bundled release."""
    with _stack_serving(RELEASE, tmp_path_factory.mktemp("live-stack")) as stack:
        yield stack


@pytest.mark.crohme
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_latency_from_pen_up_to_latex_in_the_browser_and_on_the_server(
    browser, release_stack, crohme, capsys
):
    chosen = []
    for sample in iter_inkml_split(crohme, "test2014"):
        if len(sample.tokens) <= 20:
            chosen.append(sample)
        if len(chosen) == LATENCY_EXPRESSIONS:
            break
    page = open_app(browser, release_stack)
    live, worker, server, tokens = [], [], [], []
    try:
        for n, sample in enumerate([chosen[0], *chosen]):  # the first loads the model: not counted
            if page.is_enabled("#clear"):
                page.click("#clear")
            for points in _page_strokes(page, sample.ink.strokes):
                draw_stroke(page, points, min_step=6 if n else 2)  # the first one drawn well
            latency = wait_for_live(page, ink_generation(page))
            live_latex = page.input_value("#latex")
            if n == 0:  # the README's picture of live mode (docs/images/live.png)
                screenshot(page, "live")
            answer = recognise_on_server(page)["answer"]
            assert live_latex == answer["latex"]  # the same model answered both
            if n:
                live.append(latency)
                worker.append(float(page.evaluate("document.body.dataset.liveWorkerMs")))
                server.append(float(page.evaluate("document.body.dataset.serverLatencyMs")))
                tokens.append(len(answer["tokens"]))
        no_csp_trouble(page)
    finally:
        page.context.close()

    def p(values, q):
        return float(np.percentile(values, q))

    report = {
        "expressions": len(live),
        "tokens_max": max(tokens),
        "browser_ms": {"p50": round(p(live, 50), 1), "p95": round(p(live, 95), 1)},
        # of which the recognition in the worker (preprocessing, encoder, search)
        "browser_recognition_ms": {"p50": round(p(worker, 50), 1), "p95": round(p(worker, 95), 1)},
        "server_ms": {"p50": round(p(server, 50), 1), "p95": round(p(server, 95), 1)},
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "live-latency.json").write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print(f"\npen-up to LaTeX, CROHME 2014 up to 20 tokens: {json.dumps(report)}")
