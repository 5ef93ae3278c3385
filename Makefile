# codeprefs: every target creates what it needs first (the venv from requirements.lock).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.codeprefs-installed

.PHONY: venv quickstart quickstart-data test toolchains device-wheels clean

# Compilers and runtimes that verify synthesized pairs (Debian packages), and the libraries the
# supported data sets' tests import: testify (golang-github-stretchr-testify-dev, used offline by
# `go test` in GOPATH mode, GOPATH=/usr/share/gocode) and lodash (node-lodash, which every MBXP
# JavaScript test requires; the sandbox's NODE_PATH has /usr/share/nodejs, where it lands).
TOOLCHAIN_PACKAGES := gcc g++ default-jdk-headless nodejs node-lodash golang-go \
	golang-github-stretchr-testify-dev ruby mono-mcs mono-runtime python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# --resume: after an interrupted quickstart (Ctrl-C, a killed machine) `make quickstart` finishes
# it; on a fresh or finished output it is an ordinary build. The manifest and output can be
# overridden (the tests point them at their own).
QUICKSTART_MANIFEST ?= manifests/quickstart.yaml
QUICKSTART_OUT      ?= out/quickstart

quickstart: $(STAMP)
	$(BIN)/python pipelines/build_prefs.py --manifest $(QUICKSTART_MANIFEST) --output $(QUICKSTART_OUT) --resume

# Rebuild quickstart/repos/*.bundle from quickstart/histories/ (Python 3.11+ and git only).
quickstart-data:
	$(PYTHON) quickstart/build_repos.py


# Installs only the missing packages; without apt-get it says so and the tests of a language
# whose toolchain is missing are skipped with that reason.
toolchains:
	@if ! command -v apt-get >/dev/null 2>&1; then \
		echo "toolchains: apt-get not found; install these yourself: $(TOOLCHAIN_PACKAGES)"; exit 0; fi; \
	missing=$$(for package in $(TOOLCHAIN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$package 2>/dev/null | grep -q 'install ok installed' \
		|| echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "toolchains: installing" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; fi

test: $(STAMP) toolchains
	$(BIN)/python -m pytest -q

# Wheels the GPU machine's image lacks (Python 3.12 there), for benchmarks/device_trainer.sh.
DEVICE_WHEELS := trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5
device-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $(DEVICE_WHEELS)

clean:
	rm -rf $(VENV) out .pytest_cache
