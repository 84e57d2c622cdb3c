# SPDX-License-Identifier: MIT OR Apache-2.0
# FaceGate: set-up, build, tests, demo.  CI runs `make test` (.ci/run).
#
#   make setup   Debian packages (if missing), Rust check, assets (scripts/setup.sh; idempotent)
#   make build   cargo build --workspace (target/debug/libgstfacegate.so for gst-launch-1.0)
#   make arm64   the workspace cross-built for the Raspberry Pi 4 (aarch64, release; scripts/cross-arm64.sh)
#   make deb     the Debian packages for ARCH (amd64 or arm64) into target/deb, lintian, then an install test in a chroot
#   make image   a Raspberry Pi 4 disk image from Debian's packages and the arm64 ones (target/image; about 40 min cold)
#   make image-test  make image, then boot its test variant three times under qemu-system-aarch64 (the third from slot B, after installing an update) and check the gate (scripts/image-test.sh)
#   make image-reproducible  make image twice from one package set, both root layers anew, and compare byte for byte
#   make bundle  make image, then its root file system as a signed RAUC update bundle (scripts/make-bundle.sh)
#   make test    setup + build + cargo test --workspace + fuzz-smoke
#   make fuzz-smoke  each fuzz target for FUZZ_SMOKE_SECONDS (60), failing on any crash (scripts/fuzz.sh)
#   make fuzz    each fuzz target for FUZZ_SECONDS (3600), the corpus kept in target/fuzz
#   make soak    facegated's file pipeline rebuilt SOAK_REBUILDS times, RSS per rebuild -> CSV (scripts/soak-rebuilds.py)
#   make demo    setup + build + facegatectl demo
#   make lint    cargo fmt --check, cargo clippy -D warnings
#   make bench   setup + the benchmarks (release build; about 25 min) + plots -> docs/BENCHMARKS.md's numbers
#   make plots   the PNG plots in docs/ from the benchmarks' JSON in docs/bench/
#   make models-noncommercial  setup + the opt-in models whose licence forbids a fare-charging gate
#   make accuracy  the open-set evaluations and fusion measurement of docs/ACCURACY.md (fetches the non-commercial model too)
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
export FACEGATE_CORPUS_DIR := $(ASSETS)/corpus
export FACEGATE_CALIBRATION_DIR := $(REPO)/models/calibration

# .cargo/config.toml builds FAISS for x86-64-v3 (AVX2); an older x86-64 CPU gets the generic build
# (slower gallery search) instead of binaries that die of an illegal instruction.
ifeq ($(shell uname -m),x86_64)
ifeq ($(shell grep -qw avx2 /proc/cpuinfo && echo yes),)
export CXXFLAGS_x86_64_unknown_linux_gnu := -ffile-prefix-map=$(HOME)/.cargo/registry/src=/cargo/registry/src
endif
endif

.PHONY: help setup build arm64 deb image image-test image-reproducible bundle test fuzz-smoke fuzz soak demo lint bench plots models-noncommercial accuracy

help:
	@sed -n '3,21s/^# *//p' $(REPO)/Makefile

setup:
	bash $(REPO)/scripts/setup.sh

build:
	cd $(REPO) && $(CARGO) build --workspace

# Not part of `make test`: it needs rustup to fetch Rust's aarch64 standard library, which is not
# a package registry's (docs/APPLIANCE.md).
arm64:
	bash $(REPO)/scripts/cross-arm64.sh

# The install test runs amd64 packages in an amd64 chroot; arm64 ones would need binfmt_misc.
ARCH ?= amd64
deb: setup
	bash $(REPO)/scripts/make-debs.sh $(ARCH)
	if [ "$(ARCH)" = amd64 ]; then bash $(REPO)/scripts/test-debs.sh; fi

image: setup
	bash $(REPO)/scripts/make-image.sh

# Not part of `make test`: the image takes about 40 minutes cold, and the two boots under TCG about 2 more.
image-test: setup
	bash $(REPO)/scripts/image-test.sh

# Not part of `make test` either: two builds of the Debian base under qemu-user, about 20 minutes each.
image-reproducible: setup
	bash $(REPO)/scripts/image-reproducible.sh

bundle: setup
	bash $(REPO)/scripts/make-bundle.sh

# Evaluation only: never installed on a gate, never the default (docs/MODELS.md).
models-noncommercial: setup
	python3 $(REPO)/scripts/fetch-assets.py --non-commercial

# docs/ACCURACY.md's evaluations: each embedder's report, DET plot and shipped calibration.
CTL := cd $(REPO) && $(CARGO) run --quiet -p facegatectl --
CORPUS_NAME := FaceGate development corpus (models/corpus.toml)
accuracy: models-noncommercial
	$(CTL) evaluate --corpus $(FACEGATE_CORPUS_DIR) --plot docs/det-sface.png \
	    --write-calibration models/calibration/facegate_sface_2021dec.toml --corpus-name "$(CORPUS_NAME)"
	$(CTL) --embedder-model $(FACEGATE_MODEL_DIR)/w600k_mbf.onnx evaluate --corpus $(FACEGATE_CORPUS_DIR) \
	    --plot docs/det-w600k_mbf.png \
	    --write-calibration models/calibration/w600k_mbf.toml --corpus-name "$(CORPUS_NAME)"
	cd $(REPO) && $(CARGO) run --quiet -p facegate-devtools --bin facegate-dev -- bench fusion

test: setup build
	cd $(REPO) && $(CARGO) test --workspace
	$(MAKE) -C $(REPO) fuzz-smoke

FUZZ_SMOKE_SECONDS ?= 60
FUZZ_SECONDS       ?= 3600
FUZZ_TARGETS       ?= gallery_open config_parse
# The smoke in `make test` fuzzes what parses untrusted files in C++ (FAISS's index reader) and
# leaves config_parse, whose build is facegated's whole tree once more (15 min of CI), to
# `make fuzz` and to `make fuzz-smoke FUZZ_SMOKE_TARGETS="gallery_open config_parse"`.
FUZZ_SMOKE_TARGETS ?= gallery_open
SOAK_REBUILDS      ?= 60

fuzz-smoke: setup
	FACEGATE_FUZZ_DIR=$(TARGET_DIR)/fuzz FACEGATE_FUZZ_PROFILE=dev bash $(REPO)/scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_SMOKE_TARGETS)

fuzz: setup
	FACEGATE_FUZZ_DIR=$(TARGET_DIR)/fuzz bash $(REPO)/scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Not part of `make test`: a few minutes of real-time video (docs/RELIABILITY.md).
soak: setup build
	cd $(REPO) && python3 scripts/soak-rebuilds.py --rebuilds $(SOAK_REBUILDS) --csv $(TARGET_DIR)/soak-rebuilds.csv

demo: setup build
	cd $(REPO) && $(CARGO) run -p facegate-devtools --bin facegate-dev -- demo

lint:
	cd $(REPO) && $(CARGO) fmt --all --check
	cd $(REPO) && $(CARGO) clippy --workspace --all-targets -- -D warnings

DEV_RELEASE := cd $(REPO) && $(CARGO) run --quiet --release -p facegate-devtools --bin facegate-dev --
PLOTS_VENV          := $(ASSETS)/venv-plots

# Each benchmark prints its table and writes docs/bench/<name>.json; `plots` draws from those.
bench: setup
	cd $(REPO) && $(CARGO) build --release -p facegated -p facegatectl -p facegate-devtools
	$(DEV_RELEASE) bench stages
	$(DEV_RELEASE) bench peers
	$(DEV_RELEASE) bench gallery
	$(DEV_RELEASE) bench latency
	# bench qr's peer, Debian's zbar element, is in gst-plugins-bad (only the benchmark needs it).
	dpkg-query -W -f='$${db:Status-Status}' gstreamer1.0-plugins-bad 2>/dev/null | grep -qx installed || \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gstreamer1.0-plugins-bad
	$(DEV_RELEASE) bench qr
	$(MAKE) -C $(REPO) plots

plots:
	test -x $(PLOTS_VENV)/bin/python || python3 -m venv $(PLOTS_VENV)
	$(PLOTS_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(REPO)/scripts/requirements-plots.txt
	cd $(REPO) && $(PLOTS_VENV)/bin/python scripts/plot-benchmarks.py --results docs/bench --out docs
