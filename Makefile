# One way to run things: these targets are the interface (CI calls `make test`, like a person).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
MODEL := .tierline/models/intent/meta.json
SCENARIOS ?= $(if $(wildcard ../shared/data/scenarios/public.jsonl),../shared/data/scenarios/public.jsonl,data/scenarios/public.jsonl)

.PHONY: install model browser promtool test test-unit test-integration run up demo eval bench status down lint asyncapi openapi clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e ".[tooling,dev]"
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

model: install $(MODEL)

$(MODEL):
	$(BIN)/tierline train-intents

# Debian's Chromium for the browser tests (Playwright drives it; nothing downloads a browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

# promtool (checks deploy/prometheus/ in the tests) from Debian's prometheus package, without root:
# `apt-get download` fetches the .deb into a temp dir, `dpkg -x` unpacks it, only promtool is kept.
PROMTOOL := .tierline/tools/promtool
promtool: $(PROMTOOL)

$(PROMTOOL):
	@mkdir -p $(dir $(PROMTOOL))
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && { apt-get download -q prometheus >/dev/null 2>&1 || \
	    { [ "$$(id -u)" = "0" ] && apt-get update -qq && apt-get download -q prometheus >/dev/null; }; } && \
	    dpkg -x prometheus_*.deb x) && \
	  cp "$$tmp/x/usr/bin/promtool" $(PROMTOOL).tmp && mv $(PROMTOOL).tmp $(PROMTOOL)
	@$(PROMTOOL) --version 2>&1 | head -1

# Lint and types first (CI enforces them), then the whole suite; the slowest tests are listed at the end.
test: install model browser promtool lint
	$(BIN)/pytest -q --durations=15

test-unit: install promtool
	$(BIN)/pytest -q -m unit

test-integration: install model
	$(BIN)/pytest -q -m "integration or browser"

# The README's run command: start the embedded stack and every service.
run up: install model
	$(BIN)/tierline up

status:
	$(BIN)/tierline status

down:
	$(BIN)/tierline down

demo: install model
	$(BIN)/tierline demo

eval: install model
	$(BIN)/tierline eval $(SCENARIOS) --out eval-results.jsonl

bench: install model
	$(BIN)/tierline bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tierline tierline_tools schemas services bench
	$(BIN)/mypy --strict schemas tierline/billing

asyncapi: install
	$(BIN)/tierline asyncapi --out asyncapi.json

openapi: install
	$(BIN)/python -m tierline.openapi --out openapi

clean: down
	rm -rf .tierline test-output
