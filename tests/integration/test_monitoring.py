"""A real Prometheus (Debian's package) scraping the local stack's GET /metrics.

The stack is started on free ports (conftest.launch_stack), one prediction is made
through the API, and `inktex monitor`'s config (local_stack/monitor.py) is given to
prometheus with a 1 s scrape interval. Through Prometheus's HTTP API: the target is up with
the bearer token, and the predictions counter reads the value the stack produced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from stack_kit import IMAGE, free_port, request, wait_for
from testkit import require

from local_stack import monitor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, _, body = request("GET", url)
    assert status == 200, body
    return json.loads(body)["data"]["result"]


@pytest.fixture(scope="module")
def stack(launch_stack):
    require(shutil.which("prometheus") is not None, "prometheus is not installed (apt-get)")
    return launch_stack()


def test_prometheus_scrapes_the_stack_with_its_token(stack, tmp_path):
    info = stack.info
    token = Path(info["metrics"]["token_file"]).read_text().strip()
    assert request("GET", f"{stack.api}/metrics")[0] == 401  # no token, no metrics
    status, _, body = request(
        "POST", f"{stack.api}/recognize", IMAGE.read_bytes(), {"content-type": "image/png"}
    )
    assert status == 200, body
    version = json.loads(body)["model_version"]

    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = monitor.start(info, tmp_path / "prometheus", port, scrape_interval="1s", log=log)
    try:
        up = wait_for(
            "the inktex target to be up",
            lambda: [r for r in query(port, 'up{job="inktex"}') if r["value"][1] == "1"],
        )
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.api_port}"
        promql = f'sum(inktex_predictions_total{{model_version="{version}",source="api"}})'
        result = wait_for("the predictions counter", lambda: query(port, promql))
        assert float(result[0]["value"][1]) == 1.0
        info_metric = query(port, "inktex_production_model_info")
        assert info_metric[0]["metric"]["version"] == version
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert token  # the stack generated one, and Prometheus sent it (else `up` would be 0)
