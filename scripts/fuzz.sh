#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# The cargo-fuzz targets, each for a bounded time, one after the other (`make fuzz-smoke` gives
# each 60 s and `make test` runs it; `make fuzz` gives each FUZZ_SECONDS, an hour by default).
#
#   scripts/fuzz.sh SECONDS [TARGET...]      targets: gallery_open config_parse (default: both)
#
#   gallery_open   plugins/vision/fuzz      a gallery generation's manifest, identities sidecar,
#                                           FAISS index or rescoring stage replaced by the input
#                                           (checksums rewritten to match), then open and search
#   config_parse   appliance/facegated/fuzz facegated's TOML file and FACEGATE_ overrides
#
# Both fuzz crates build into one target directory ($FACEGATE_FUZZ_DIR, default target/fuzz), so
# FAISS is compiled once for both. The corpus each run grows is kept there (corpus/TARGET) for the
# next run; the seeds are made afresh each time: real gallery generations written by the
# gallery's own code, and the repository's configuration files. A crash, panic, timeout (10 s
# an input) or an allocation past 2 GB ends it non-zero, with the input saved under
# <fuzz crate>/artifacts/TARGET/ and the command that replays it printed.
#
# cargo-fuzz passes -Z flags that only a nightly compiler takes; RUSTC_BOOTSTRAP=1 lets the
# stable one take them, so no second toolchain is needed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"   # .cargo/config.toml's build environment applies from here
FUZZ_DIR=$(realpath -m "${FACEGATE_FUZZ_DIR:-$REPO/target/fuzz}")
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

say() { echo "fuzz: $*"; }
fail() { echo "fuzz: error: $*" >&2; exit 1; }

[ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ] ||
    fail "usage: scripts/fuzz.sh SECONDS [gallery_open|config_parse]..."
SECONDS_EACH=$1
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gallery_open config_parse)

cargo fuzz --version >/dev/null 2>&1 || fail "cargo-fuzz is not installed: run \`make setup\`"
export RUSTC_BOOTSTRAP=1

crate_of() {
    case $1 in
        gallery_open) echo "$REPO/plugins/vision/fuzz" ;;
        config_parse) echo "$REPO/appliance/facegated/fuzz" ;;
        *) fail "no fuzz target $1 (gallery_open, config_parse)" ;;
    esac
}

# FACEGATE_FUZZ_PROFILE=dev builds without optimisation and without debug information (FAISS's
# C++ too: cc adds -g only when cargo asks for it): a fraction of the build time for fewer
# executions a second, which suits the short smoke run in `make test`. A crash it finds is named
# by function; `make fuzz` (release, with line tables) replays it with lines. Long runs use release.
case ${FACEGATE_FUZZ_PROFILE:-release} in
    release) PROFILE_ARGS=(); PROFILE_DIR=release ;;
    dev) PROFILE_ARGS=(--dev); PROFILE_DIR=debug; export CARGO_PROFILE_DEV_DEBUG=0 ;;
    *) fail "FACEGATE_FUZZ_PROFILE must be release or dev (got ${FACEGATE_FUZZ_PROFILE})" ;;
esac

cargo_fuzz() {
    local command=$1 crate=$2
    shift 2
    nice -n 10 cargo fuzz "$command" "${PROFILE_ARGS[@]}" --fuzz-dir "$crate" --target-dir "$FUZZ_DIR/build" "$@"
}

# Seed inputs for config_parse: each configuration file as it is, then with an override of a
# key of every section after the NUL that starts the environment part.
config_seeds() {
    local seeds=$1 file name
    for file in "$REPO"/config/*.toml; do
        name=$(basename "$file" .toml)
        cp "$file" "$seeds/$name"
        {
            cat "$file"
            printf '\0'
            printf '%s\n' \
                FACEGATE_PIPELINE__EXIT_ON_EOS=false \
                FACEGATE_PIPELINE__VARIABLES__VIDEO=/tmp/clip.avi \
                FACEGATE_MODELS__DIR=/tmp/models \
                FACEGATE_GALLERY__DIR=/tmp/gallery \
                FACEGATE_POLICY__THRESHOLD=0.5 \
                FACEGATE_POLICY__DISABLED='["p-1", "p-2"]' \
                FACEGATE_GATE__PULSE_MS=900 \
                FACEGATE_GATE__PINS__RELAY=5 \
                FACEGATE_JOURNAL__RETENTION_DAYS=30 \
                FACEGATE_DBUS__BUS=session
        } >"$seeds/$name-with-environment"
    done
}

seed() {
    local target=$1 crate=$2 seeds=$3
    rm -rf "$seeds"
    mkdir -p "$seeds"
    case $target in
        gallery_open)
            cargo_fuzz build "$crate" gallery_open_seeds
            "$FUZZ_DIR/build/$TRIPLE/$PROFILE_DIR/gallery_open_seeds" "$seeds"
            ;;
        config_parse) config_seeds "$seeds" ;;
    esac
}

for target in "${TARGETS[@]}"; do
    crate=$(crate_of "$target")
    corpus=$FUZZ_DIR/corpus/$target
    seeds=$FUZZ_DIR/seeds/$target
    log=$FUZZ_DIR/$target.log
    mkdir -p "$corpus"
    seed "$target" "$crate" "$seeds"
    say "$target: $SECONDS_EACH s from $(ls "$seeds" | wc -l) seeds and $(ls "$corpus" | wc -l) corpus inputs (log: $log)"
    started=$SECONDS
    status=0
    cargo_fuzz run "$crate" "$target" "$corpus" "$seeds" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$log" | tail -n1)
    if [ $status -ne 0 ] || [ -z "$runs" ]; then
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|Failing input|.*cargo fuzz run)' "$log" >&2 || tail -n 20 "$log" >&2
        fail "$target failed after $((SECONDS - started)) s (exit $status); full log: $log"
    fi
    say "$target: no crash: $runs runs in $((SECONDS - started)) s, corpus $(ls "$corpus" | wc -l) inputs ($(du -sk "$corpus" | cut -f1) KiB)"
done
