#!/usr/bin/env bash
# The SAM checks CI runs: `sam validate --lint`, `sam build` (zip, no Docker), then, for every
# built function: its size (under Lambda's 250 MB unzipped limit), no torch, and wheels whose
# manylinux glibc the function's runtime provides. The functions that run no model (the
# feedback trigger, the metrics function) must ship without onnxruntime, numpy and pillow, and
# stay under LIGHT_LIMIT_BYTES (issue 19).
#
# The SAM CLI lives in its own virtual environment (.venv-sam): it pins click, which dvc
# upgrades, so it cannot share .venv.
#   infra/sam_checks.sh                  # all checks; a wheel too new for the runtime fails
#   STRICT_GLIBC=0 infra/sam_checks.sh   # only warn about such wheels
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_VERSION=1.170.0
LIMIT_BYTES=$((250 * 1024 * 1024))
LIGHT_LIMIT_BYTES=$((10 * 1024 * 1024))
export SAM_CLI_TELEMETRY=0

if ! .venv-sam/bin/sam --version 2>/dev/null | grep -q "$SAM_VERSION"; then
  python3 -m venv .venv-sam
  .venv-sam/bin/pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"
fi
SAM=.venv-sam/bin/sam

echo "== sam validate --lint"
$SAM validate --lint

echo "== sam build"
rm -rf .aws-sam/build
$SAM build --build-in-source 2>&1 | grep -v "^WARNING: Location" || { echo "sam build failed"; exit 1; }

echo "== built functions"
python3 - "$LIMIT_BYTES" "${STRICT_GLIBC:-1}" "$LIGHT_LIMIT_BYTES" <<'PY'
import re
import sys
from pathlib import Path

import yaml  # noqa: F401  (only to fail early if the system python lacks it)

limit, strict, light_limit = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
# Functions that never run a model: no model runtime in their package, and a small one.
LIGHT = {"FeedbackTriggerFunction", "MetricsFunction"}
MODEL_RUNTIME = ("onnxruntime", "numpy", "PIL", "pillow")
# The C library of each Lambda Python runtime's OS (Amazon Linux 2 / 2023).
RUNTIME_GLIBC = {"python3.11": (2, 26), "python3.12": (2, 34), "python3.13": (2, 34)}

built = Path(".aws-sam/build")
template = (built / "template.yaml").read_text()
runtime = re.search(r"Runtime:\s*(python3\.\d+)", template).group(1)
glibc = RUNTIME_GLIBC[runtime]
failed = False
functions = sorted(p for p in built.iterdir() if p.is_dir())
if not functions:
    sys.exit("no built functions under .aws-sam/build")
unbuilt = sorted(LIGHT - {fn.name for fn in functions})
if unbuilt:  # a renamed function would otherwise escape its check
    sys.exit(f"no build of {', '.join(unbuilt)}: update LIGHT in infra/sam_checks.sh")
for fn in functions:
    files = [p for p in fn.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    torch = sorted({p.relative_to(fn).parts[0] for p in files if re.match(r"torch", p.relative_to(fn).parts[0])})
    too_new = []
    for wheel in fn.glob("*.dist-info/WHEEL"):
        tags = [tuple(map(int, t)) for t in re.findall(r"manylinux_(\d+)_(\d+)", wheel.read_text())]
        if tags and min(tags) > glibc:
            too_new.append(f"{wheel.parent.name} (glibc {'.'.join(map(str, min(tags)))})")
    status = "ok"
    if size >= limit:
        status, failed = f"TOO LARGE (limit {limit / 2**20:.0f} MB)", True
    if fn.name in LIGHT:
        tops = {p.relative_to(fn).parts[0] for p in files}
        runtime_dirs = sorted(t for t in tops if t.split("-")[0].split(".")[0] in MODEL_RUNTIME)
        if runtime_dirs:
            status, failed = f"SHIPS A MODEL RUNTIME: {runtime_dirs}", True
        elif size >= light_limit:
            status, failed = f"TOO LARGE for a function without a model ({light_limit / 2**20:.0f} MB)", True
    if torch:
        status, failed = f"HOLDS TORCH: {torch}", True
    print(f"{fn.name:32s} {size / 2**20:7.1f} MB unzipped  {len(files):5d} files  {status}")
    if too_new:
        level = "ERROR" if strict else "WARNING"
        failed = failed or strict
        print(f"  {level}: {runtime} runs on glibc {glibc[0]}.{glibc[1]}, but these wheels need more:")
        for line in too_new:
            print(f"    {line}")
sys.exit(1 if failed else 0)
PY
echo "sam checks passed"
