# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint clean

# The last pip line installs the `vintner` command (docs/cli.md) in editable mode, so it runs this
# checkout's vintner_cli/. It needs no network: torch's requirements bring setuptools >= 77, which
# builds editable installs without `wheel`.
$(VENV)/.runtime: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Vintner needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Browser libraries come from the npm registry at build time and are served by Vintner itself.
VENDOR := static/vendor
$(VENDOR)/.installed: frontend/package.json frontend/package-lock.json
	npm ci --prefix frontend --no-audit --no-fund --silent
	mkdir -p $(VENDOR)
	cp frontend/node_modules/uplot/dist/uPlot.iife.min.js frontend/node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	cp frontend/node_modules/tus-js-client/dist/tus.min.js frontend/node_modules/tus-js-client/dist/tus.min.js.map $(VENDOR)/
	cp frontend/node_modules/hash-wasm/dist/sha256.umd.min.js $(VENDOR)/hash-wasm-sha256.umd.min.js
	cp frontend/node_modules/@dagrejs/dagre/dist/dagre.min.js frontend/node_modules/@dagrejs/dagre/dist/dagre.min.js.map $(VENDOR)/
	touch $@

run: $(VENV)/.runtime $(VENDOR)/.installed
	scripts/ensure-system-packages
	$(PY) manage.py up

# Two test processes (pytest-xdist), each with its own Redis, data folder, database and workers: most
# of a test's time is spent waiting on jobs, servers and the browser, so two share the cores well.
# A test file stays in one process, so its module-scoped worker is started once.
TEST_PROCESSES ?= 2
test: $(VENV)/.dev $(VENDOR)/.installed
	scripts/ensure-system-packages chromium postgresql
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(VENDOR) frontend/node_modules .pytest_cache
