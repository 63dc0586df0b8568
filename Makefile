# One entry point for a fresh machine: `make reproduce` (all papers, profile mini) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= mini
CORES ?= 2
# workflow/profiles/default: greedy scheduler (the default ILP one costs ~10 s per small DAG between
# jobs) and --rerun-incomplete (a killed run's leftovers are redone, not a reason to stop)
SMK = $(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: setup reproduce replicate smoke test test-unit ui report snapshot restore verify-results metrics plots clean

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

# the same claims on a disjoint seed set (params/config.yaml replicate_offset; same data and test items)
# into results/<profile>-seeds<offset>/ and reports/<profile>-seeds<offset>/, then both verdicts side by
# side (agreement.md there; its last line: verdict agreement: K of N claims)
REPLICATE_OFFSET = $(shell sed -n 's/^replicate_offset: *\([0-9]*\).*/\1/p' params/config.yaml)
replicate: setup
	$(SMK) --config profile=$(PROFILE)
	$(SMK) --config profile=$(PROFILE) seed_offset=$(REPLICATE_OFFSET)
	$(BIN)/python -m repro.report.compare --replicate $(PROFILE)

smoke: setup
	$(SMK) --config profile=smoke

test: setup
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q -m "not e2e"

report: setup
	$(SMK) --config profile=$(PROFILE) --report reports/$(PROFILE)/snakemake-report.zip

# verify every job folder, dvc add results/<profile>/<paper> + reports/<profile>, push; commit snapshots/
snapshot: setup
	$(SMK) snapshot --config profile=$(PROFILE)

# on a clean checkout (or after `make clean`): dvc pull, verify, mark current for Snakemake
restore: setup
	$(BIN)/python -m repro.core.snapshot restore --profile $(PROFILE)

# every job folder against the sha256 its job recorded (a truncated checkpoint is named)
verify-results: setup
	$(BIN)/python -m repro.core.integrity results/$(PROFILE)

metrics: setup
	$(BIN)/dvc metrics show $$(find results/$(PROFILE) -path '*/analysis/metrics.json' | sort)

plots: setup
	$(BIN)/dvc plots show -o reports/$(PROFILE)/dvc-plots $$(find results/$(PROFILE) -path '*/analysis/*.png' | sort)

# during a run only the UI starts (the workflow's flusher logs the jobs live; `flush` then just waits
# until it has created the store); after one, `flush` logs anything still queued
ui: setup
	$(BIN)/python -m repro.core.tracking flush
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf results reports logs mlflow.db mlartifacts .snakemake .repro
