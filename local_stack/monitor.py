"""`inktex monitor` / `make monitor`: Debian's Prometheus scraping the local stack.

The config is infra/prometheus/prometheus.yml with what differs locally filled in: the
stack's API address as the target, its metrics token file (the local stack generates the
template's `MetricsTokenSecret` into its state folder) as the credentials file, and the
alert rules by absolute path. Prometheus listens on 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from inktex.errors import InkTeXError

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "infra" / "prometheus"


class MonitorError(InkTeXError):
    """Prometheus cannot be started as asked; the message says what to do."""


def render_config(info: dict, out_dir: Path, scrape_interval: str | None = None) -> Path:
    """Write prometheus.yml for the running stack `info` (stack.json) into out_dir."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    api = urlsplit(info["api_url"])
    token_file = Path(info["metrics"]["token_file"])
    if not token_file.is_file():
        raise MonitorError(f"no metrics token at {token_file}: is the stack up (`inktex up`)?")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config.get("rule_files", [])]
    if scrape_interval:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        if job["job_name"] == "inktex":
            job["scheme"] = api.scheme
            job["authorization"]["credentials_file"] = str(token_file)
            job["static_configs"][0]["targets"] = [api.netloc]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_command(config: Path, data_dir: Path, port: int, host: str = "127.0.0.1"):
    binary = shutil.which("prometheus")
    if binary is None:
        raise MonitorError("prometheus is not installed: apt-get install -y prometheus")
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--web.console.templates=/usr/share/prometheus/consoles",
        "--web.console.libraries=/usr/share/prometheus/console_libraries",
    ]


def start(
    info: dict, work_dir: Path, port: int, scrape_interval: str | None = None, log=None
) -> subprocess.Popen:
    """Start Prometheus for the stack in the background and wait until it is ready."""
    config = render_config(info, work_dir, scrape_interval)
    command = prometheus_command(config, work_dir / "data", port)
    process = subprocess.Popen(command, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/-/ready"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MonitorError(f"prometheus exited with {process.returncode}: see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    process.terminate()
    raise MonitorError(f"prometheus did not become ready on port {port} within 20 s")
