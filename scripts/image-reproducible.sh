#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make image-reproducible`: builds the image twice from one commit and one package set and
# compares them byte for byte. The first build is `make image` as it is (taking Debian's current
# packages into $FACEGATE_ASSETS/image-packages if no set is kept yet); the second starts again from
# nothing but that package set and FaceGate's packages: both root file system layers are made anew.
# As root; about 20 minutes per build of the Debian base (under qemu-user). When the images differ,
# it says which files of the trees do (both kept as <target>/image/{base,rootfs}.first).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=$TARGET_DIR/image
START=$SECONDS

say() { echo "image-reproducible: $*"; }
fail() { echo "image-reproducible: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/image-reproducible.sh line $LINENO: $BASH_COMMAND"' ERR
[ "$(id -u)" -eq 0 ] || fail "the image is built as root"

bash "$REPO/scripts/make-image.sh"
first=$(cat "$OUT/facegate-pi4.img.sha256")
first_packages=$(cat "$OUT/facegate-pi4.packages")

# The second build: both layers again, from the kept package set alone.
rm -rf "$OUT/base.first" "$OUT/rootfs.first"
mv "$OUT/base" "$OUT/base.first"
mv "$OUT/rootfs" "$OUT/rootfs.first"
rm -f "$OUT/base.stamp" "$OUT/rootfs.stamp"
began=$SECONDS
bash "$REPO/scripts/make-image.sh"
second=$(cat "$OUT/facegate-pi4.img.sha256")
if [ "$first_packages" != "$(cat "$OUT/facegate-pi4.packages")" ]; then
    diff <(echo "$first_packages") "$OUT/facegate-pi4.packages" | grep '^[<>]' | head -n 10 >&2 || true
    fail "the two builds installed different packages (first <, second >)"
fi

if [ "$first" = "$second" ]; then
    rm -rf "$OUT/base.first" "$OUT/rootfs.first"
    say "the same image twice ($(wc -l <"$OUT/facegate-pi4.packages") packages; second build from the package set in $((SECONDS - began)) s):"
    sed 's/^/    /' "$OUT/facegate-pi4.img.sha256"
    say "done in $((SECONDS - START)) s"
    exit 0
fi
echo "$first" | sed 's/^/    first:  /' >&2
echo "$second" | sed 's/^/    second: /' >&2
# --no-dereference: the trees' symbolic links are compared as links, not followed out of the tree.
diff -rq --no-dereference "$OUT/rootfs.first" "$OUT/rootfs" 2>&1 | head -n 40 >&2 || true
fail "the two builds differ (trees kept: $OUT/rootfs.first and $OUT/rootfs; files that differ above)"
