# SPDX-License-Identifier: MIT OR Apache-2.0
# Sourced by the appliance scripts (cross-arm64.sh, make-debs.sh, make-image.sh, test-debs.sh):
# the Debian suites they bootstrap trees from, and the host packages they need. Each script
# defines fail() before sourcing this.

# The suites a gate's packages come from, the host's own.
DEBIAN_SOURCES=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main"
)

debian_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

# Installs whichever of the named Debian packages are missing (as root), one line if it fails.
ensure_debian_packages() {
    local missing=() p log
    for p in "$@"; do
        debian_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || fail "not root: cannot install ${missing[*]} (run as root, or apt-get install them)"
    echo "installing Debian packages: ${missing[*]}"
    log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$log" 2>&1; then
        # A fresh machine's package lists may be empty: update once and try again.
        apt-get update >"$log" 2>&1 || fail "apt-get update failed: $(tail -n1 "$log")"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$log" 2>&1 ||
            fail "apt-get install ${missing[*]} failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    fi
    rm -f "$log"
}
