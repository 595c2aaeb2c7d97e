# Entry points. `make run` starts InkTeX; `make test` installs and runs every test (CI runs it).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install install-serve lock run monitor test lint unit integration e2e overfit \
	pipeline-tiny sam-checks deploy bench verify hp-search release-run gpu-data clean

# torch's CPU build: this machine's disk holds 2.13.0+cpu, which pip takes first. Elsewhere
# PyPI's Linux torch is the CUDA build (5 GB more): TORCH_INDEX=https://download.pytorch.org/whl/cpu
# fetches the CPU one (docs/install.md). Every other version comes from requirements.lock.
TORCH_INDEX ?=
$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c requirements.lock -e '.[serve,train,dev,local]'
	touch $@

install: $(BIN)/.installed web/node_modules/.installed

# Serving only (no torch): what a Lambda or `inktex predict` needs.
SERVE_VENV ?= $(VENV)
install-serve:
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q -c requirements.lock -e '.[serve]'

# requirements.lock pins every extra (resolved by uv for Linux x86_64, Python 3.11); each
# function's requirements.txt is compiled from its requirements.in under the lock, for the
# Lambda runtime's Python. tests/unit/test_lock.py fails when they drift apart.
LAMBDA_PYTHON := 3.12
lock:
	uv pip compile pyproject.toml --extra serve --extra train --extra dev --extra local \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command 'make lock' --quiet -o requirements.lock
	for fn in functions/*/requirements.in; do \
	  uv pip compile $$fn -c requirements.lock --python-version $(LAMBDA_PYTHON) \
	    --python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' \
	    --quiet -o $${fn%.in}.txt || exit 1; \
	done

web/node_modules/.installed: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The whole system on this machine: AWS emulator, API gateway with the web UI, the model.
run: install
	inktex up

# Prometheus (Debian: apt-get install -y prometheus) scraping the running stack's /metrics,
# with infra/prometheus/alerts.yml: http://127.0.0.1:9090 (docs/monitoring.md).
monitor:
	inktex monitor

lint: install
	ruff check .
	ruff format --check .
	mypy  # inktex/ and functions/ ([tool.mypy] in pyproject.toml)
	cd web && npm run --silent lint  # tsc --noEmit over the JSDoc (// @ts-check), eslint
	# configure-aws-credentials has no release on a newer Node yet: its warning is known
	actionlint -ignore 'runtime "node20" is deprecated' .github/workflows/*.yml

# Test tiers, by what a test needs. Each run fails if a process it started outlives it.
unit: install
	pytest -m "not integration and not e2e and not overfit"

# Starts the local stack (moto server, gateway, functions) on free ports.
integration: install
	pytest -m "integration and not e2e"

# Drives Chromium through the web UI on the local stack.
e2e: install
	pytest -m e2e

# Trains tiny models until they read their five training images: minutes on a busy core.
overfit: install
	pytest -m overfit

# The pipeline's stages at tiny size, in a temporary DVC experiment workspace.
pipeline-tiny: install
	dvc exp run --temp -S prepare.limit=12 -S model.width=tiny -S train.preset=tiny \
	  -S train.init= -S '~train.overrides' -S evaluate.limit=6

sam-checks:
	bash infra/sam_checks.sh

# The stack to AWS (samconfig.toml's ENV: dev or prod), then the web UI: config.json from the
# stack's outputs, web/'s page files synced to the web bucket, CloudFront invalidated
# (infra/deploy_web.py; boto3, no AWS CLI). Needs AWS credentials.
ENV ?= dev
SAM := .venv-sam/bin/sam

$(SAM):
	python3 -m venv .venv-sam
	.venv-sam/bin/pip install --quiet --disable-pip-version-check \
	  "aws-sam-cli==$$(sed -n 's/^SAM_VERSION=//p' infra/sam_checks.sh)"

deploy: install $(SAM)
	$(SAM) build --config-env $(ENV)
	$(SAM) deploy --config-env $(ENV)
	python infra/deploy_web.py --config-env $(ENV)

test: lint unit integration e2e overfit pipeline-tiny sam-checks

bench: install
	python -m model_export.bench

verify: install
	python -m model_export.bench --full --gates

# A small hyperparameter search, queued with `dvc exp run --queue`: short fine-tunes of the
# release weights that differ in the peak learning rate, compared by `dvc exp show` on the
# evaluate stage's first 200 CROHME 2013 expressions; CROHME 2014 is not shown, so that it
# selects nothing (results in docs/experiments.md).
HP_MINUTES ?= 3
HP_LRS ?= 0.0003 0.0008 0.002
hp-search: install
	for lr in $(HP_LRS); do \
	  dvc exp run --queue -S train.init=models/release/checkpoint.pt \
	    -S ++train.overrides.lr=$$lr -S ++train.overrides.max_minutes=$(HP_MINUTES) \
	    -S ++train.overrides.amp=true -S ++train.overrides.val_limit=300 \
	    -S evaluate.limit=200 || exit 1; \
	done
	dvc exp run --run-all --jobs 1
	dvc exp show --only-changed --hide-workspace --md \
	  --drop 'metrics/test2014.*|metrics/.*report.*|runs/.*|models/.*|.*:(wer|bleu|count)'

# Ships a training run that `dvc repro` did not start (a background run, resumed across
# sessions, that logged with dvclive): `make release-run RUN=runs/cpu3`. Its best.pt becomes
# the train stage's output, then export, evaluate and release run under DVC; params.yaml must
# say how the run was trained. A lent GPU's run logged JSON lines: dvclive replays them.
release-run: install
	test -f $(RUN)/best.pt -a -f $(RUN)/train_report.json
	test -d $(RUN)/dvclive || python -m training.tracking $(RUN)
	rm -rf runs/train && mkdir -p runs/train
	cp -r $(RUN)/best.pt $(RUN)/train_report.json $(RUN)/dvclive runs/train/
	python -m training.corpus_manifest --out data/corpus.json
	dvc commit --force corpus prepare train
	dvc repro release

# Packs the prepared data for a lent GPU machine (see training/gpu_run.sh), and the wheels
# its image lacks (pure Python, at the lock's versions).
gpu-data:
	python -m training.prepare --out .gpu/prepared
	python3 -m pip download -q --no-deps --only-binary=:all: -d .whl \
	  $$(grep -E '^defusedxml==' requirements.lock)

clean:
	rm -rf $(VENV) .venv-sam web/node_modules .aws-sam
