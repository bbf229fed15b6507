# Every target bootstraps .venv from the project's own files when missing; a stamp,
# keyed on those files, keeps the second run quick.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

.PHONY: demo test test-fast bench synth live-aws lint format clean live-servicenow

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(STAMP)
	$(BIN)/jwtkeys demo --out demo-out

test: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest

# The edit loop: unit tests only (no local AWS endpoint, no emulator, no CDK synth,
# no subprocess); about 10 s here. `make test` stays the full suite.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q -m "not slow"

# Against a real instance (never part of `make test`; its code runs there against the
# emulator): set JWTKEYS_LIVE_INSTANCE, _USER, _PASSWORD, _CLIENT_ID, _CLIENT_SECRET and
# _CANARY (see docs/servicenow.md). Writes servicenow-profile.json.
live-servicenow: $(STAMP)
	$(BIN)/python -m jwtkeys_tools.live_servicenow

bench: $(STAMP)
	$(BIN)/python -m jwtkeys_tools.bench

synth: $(STAMP) $(NPM_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk synth --quiet --output cdk.out

# A throw-away copy of a stage deployed on a sandbox account, exercised and removed
# (docs/deploy.md, "The live smoke suite"); never part of `make test`, whose dry run
# covers the same code against the local endpoint.
#   make live-aws STAGE=dev [SUFFIX=abc123] [DRY_RUN=1]   (or $$JWTKEYS_LIVE_STAGE/_SUFFIX)
live-aws: $(STAMP) $(NPM_STAMP)
	$(BIN)/python -m jwtkeys_tools.live.aws $(if $(STAGE),--stage $(STAGE)) \
		$(if $(SUFFIX),--suffix $(SUFFIX)) $(if $(DRY_RUN),--dry-run)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/core/jwtkeys tools/jwtkeys_tools functions tests infra app.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) node_modules cdk.out build demo-out bench/results.json
