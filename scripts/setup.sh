#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# FaceGate set-up: the one entry point (`make setup` runs it).  Idempotent: run it as root on a
# fresh Debian 12, and again whenever you like; a second run changes nothing and takes a second or two.
#
#   1. Debian packages the build and tests need, installed only if missing (apt-get update only then);
#   2. the Rust toolchain must already be there (cargo on PATH); cargo-fuzz, at a pinned version,
#      is installed with it if missing (`make fuzz-smoke`, part of `make test`);
#   3. scripts/fetch-assets.py: ONNX Runtime, models, photos, derived models, test videos
#      (into $FACEGATE_ASSETS or <repo>/.assets, downloads cached in $FACEGATE_CACHE or ~/.cache/facegate).
#
# Any failure ends it with one line saying what failed, and a non-zero exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$SECONDS

say() { echo "setup: $*"; }
fail() { echo "setup: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/setup.sh line $LINENO: $BASH_COMMAND"' ERR

PKGS=(
    make pkg-config g++ cmake
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    libopenblas-dev liblapack-dev libgomp1
    # fgoverlay's captions: Pango and cairo to build against; fonts for fontconfig to fall back
    # on: DejaVu Sans (Latin, Greek, Cyrillic, Arabic, Hebrew, Armenian, Georgian; 1 MB) and
    # WenQuanYi Micro Hei (Chinese, Japanese kana and kanji, Hangul; 1.6 MB, where Noto CJK is 56 MB).
    # Devanagari, Thai and other Indic and South-East Asian scripts would need fonts-noto-core (12 MB).
    libpango1.0-dev libcairo2-dev fonts-dejavu-core fonts-wqy-microhei
    dbus-daemon
    # fgqr's default QR decoder (passenger tokens): ZBar, linked dynamically.
    libzbar-dev
    systemd libglib2.0-bin util-linux
    # The fleet's servers, which its tests start on loopback (docs/FLEET.md): the broker, and the
    # back office's ledger database.
    nats-server postgresql
)

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

# python3 must be >= 3.11 (tomllib), able to make venvs (for the model tools) and to run pip (downloads).
python_ok() { python3 -c 'import sys, tomllib; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
pip_ok() { python3 -m pip --version >/dev/null 2>&1; }
venv_ok() {
    # Debian ships ensurepip (and the pip wheel it installs) in python3-venv; without them
    # `python3 -m venv` fails. Cheaper than making a throw-away venv.
    python3 -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- 1. Debian packages
command -v dpkg-query >/dev/null || fail "dpkg-query not found: this script expects Debian 12 (bookworm)"
missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done
if command -v python3 >/dev/null; then
    venv_ok || missing+=(python3-venv)
    pip_ok || missing+=(python3-pip)
else
    missing+=(python3 python3-venv python3-pip)
fi

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "not root and no sudo: cannot install ${missing[*]}"
        SUDO=(sudo)
    fi
    log=$(mktemp)
    say "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update >"$log" 2>&1 ||
        fail "apt-get update failed: $(grep -m1 -E '^(E|Err):' "$log" || tail -n1 "$log")"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$log" 2>&1 ||
        fail "apt-get install ${missing[*]} failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    rm -f "$log"
    for p in "${missing[@]}"; do
        installed "$p" || fail "package $p is still not installed after apt-get install"
    done
else
    say "Debian packages: all ${#PKGS[@]} present"
fi
python_ok || fail "python3 ($(command -v python3)) is older than 3.11 (needs tomllib)"
pip_ok || fail "python3 -m pip does not work with $(command -v python3) (Debian: apt-get install python3-pip)"
venv_ok || fail "python3 -m venv does not work with $(command -v python3) (Debian: apt-get install python3-venv)"

# ---------------------------------------------------------------------------- 2. Rust toolchain
if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        fail "cargo is in ~/.cargo/bin but not on PATH: run 'source ~/.cargo/env' (or add ~/.cargo/bin to PATH) first"
    fi
    fail "cargo not found: install the Rust toolchain (rustup, Rust >= 1.92) first"
fi
rust_version=$(rustc --version 2>/dev/null | awk '{print $2}') || true
[ -n "$rust_version" ] || fail "rustc does not run (cargo is $(command -v cargo))"
if [ "$(printf '%s\n' 1.92.0 "${rust_version%%-*}" | sort -V | head -n1)" != 1.92.0 ]; then
    fail "Rust $rust_version is too old: the workspace needs rust-version 1.92 (rustup update)"
fi
say "Rust $rust_version present"

# cargo-fuzz for the fuzz targets (scripts/fuzz.sh). Pinned, and built from its own lock file, so
# every machine fuzzes with the same tool; the stable compiler suffices (scripts/fuzz.sh).
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install; a few minutes)"
    log=$(mktemp)
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >"$log" 2>&1 ||
        fail "cargo install cargo-fuzz $CARGO_FUZZ_VERSION failed: $(grep -m1 '^error' "$log" || tail -n1 "$log")"
    rm -f "$log"
fi
say "cargo-fuzz $CARGO_FUZZ_VERSION present"

# ---------------------------------------------------------------------------- 3. assets
trap - ERR
python3 "$REPO/scripts/fetch-assets.py" || exit $?   # it prints its own one-line error
say "done in $((SECONDS - START)) s"
