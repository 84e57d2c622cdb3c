# SPDX-License-Identifier: MIT OR Apache-2.0
# Sourced by the appliance scripts (cross-arm64.sh, make-debs.sh, make-image.sh, image-test.sh, test-debs.sh):
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

# Installs the named packages from bookworm-backports (adding that suite to apt's sources if it is
# not there): for tools whose bookworm version conflicts with what the machine has (qemu-system-arm
# 7.2 would replace qemu-utils 10.0) or lacks what a script needs ("e2fsprogs>=1.47.1": installed
# unless at least that version is). Backports are never installed unless asked for by name.
ensure_backports_packages() {
    local missing=() p name least log list=/etc/apt/sources.list.d/facegate-bookworm-backports.list
    for p in "$@"; do
        name=${p%%>=*}
        least=${p#"$name"}
        least=${least#>=}
        if ! debian_installed "$name" ||
            { [ -n "$least" ] && ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' "$name")" ge "$least"; }; then
            missing+=("$name")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || fail "not root: cannot install ${missing[*]} from bookworm-backports"
    log=$(mktemp)
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
    fi
    apt-get update >"$log" 2>&1 || fail "apt-get update failed: $(tail -n1 "$log")"
    echo "installing from bookworm-backports: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports \
        "${missing[@]}" >"$log" 2>&1 ||
        fail "apt-get install -t bookworm-backports ${missing[*]} failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    rm -f "$log"
}

# toml FILE KEY: the value at the dotted KEY of a TOML file (python3's tomllib: Debian 12's
# python3 has it, and no TOML tool is in bookworm).
toml() {
    python3 -c 'import sys, tomllib; d = tomllib.load(open(sys.argv[1], "rb"))
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$@"
}

# The workspace's version (Cargo.toml), which FaceGate's packages and bundles carry.
workspace_version() { toml "$REPO/Cargo.toml" workspace.package.version; }
