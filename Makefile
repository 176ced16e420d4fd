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

.PHONY: help setup build test lint demo clean
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP) ## create .venv with torch 2.11 (libtorch), open_clip and friends

$(STAMP): requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

build: setup ## build the release binary (target/release/clip-ast)
	cargo build --release

test: build ## formatting, lints, unit and parity tests against open_clip
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo test --release

demo: build ## zero-shot classification of real photos (see README: what it shows today)
	bash scripts/demo.sh

clean: ## remove build outputs (keeps .venv)
	cargo clean
