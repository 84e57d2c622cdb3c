# SPDX-License-Identifier: MIT OR Apache-2.0
# Sourced by the scripts that bootstrap Debian trees with mmdebstrap (the arm64 sysroot, the
# packages' install test): the suites a gate's packages come from, the host's own.
DEBIAN_SOURCES=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main"
)
