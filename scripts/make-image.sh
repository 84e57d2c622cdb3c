#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make image`: a Raspberry Pi 4 disk image from Debian 12's packages and FaceGate's arm64
# packages, into <target>/image/facegate-pi4.img.zst. As root; about 40 minutes cold (the arm64
# build, then the Debian base, whose maintainer scripts run under qemu-user), 3 with both kept.
#
#   1. host tools (mmdebstrap, qemu-user-static with binfmt_misc, genimage, mtools, dosfstools);
#   2. the arm64 packages (scripts/make-debs.sh arm64);
#   3. the root file system (main and non-free-firmware, for the Pi's boot firmware and Wi-Fi): a
#      Debian base by one mmdebstrap call (minbase, systemd, Debian's arm64 kernel, raspi-firmware
#      for the Pi's boot partition, FaceGate's dependencies; the initramfs built once at the end,
#      update-initramfs diverted while packages install), then FaceGate's packages installed and
#      the gate configured (gpiochip backend, the V4L2 camera pipeline, the read-only root's
#      layout), ssh absent. Each layer is kept while its inputs are unchanged;
#   4. the disk (scripts/image-disk.sh): an MBR, FAT32 "RASPIFIRM" at 4 MiB (/boot/firmware, what
#      the Pi's boot ROM reads), the read-only ext4 root "RASPIROOT" and the gate's writable
#      "FGDATA" (image/fstab).
#
# Any failure ends it with one line saying what failed, and a non-zero exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=$TARGET_DIR/image
START=$SECONDS

say() { echo "image: $*"; }
fail() { echo "image: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/make-image.sh line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || fail "the image is built as root (mmdebstrap's root mode, binfmt_misc)"

# ---------------------------------------------------------------------------- 1. host tools
source "$REPO/scripts/debian.sh"
ensure_debian_packages mmdebstrap qemu-user-static binfmt-support genimage mtools dosfstools e2fsprogs zstd
# The arm64 maintainer scripts run through qemu-user, which binfmt_misc starts.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        fail "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || fail "binfmt_misc has no qemu-aarch64 entry (qemu-user-static)"

# ---------------------------------------------------------------------------- 2. packages
bash "$REPO/scripts/make-debs.sh" arm64
version=$(python3 -c 'import tomllib; print(tomllib.load(open("'"$REPO"'/Cargo.toml", "rb"))["workspace"]["package"]["version"])')
debs=("$TARGET_DIR/deb/facegate_${version}_arm64.deb" "$TARGET_DIR/deb/facegate-models_${version}_all.deb")

# ---------------------------------------------------------------------------- 3. root file system
# Two layers, each kept while its inputs are unchanged (a Debian point release alone remakes
# neither: delete <target>/image/base to take one):
#   base    Debian's packages, FaceGate's dependencies among them, and the initramfs: the slow part,
#           made by one mmdebstrap call;
#   rootfs  a copy of base with FaceGate's packages installed by dpkg (their dependencies are all
#           in base, so nothing is downloaded) and the gate configured: about a minute.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
kept() { [ -d "$OUT/$1" ] && [ "$(cat "$OUT/$1.stamp" 2>/dev/null)" = "$2" ]; }
mkdir -p "$OUT"

# FaceGate's dependencies, the first of each alternative, without versions.
depends=$(for deb in "${debs[@]}"; do dpkg-deb -f "$deb" Depends; done |
    tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^facegate' | sort -u | grep .)
packages=(
    systemd systemd-sysv udev dbus kmod
    linux-image-arm64 raspi-firmware firmware-brcm80211
    e2fsprogs
    $depends
)
base=$OUT/base
base_stamp=$(printf '%s\n' "${packages[@]}" | cat - "$REPO/scripts/debian.sh" "$REPO/scripts/image-base.sh" | stamp_of)
if kept base "$base_stamp"; then
    say "Debian base unchanged: kept ($base)"
else
    rm -rf "$base" "$base.new" "$OUT/base.stamp"
    log=$OUT/mmdebstrap.log
    say "Debian base (log: $log)"
    include=$(IFS=,; echo "${packages[*]}")
    mmdebstrap --arch=arm64 --variant=minbase --include="$include" \
        --essential-hook='chroot "$1" dpkg-divert --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
        --customize-hook="sh $REPO/scripts/image-base.sh \"\$1\"" \
        --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs' \
        --customize-hook='chroot "$1" update-initramfs -c -k all' \
        bookworm "$base.new" "${DEBIAN_SOURCES[@]/%/ non-free-firmware}" \
        >"$log" 2>&1 || fail "mmdebstrap of the Debian base failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    for f in vmlinuz initrd.img; do
        ls "$base.new"/boot/"$f"-* >/dev/null 2>&1 || fail "the Debian base has no kernel or initramfs ($f)"
    done
    ls "$base.new/boot/firmware/"*.dtb >/dev/null 2>&1 || fail "raspi-firmware put no device tree in /boot/firmware"
    grep -qw ro "$base.new/boot/firmware/cmdline.txt" || fail "cmdline.txt does not mount the root read-only"
    mv "$base.new" "$base"
    echo "$base_stamp" >"$OUT/base.stamp"
    say "Debian base in $((SECONDS - START)) s"
fi

rootfs=$OUT/rootfs
rootfs_stamp=$( (echo "$base_stamp"; cat "${debs[@]}" "$REPO/scripts/make-image.sh" "$REPO/scripts/image-configure.sh" \
    "$REPO/image/fstab" "$REPO/image/import-config" "$REPO/image/facegate-import-config.service") | stamp_of)
if kept rootfs "$rootfs_stamp"; then
    say "root file system unchanged: kept ($rootfs)"
else
    began=$SECONDS
    rm -rf "$rootfs" "$rootfs.new" "$OUT/rootfs.stamp"
    cp -a "$base" "$rootfs.new"
    mkdir -p "$rootfs.new/tmp/facegate"
    cp "${debs[@]}" "$rootfs.new/tmp/facegate/"
    # dpkg's maintainer scripts (sysusers, tmpfiles, the unit's enablement) under qemu-user, with
    # /proc and /dev mounted in a mount namespace of their own, gone when it ends.
    log=$OUT/dpkg.log
    unshare --mount --fork sh -c '
        mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
        chroot "$1" sh -c "DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/facegate/*.deb"' sh "$rootfs.new" \
        >"$log" 2>&1 || fail "installing FaceGate's packages in the image failed: $(grep -m1 -E 'error|dpkg:' "$log" || tail -n1 "$log")"
    rm -rf "$rootfs.new/tmp/facegate"
    sh "$REPO/scripts/image-configure.sh" "$rootfs.new" >>"$log" 2>&1 ||
        fail "configuring the gate in the image failed: $(grep -m1 '^image-configure:' "$log" || tail -n1 "$log")"
    mv "$rootfs.new" "$rootfs"
    echo "$rootfs_stamp" >"$OUT/rootfs.stamp"
    say "FaceGate installed and configured in $((SECONDS - began)) s"
fi

# ---------------------------------------------------------------------------- 4. disk image
bash "$REPO/scripts/image-disk.sh" "$rootfs" "$OUT"
zstd -q -f -9 -T0 "$OUT/facegate-pi4.img" -o "$OUT/facegate-pi4.img.zst"
say "$OUT/facegate-pi4.img: $(du -h --apparent-size "$OUT/facegate-pi4.img" | cut -f1), zstd $(du -h "$OUT/facegate-pi4.img.zst" | cut -f1)"
say "done in $((SECONDS - START)) s"
