"""Browser tests: Playwright (Python) driving Debian's Chromium against the running local stack.

One stack (`inktex up --detach` on free ports, the tiny test model carrying the release's
metrics, so the Model page has its table) and one browser serve the
whole session; each test gets a fresh browser context (so it starts signed out). API calls
are never intercepted. Screenshots go to build/e2e/ (or $INKTEX_E2E_ARTIFACTS) as artifacts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import CHROMIUM, CHROMIUM_ARGS, WEB, LocalStack, model_with_release_metrics, open_app
from testkit import free_port, require


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    require(
        (WEB / "vendor" / "katex" / "katex.mjs").is_file(),
        "web/vendor/ is missing: run `make install` (npm ci in web/ copies KaTeX there)",
    )
    try:
        import local_stack.stack  # noqa: F401  (the [local] extra's imports)
    except ImportError as exc:
        require(False, f"the local stack cannot be imported ({exc}): pip install -e '.[local]'")
    from inktex import cli

    state = tmp_path_factory.mktemp("e2e-stack")
    ports = ["--aws-port", str(free_port()), "--api-port", str(free_port())]
    where = ["--state-dir", str(state)]
    model = model_with_release_metrics(tmp_path_factory.mktemp("e2e-model"))
    code = cli.main(["up", "--detach", *ports, "--model", str(model), *where])
    assert code == 0, f"inktex up failed; see {state}/stack.log"
    info = json.loads((state / "stack.json").read_text())
    assert Path(info["web_root"]) == WEB, f"the stack serves {info['web_root']}, not web/"
    yield LocalStack(info["api_url"], state, info)
    cli.main(["down", *where])


@pytest.fixture(scope="session")
def browser():
    require(
        shutil.which(CHROMIUM) is not None, f"no Chromium at {CHROMIUM}: apt-get install chromium"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed: pip install playwright==1.65.2")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack):
    """The app on a desktop-sized page; after the test, no CSP violation and no page error."""
    page = open_app(browser, stack)
    yield page
    if not page.is_closed():
        assert page.evaluate("window.__cspViolations") == []
        assert page.evaluate("window.__pageErrors") == []
    page.context.close()
