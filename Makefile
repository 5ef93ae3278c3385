# codeprefs: every target creates what it needs first (the venv from requirements.lock).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.codeprefs-installed

.PHONY: venv quickstart quickstart-data test toolchains clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python pipelines/build_prefs.py --manifest manifests/quickstart.yaml --output out/quickstart

# Rebuild quickstart/repos/*.bundle from quickstart/histories/ (Python 3.11+ and git only).
quickstart-data:
	$(PYTHON) quickstart/build_repos.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
