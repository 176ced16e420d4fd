# clip-ast: every target sets up what it needs (venv with the torch wheel whose libtorch
# we link, Rust build) and is safe to run again.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

# torch-sys finds libtorch through the venv's torch (LIBTORCH_USE_PYTORCH) and runs `python`
# when VIRTUAL_ENV is set, so the venv must be first on PATH.
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export CLIP_AST_PYTHON := $(abspath $(PYTHON))

BIN := target/release/clip-ast
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEJAVU := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup build test lint demo study clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP) ## create .venv with torch 2.11 (libtorch), open_clip and friends

$(STAMP): requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

build: setup ## build the release binary (target/release/clip-ast)
	cargo build --release

test: build $(FASHION_MNIST) $(DEJAVU) slurm ## formatting, lints, unit and parity tests against open_clip
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo test --release


# One process runs the whole graph: two single-threaded stages at a time use two cores better
# than one stage on two threads (mini's products are too small to split).
demo: build $(FASHION_MNIST) $(DEJAVU) ## pretrain a mini CLIP on Fashion-MNIST, then CLIP-AST vs baselines (results/demo/)
	$(BIN) run pipelines/demo.toml --jobs 2 --threads 1

# The demo with 10 seeds and 64 stage-1 steps: intervals narrow enough to decide its claims.
study: build $(FASHION_MNIST) $(DEJAVU) ## the demo with enough seeds to decide each claim (results/demo-study/)
	$(BIN) run pipelines/demo-study.toml --jobs 2 --threads 1

# tests/slurm.rs runs stages as jobs on a local single-node Slurm; the script needs root (it may
# install packages). Elsewhere the tests say why they skip (and fail under CI=true).
.PHONY: slurm
slurm:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/slurm-local.sh start; else echo "slurm: not root, tests/slurm.rs will skip"; fi

$(FASHION_MNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist

$(DEJAVU):
	$(SUDO) apt-get install -y fonts-dejavu-core

# PIPELINE is a pipelines/*.toml; JOBS, STORE and ARGS (say ARGS=--dry-run) are optional.
.PHONY: sweep audit
sweep: build ## run a pipeline: make sweep PIPELINE=pipelines/X.toml [JOBS=2] [ARGS=--dry-run]
	@test -n "$(PIPELINE)" || { echo "error: set PIPELINE, e.g. make sweep PIPELINE=pipelines/caltech101-sweep.toml" >&2; exit 2; }
	$(BIN) run $(PIPELINE) $(if $(JOBS),--jobs $(JOBS)) $(if $(STORE),--store $(STORE)) $(ARGS)

audit: build ## re-hash every artifact in the store against its manifest (STORE=DIR, else ./artifacts)
	$(BIN) audit $(if $(STORE),--store $(STORE))

clean: ## remove build outputs (keeps .venv)
	cargo clean

.PHONY: bench
bench: build ## ours against PyTorch + open_clip: steps, evaluation, a mini sweep (bench/results.csv)
	cargo build --release --examples
	$(PYTHON) bench/run_bench.py
	$(PYTHON) bench/augment_bench.py
	bash bench/embed.sh
