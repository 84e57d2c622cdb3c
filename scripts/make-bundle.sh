#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make bundle`: the image's root file system as a signed RAUC update bundle,
# <target>/image/facegate-pi4-<version>.raucb, made after `make image` (which it runs; its layers are
# kept). As root. `make-bundle.sh ROOT.ext4 BUNDLE` bundles another root (image-test.sh: its test
# variant's) without making the image. The bundle is RAUC's verity format (the image checked block
# by block as it is installed) with one image, rootfs, for a system whose RAUC says compatible =
# facegate-pi4.
#
# Signed with the update key (scripts/update-key.sh: the fleet's own, or a development key), whose
# certificate make image puts in the image's RAUC keyring. The bundle is then verified against the
# certificate, as a gate would, and refused by another one.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ASSETS=${FACEGATE_ASSETS:-$REPO/.assets}
OUT=$TARGET_DIR/image
START=$SECONDS

say() { echo "bundle: $*"; }
fail() { echo "bundle: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/make-bundle.sh line $LINENO: $BASH_COMMAND"' ERR
[ "$(id -u)" -eq 0 ] || fail "the bundle is made as root (after make image)"

source "$REPO/scripts/debian.sh"
ensure_debian_packages rauc squashfs-tools openssl

if [ $# = 2 ]; then
    root=$1 bundle=$2
else
    bash "$REPO/scripts/make-image.sh"
    root=$OUT/root.ext4 bundle=
fi
[ -f "$root" ] || fail "$root is missing: make image did not leave the root file system"
version=$(workspace_version)

# ---------------------------------------------------------------------------- the signing key
source "$REPO/scripts/update-key.sh"
update_signing_identity
key=$bundle_key cert=$bundle_cert

# ---------------------------------------------------------------------------- the bundle
bundle=${bundle:-$OUT/facegate-pi4-$version.raucb}
content=$bundle.content
rm -rf "$content" "$bundle"
mkdir -p "$content"
cp --sparse=always "$root" "$content/root.ext4"
cat >"$content/manifest.raucm" <<MANIFEST
[update]
compatible=facegate-pi4
version=$version
description=FaceGate $version for the Raspberry Pi 4 (root file system)
build=$(git -C "$REPO" log -1 --format=%H)

[bundle]
format=verity

[image.rootfs]
filename=root.ext4
MANIFEST
rauc bundle --cert="$cert" --key="$key" "$content" "$bundle" >"$OUT/rauc-bundle.log" 2>&1 ||
    fail "rauc bundle failed: $(grep -v '^rauc-Message' "$OUT/rauc-bundle.log" | tail -n1)"
rm -rf "$content"

# ---------------------------------------------------------------------------- checked as a gate would
rauc info --keyring="$cert" "$bundle" >"$OUT/rauc-info.log" 2>&1 ||
    fail "the bundle does not verify against $cert: $(grep -v '^rauc-Message' "$OUT/rauc-info.log" | tail -n1)"
grep -q "Compatible:.*'facegate-pi4'" "$OUT/rauc-info.log" || fail "the bundle does not say compatible=facegate-pi4"
checksum=$(sed -n 's/^[[:space:]]*Checksum:[[:space:]]*//p' "$OUT/rauc-info.log")
[ "$checksum" = "$(sha256sum "$root" | cut -d' ' -f1)" ] ||
    fail "the bundle's rootfs checksum ($checksum) is not $root's"
stranger=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$stranger/key.pem" -out "$stranger/cert.pem" \
    -subj "/CN=not the signer" 2>/dev/null
if rauc info --keyring="$stranger/cert.pem" "$bundle" >/dev/null 2>&1; then
    rm -rf "$stranger"
    fail "the bundle verified against a certificate that did not sign it"
fi
rm -rf "$stranger"
say "$bundle: $(du -h "$bundle" | cut -f1), verified against $cert (and refused by another certificate)"
say "done in $((SECONDS - START)) s"
