# Two commands do all set-up: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.structvpr-installed
LINT_STAMP := $(VENV)/.structvpr-lint-installed

.PHONY: demo test test-fast lint bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[lint]"
	touch $(LINT_STAMP)

demo: $(STAMP)
	$(VENV)/bin/structvpr demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# ruff (lint + format check, config in pyproject.toml) and mypy on the package.
lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
