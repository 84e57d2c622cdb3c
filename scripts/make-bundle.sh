#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make bundle`: the image's root file system as a signed RAUC update bundle,
# <target>/image/facegate-pi4-<version>.raucb, made after `make image` (which it runs; its layers are
# kept). As root. The bundle is RAUC's verity format (the image checked block by block as it is
# installed) with one image, rootfs, for a system whose RAUC says compatible = facegate-pi4.
#
# Signed with $FACEGATE_BUNDLE_KEY and $FACEGATE_BUNDLE_CERT (PEM files or PKCS#11 URLs): the fleet's
# own update key, which never leaves its owner. Without them, with a development key made once in
# $FACEGATE_ASSETS/update-keys (never committed, its name says "development"), and the build says so:
# a gate must not trust that key. The bundle is then verified against the certificate, as a gate
# would, and refused by another one.
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

bash "$REPO/scripts/make-image.sh"
[ -f "$OUT/root.ext4" ] || fail "$OUT/root.ext4 is missing: make image did not leave the root file system"
version=$(python3 -c 'import tomllib; print(tomllib.load(open("'"$REPO"'/Cargo.toml", "rb"))["workspace"]["package"]["version"])')

# ---------------------------------------------------------------------------- the signing key
if [ -n "${FACEGATE_BUNDLE_KEY:-}" ] || [ -n "${FACEGATE_BUNDLE_CERT:-}" ]; then
    key=${FACEGATE_BUNDLE_KEY:?FACEGATE_BUNDLE_CERT is set without FACEGATE_BUNDLE_KEY}
    cert=${FACEGATE_BUNDLE_CERT:?FACEGATE_BUNDLE_KEY is set without FACEGATE_BUNDLE_CERT}
else
    keys=$ASSETS/update-keys
    key=$keys/development-key.pem cert=$keys/development-cert.pem
    if [ ! -f "$key" ] || [ ! -f "$cert" ]; then
        mkdir -p -m 0700 "$keys"
        openssl req -x509 -newkey rsa:4096 -nodes -sha256 -days 3650 -keyout "$key.new" -out "$cert.new" \
            -subj "/O=FaceGate/CN=FaceGate development update key (not for gates)" 2>"$keys/openssl.log" ||
            fail "openssl could not make the development key: $(tail -n1 "$keys/openssl.log")"
        mv "$key.new" "$key"
        mv "$cert.new" "$cert"
    fi
    say "signing with the development key $key (FACEGATE_BUNDLE_KEY and FACEGATE_BUNDLE_CERT name a fleet's own)"
fi

# ---------------------------------------------------------------------------- the bundle
content=$OUT/bundle-content
bundle=$OUT/facegate-pi4-$version.raucb
rm -rf "$content" "$bundle"
mkdir -p "$content"
cp --sparse=always "$OUT/root.ext4" "$content/root.ext4"
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
[ "$checksum" = "$(sha256sum "$OUT/root.ext4" | cut -d' ' -f1)" ] ||
    fail "the bundle's rootfs checksum ($checksum) is not the image's root.ext4"
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
