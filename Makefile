# FaceGate: set-up, build, tests, demo.  CI runs `make test` (.ci/run).
#
#   make setup   Debian packages (if missing), Rust check, assets (scripts/setup.sh; idempotent)
#   make build   cargo build --workspace (target/debug/libgstfacegate.so for gst-launch-1.0)
#   make test    setup + build + cargo test --workspace
#   make demo    setup + build + facegatectl demo
#   make lint    cargo fmt --check, cargo clippy -D warnings
#   make bench   setup + facegatectl bench (release build)
#
# Cargo commands get the asset paths below (absolute). facegatectl and the tests link the plugin
# statically; for gst-launch-1.0, export GST_PLUGIN_PATH=<repo>/target/debug after `make build`.  Assets live in $FACEGATE_ASSETS or
# <repo>/.assets; .cargo/config.toml sets the same variables for plain `cargo` in the default place.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.NOTPARALLEL:
.DEFAULT_GOAL := help

REPO       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
ASSETS     := $(abspath $(or $(FACEGATE_ASSETS),$(REPO)/.assets))
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(REPO)/target))
CARGO      ?= cargo

export FACEGATE_ASSETS    := $(ASSETS)
export ORT_DYLIB_PATH     := $(ASSETS)/onnxruntime/libonnxruntime.so.1.32.0
export FACEGATE_MODEL_DIR := $(ASSETS)/models
export FACEGATE_PHOTO_DIR := $(ASSETS)/photos
export FACEGATE_VIDEO_DIR := $(ASSETS)/videos

.PHONY: help setup build test demo lint bench

help:
	@sed -n '3,9s/^# *//p' $(REPO)/Makefile

setup:
	bash $(REPO)/scripts/setup.sh

build:
	cd $(REPO) && $(CARGO) build --workspace

test: setup build
	cd $(REPO) && $(CARGO) test --workspace

demo: setup build
	cd $(REPO) && $(CARGO) run -p facegate-appliance --bin facegatectl -- demo

lint:
	cd $(REPO) && $(CARGO) fmt --all --check
	cd $(REPO) && $(CARGO) clippy --workspace --all-targets -- -D warnings

bench: setup
	cd $(REPO) && $(CARGO) run --release -p facegate-appliance --bin facegatectl -- bench stages
