# Two commands a newcomer runs: `make demo` (the embedded ExPO experiment) and `make test`.
# Both create ./.venv and install everything they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; on a GPU machine run `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test demo demo-quick bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,gguf]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest tests

demo: install
	$(VENV)/bin/expo-rl demo

demo-quick: install
	$(VENV)/bin/expo-rl demo --quick

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/peer.py

lint: install
	$(VENV)/bin/ruff check expo_rl tests bench

clean:
	rm -rf $(VENV) .pytest_cache
