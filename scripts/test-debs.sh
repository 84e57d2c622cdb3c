#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# The install test of `make deb` (amd64): a fresh Debian 12 chroot made by mmdebstrap, where apt
# installs the three packages from target/deb (their Depends from Debian), then they are used,
# removed (dpkg -r) and purged (dpkg -P), checking what each step must leave. As root.
#
# What is checked inside (scripts/test-debs-inside.sh): the binaries start; the account, groups
# and state directory exist; the unit is enabled; the conffile is one; the models' sums hold; the
# plugin loads in gst-inspect-1.0; facegatectl enrols and identifies a photo with nothing but
# the packages (their models, their ONNX Runtime, no environment); dpkg -r keeps the edited
# conffile and the state; dpkg -P removes the conffile and the unit's enablement and keeps the
# journal and gallery; no other file of the packages is left.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASSETS=${FACEGATE_ASSETS:-$REPO/.assets}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
START=$SECONDS
source "$REPO/scripts/debian.sh"

say() { echo "deb-test: $*"; }
fail() { echo "deb-test: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "the chroot needs root"
ensure_debian_packages mmdebstrap
version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["workspace"]["package"]["version"])' "$REPO/Cargo.toml")
debs=()
for pkg in facegate_${version}_amd64 facegate-models_${version}_all gstreamer1.0-facegate_${version}_amd64; do
    [ -f "$TARGET_DIR/deb/$pkg.deb" ] || fail "$TARGET_DIR/deb/$pkg.deb is missing: run \`make deb\`"
    debs+=("$TARGET_DIR/deb/$pkg.deb")
done
photo=$ASSETS/photos/biden.jpg
[ -f "$photo" ] || fail "$photo is missing: run \`make setup\`"

chroot_dir=$(mktemp -d /var/tmp/facegate-deb-test.XXXXXX)
trap 'rm -rf --one-file-system "$chroot_dir"' EXIT
log=$TARGET_DIR/deb/install-test.log
say "a Debian 12 chroot, the packages installed, used, removed and purged (log: $log)"
# mmdebstrap mounts /proc, /sys and /dev for the hooks and unmounts them after.
if ! mmdebstrap --variant=apt --include=gstreamer1.0-tools \
    --customize-hook="mkdir \"\$1/tmp/facegate\"" \
    --customize-hook="copy-in ${debs[*]} $photo $REPO/scripts/test-debs-inside.sh /tmp/facegate" \
    --customize-hook='chroot "$1" sh /tmp/facegate/test-debs-inside.sh' \
    bookworm "$chroot_dir" "${DEBIAN_SOURCES[@]}" >"$log" 2>&1; then
    grep -E '^deb-test' "$log" | tail -n 5 >&2 || true
    fail "the install test failed: $(grep -m1 -E '^deb-test: FAILED|^E:' "$log" || tail -n1 "$log")"
fi
grep -E '^deb-test' "$log"
say "passed in $((SECONDS - START)) s"
