"""infra/prometheus: the scrape config and the alert rules, checked and unit-tested by promtool.

promtool comes with Debian's prometheus package (`apt-get install -y prometheus`); CI=true
makes its absence a failure, not a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from testkit import require

PROMETHEUS = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


@pytest.fixture
def promtool(tmp_path) -> tuple[str, Path]:
    """promtool, and a copy of infra/prometheus with a token file beside the config (the
    config names it, and promtool checks that it exists)."""
    tool = shutil.which("promtool")
    require(tool is not None, "promtool is not installed (apt-get install -y prometheus)")
    for path in PROMETHEUS.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "metrics-token").write_text("example-metrics-token\n")
    return tool, tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(promtool, args):
    tool, folder = promtool
    done = subprocess.run(
        [tool, *args], cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_and_a_cloudwatch_alarm():
    import yaml

    from local_stack.template import load_template

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    tested = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert alerts == tested
    template = load_template(PROMETHEUS.parents[1] / "template.yaml")
    descriptions = " ".join(
        str(r["Properties"].get("AlarmDescription", ""))
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )
    assert all(f"Prometheus {a}" in descriptions for a in alerts)
