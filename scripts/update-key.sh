# SPDX-License-Identifier: MIT OR Apache-2.0
# Sourced by make-image.sh (the certificate goes into the image's RAUC keyring) and make-bundle.sh
# (the key signs the bundle): the update signing identity, after `update_signing_identity`, in
# $bundle_key and $bundle_cert. The caller sets $ASSETS, as every script here does.
#
# $FACEGATE_BUNDLE_KEY (a PEM file or a PKCS#11 URL) and $FACEGATE_BUNDLE_CERT (a PEM file) name the
# fleet's own update key, which never leaves its owner. Without them, a development key is made once in
# $FACEGATE_ASSETS/update-keys (never committed, its name says "development"), and the caller is
# told: a gate in service must not trust that key.
update_signing_identity() {
    if [ -n "${FACEGATE_BUNDLE_KEY:-}" ] || [ -n "${FACEGATE_BUNDLE_CERT:-}" ]; then
        bundle_key=${FACEGATE_BUNDLE_KEY:?FACEGATE_BUNDLE_CERT is set without FACEGATE_BUNDLE_KEY}
        bundle_cert=${FACEGATE_BUNDLE_CERT:?FACEGATE_BUNDLE_KEY is set without FACEGATE_BUNDLE_CERT}
        return
    fi
    local keys=$ASSETS/update-keys
    bundle_key=$keys/development-key.pem bundle_cert=$keys/development-cert.pem
    if [ ! -f "$bundle_key" ] || [ ! -f "$bundle_cert" ]; then
        mkdir -p -m 0700 "$keys"
        openssl req -x509 -newkey rsa:4096 -nodes -sha256 -days 3650 -keyout "$bundle_key.new" -out "$bundle_cert.new" \
            -subj "/O=FaceGate/CN=FaceGate development update key (not for gates)" 2>"$keys/openssl.log" ||
            fail "openssl could not make the development update key: $(tail -n1 "$keys/openssl.log")"
        mv "$bundle_key.new" "$bundle_key"
        mv "$bundle_cert.new" "$bundle_cert"
    fi
    say "update key: the development key $bundle_key (FACEGATE_BUNDLE_KEY and FACEGATE_BUNDLE_CERT name a fleet's own)"
}
