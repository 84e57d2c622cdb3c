#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# `make image`: a Raspberry Pi 4 disk image from Debian 12's packages and FaceGate's arm64
# packages, into <target>/image/facegate-pi4.img.zst. As root; about 20 minutes, most of it
# maintainer scripts run under qemu-user.
#
#   1. host tools (mmdebstrap, qemu-user-static with binfmt_misc, genimage, mtools, dosfstools);
#   2. the arm64 packages (scripts/make-debs.sh arm64);
#   3. the root file system (main and non-free-firmware, for the Pi's boot firmware and Wi-Fi):
#      one mmdebstrap call (minbase, systemd, Debian's arm64 kernel,
#      raspi-firmware for the Pi's boot partition), FaceGate's packages installed by apt, the gate
#      configured (gpiochip backend, the V4L2 camera pipeline), ssh absent; the initramfs built
#      once at the end (update-initramfs is diverted while packages install);
#   4. genimage: an MBR disk, a FAT32 firmware partition "RASPIFIRM" at 4 MiB (/boot/firmware,
#      what the Pi's boot ROM reads) and an ext4 root "RASPIROOT", made without loop mounts.
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
rootfs=$OUT/rootfs
rm -rf "$rootfs" "$OUT/genimage-tmp"
mkdir -p "$OUT"
log=$OUT/mmdebstrap.log
say "root file system (log: $log)"
packages=(
    systemd systemd-sysv udev dbus kmod
    linux-image-arm64 raspi-firmware firmware-brcm80211
    e2fsprogs
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good
)
include=$(IFS=,; echo "${packages[*]}")
mmdebstrap --arch=arm64 --variant=minbase --include="$include" \
    --essential-hook='chroot "$1" dpkg-divert --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
    --customize-hook="mkdir -p \"\$1/tmp/facegate\"" \
    --customize-hook="copy-in ${debs[*]} /tmp/facegate" \
    --customize-hook='chroot "$1" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/facegate/*.deb"' \
    --customize-hook="sh $REPO/scripts/image-configure.sh \"\$1\"" \
    --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs' \
    --customize-hook='chroot "$1" update-initramfs -c -k all' \
    --customize-hook='rm -rf "$1/tmp/facegate"' \
    bookworm "$rootfs" "${DEBIAN_SOURCES[@]/%/ non-free-firmware}" \
    >"$log" 2>&1 || fail "mmdebstrap of the root file system failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
for f in vmlinuz initrd.img; do
    [ -e "$rootfs/$f" ] || [ -e "$rootfs/boot/$f" ] || ls "$rootfs"/boot/"${f%%.*}"* >/dev/null 2>&1 ||
        fail "the root file system has no kernel or initramfs ($f)"
done
ls "$rootfs/boot/firmware/"*.dtb >/dev/null 2>&1 || fail "raspi-firmware put no device tree in /boot/firmware"
say "root file system in $((SECONDS - START)) s"

# ---------------------------------------------------------------------------- 4. disk image
cat >"$OUT/genimage.cfg" <<'EOF'
image firmware.vfat {
    vfat {
        label = "RASPIFIRM"
    }
    mountpoint = "/boot/firmware"
    size = 256M
}
image root.ext4 {
    ext4 {
        label = "RASPIROOT"
        use-mke2fs = true
    }
    size = 2G
}
image facegate-pi4.img {
    hdimage {
        partition-table-type = "mbr"
    }
    partition firmware {
        partition-type = 0xC
        bootable = true
        image = "firmware.vfat"
        offset = 4M
    }
    partition root {
        partition-type = 0x83
        image = "root.ext4"
    }
}
EOF
genimage --config "$OUT/genimage.cfg" --rootpath "$rootfs" --tmppath "$OUT/genimage-tmp" \
    --inputpath "$OUT" --outputpath "$OUT" >"$OUT/genimage.log" 2>&1 ||
    fail "genimage failed: $(tail -n1 "$OUT/genimage.log")"
rm -rf "$OUT/genimage-tmp"
zstd -q -f -9 -T0 "$OUT/facegate-pi4.img" -o "$OUT/facegate-pi4.img.zst"
say "$OUT/facegate-pi4.img: $(du -h --apparent-size "$OUT/facegate-pi4.img" | cut -f1), zstd $(du -h "$OUT/facegate-pi4.img.zst" | cut -f1)"
say "done in $((SECONDS - START)) s"
