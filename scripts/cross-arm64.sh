#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make arm64`: the whole workspace cross-built for the gates' Raspberry Pi 4
# (aarch64-unknown-linux-gnu, release profile) into <target>/aarch64-unknown-linux-gnu/release.
# Idempotent; run it as root on Debian 12.
#
#   1. Debian's cross toolchain and mmdebstrap (crossbuild-essential-arm64), installed if missing;
#   2. rustup's aarch64 standard library (`rustup target add`), if missing;
#   3. an arm64 sysroot: the -dev packages the build links against, unpacked by
#      `mmdebstrap --variant=extract` from Debian 12 into $FACEGATE_ASSETS/arm64-sysroot (the host
#      untouched), made again only when its package list changes;
#   4. cargo build --target aarch64-unknown-linux-gnu --release --workspace, C and C++ (FAISS,
#      SQLite, ring) through the cross compiler against the sysroot, pkg-config through the
#      target-scoped variables;
#   5. `file` must call every binary and the GStreamer plugin "ARM aarch64", and facegated and
#      facegatectl must start under qemu-user against the sysroot's libraries (`--version`).
#
# Any failure ends it with one line saying what failed, and a non-zero exit.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ASSETS=${FACEGATE_ASSETS:-$REPO/.assets}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TRIPLE=aarch64-unknown-linux-gnu
GNU_TRIPLE=aarch64-linux-gnu
SYSROOT=$ASSETS/arm64-sysroot
START=$SECONDS

say() { echo "arm64: $*"; }
fail() { echo "arm64: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/cross-arm64.sh line $LINENO: $BASH_COMMAND"' ERR

# What the workspace links against on the gate, as scripts/setup.sh installs it for the host.
SYSROOT_PKGS=(
    libc6-dev libstdc++-12-dev
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    libopenblas-dev liblapack-dev libgomp1
    libpango1.0-dev libcairo2-dev
    libzbar-dev
)
# The sysroot's libraries are the ones a gate installs (DEBIAN_SOURCES).
source "$REPO/scripts/debian.sh"

# ---------------------------------------------------------------------------- 1. cross toolchain
ensure_debian_packages crossbuild-essential-arm64 mmdebstrap file qemu-user-static

# ---------------------------------------------------------------------------- 2. Rust target
command -v rustup >/dev/null || fail "rustup not found: the aarch64 standard library comes from \`rustup target add $TRIPLE\`"
if ! rustup target list --installed | grep -qx "$TRIPLE"; then
    say "rustup target add $TRIPLE"
    rustup target add "$TRIPLE" >/dev/null 2>&1 ||
        fail "\`rustup target add $TRIPLE\` failed: this machine cannot fetch Rust's aarch64 standard library"
fi

# ---------------------------------------------------------------------------- 3. sysroot
stamp=$(printf '%s\n' "${SYSROOT_PKGS[@]}" "${DEBIAN_SOURCES[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$SYSROOT/.facegate-stamp" 2>/dev/null || true)" != "$stamp" ]; then
    say "making the arm64 sysroot in $SYSROOT (about a minute)"
    rm -rf "$SYSROOT" "$SYSROOT.new"
    log=$(mktemp)
    include=$(IFS=,; echo "${SYSROOT_PKGS[*]}")
    mmdebstrap --arch=arm64 --variant=extract --include="$include" bookworm "$SYSROOT.new" \
        "${DEBIAN_SOURCES[@]}" >"$log" 2>&1 ||
        fail "mmdebstrap of the arm64 sysroot failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    # --variant=extract unpacks without running maintainer scripts: the symlinks they would make
    # are made here. Debian's -dev symlinks are absolute (/lib/...), which would name the host's
    # files from inside a sysroot; they are made relative.
    while IFS= read -r link; do
        target=$(readlink "$link")
        ln -sfn "$(realpath -ms --relative-to="$(dirname "$link")" "$SYSROOT.new$target")" "$link"
    done < <(find "$SYSROOT.new" -type l -lname '/*')
    # update-alternatives' links for the BLAS and LAPACK FAISS links (OpenBLAS, as on the host).
    lib=$SYSROOT.new/usr/lib/$GNU_TRIPLE
    for so in libblas.so libblas.so.3 liblapack.so liblapack.so.3 libopenblas.so libopenblas.so.0; do
        [ -e "$lib/openblas-pthread/$so" ] || fail "the sysroot has no openblas-pthread/$so"
        ln -sfn "openblas-pthread/$so" "$lib/$so"
    done
    echo "$stamp" >"$SYSROOT.new/.facegate-stamp"
    mv "$SYSROOT.new" "$SYSROOT"
fi

# ---------------------------------------------------------------------------- 4. build
# One compiler driver that knows the sysroot, for cc-rs, cmake and the final link alike.
tools=$SYSROOT/.facegate-bin
mkdir -p "$tools"
for tool in gcc g++; do
    printf '#!/bin/sh\nexec %s-%s --sysroot=%s "$@"\n' "$GNU_TRIPLE" "$tool" "$SYSROOT" >"$tools/$tool"
    chmod +x "$tools/$tool"
done
cat >"$tools/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_SYSROOT $SYSROOT)
set(CMAKE_C_COMPILER $tools/gcc)
set(CMAKE_CXX_COMPILER $tools/g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
EOF

T=${TRIPLE//-/_}
T_UPPER=${T^^}
export "CC_$T=$tools/gcc" "CXX_$T=$tools/g++" "AR_$T=$GNU_TRIPLE-ar"
export "CARGO_TARGET_${T_UPPER}_LINKER=$tools/gcc"
export "CMAKE_TOOLCHAIN_FILE_$T=$tools/toolchain.cmake"
export "PKG_CONFIG_SYSROOT_DIR_$T=$SYSROOT"
export "PKG_CONFIG_LIBDIR_$T=$SYSROOT/usr/lib/$GNU_TRIPLE/pkgconfig:$SYSROOT/usr/share/pkgconfig"

say "cargo build --release --workspace --target $TRIPLE"
build_start=$SECONDS
(cd "$REPO" && cargo build --release --workspace --target "$TRIPLE") ||
    fail "the aarch64 build failed (cargo's errors above)"
say "built in $((SECONDS - build_start)) s"

# ---------------------------------------------------------------------------- 5. check
out=$TARGET_DIR/$TRIPLE/release
for artefact in facegated facegatectl libgstfacegate.so; do
    [ -f "$out/$artefact" ] || fail "$out/$artefact was not built"
    description=$(file -b "$out/$artefact")
    case $description in
        *"ARM aarch64"*) say "$artefact: $description" ;;
        *) fail "$out/$artefact is not an aarch64 ELF: $description" ;;
    esac
done
# Run, not only linked: every shared library they need resolves in the sysroot, as on a gate.
for binary in facegated facegatectl; do
    version=$(qemu-aarch64-static -L "$SYSROOT" \
        -E "LD_LIBRARY_PATH=$SYSROOT/usr/lib/$GNU_TRIPLE/openblas-pthread" \
        "$out/$binary" --version 2>&1) || fail "$binary does not start under qemu-aarch64-static: $version"
    say "under qemu-aarch64-static: $version"
done
say "done in $((SECONDS - START)) s"
