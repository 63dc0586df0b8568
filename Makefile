# One entry point for a fresh machine: `make reproduce` (all papers, profile mini) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= mini
CORES ?= 2
# greedy: the default ILP scheduler costs ~10 s per small DAG between jobs
SMK = $(BIN)/snakemake --cores $(CORES) --scheduler greedy
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: setup reproduce smoke test test-unit ui report snapshot clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned resolve would pull the CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/.installed

reproduce: setup
	$(SMK) --config profile=$(PROFILE)

smoke: setup
	$(SMK) --config profile=smoke

test: setup
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q -m "not e2e"

report: setup
	$(SMK) --config profile=$(PROFILE) --report reports/$(PROFILE)/snakemake-report.zip

snapshot: setup
	$(SMK) snapshot --config profile=$(PROFILE)

ui: setup
	$(BIN)/python -m repro.core.tracking flush
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf results reports logs mlflow.db mlartifacts .snakemake .repro
