#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# The gate's own settings in the image's root file system ($1), run by scripts/make-image.sh as an
# mmdebstrap customize hook, after FaceGate's packages are installed.
set -eu
root=$1

echo facegate >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfacegate\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cat >"$root/etc/fstab" <<'FSTAB'
# The partitions scripts/make-image.sh makes (genimage.cfg), by label.
LABEL=RASPIROOT  /               ext4  defaults,noatime  0  1
LABEL=RASPIFIRM  /boot/firmware  vfat  defaults          0  2
FSTAB

# raspi-firmware writes /boot/firmware/cmdline.txt from this when the initramfs is built.
cat >"$root/etc/default/raspi-firmware" <<'RASPI'
ROOTPART=LABEL=RASPIROOT
CONSOLES="ttyS1,115200 tty0"
RASPI

# The image's gate: Debian's kernel has the GPIO character device, not /dev/gpiomem (rppal), and
# no driver for the Pi's own camera, so a USB camera through V4L2.
config=$root/etc/facegate/facegate.toml
sed -i 's|^backend = "rppal"|backend = "gpiochip"|' "$config"
sed -i 's|^file = "/usr/share/facegate/pipelines/gate.pipeline"|file = "/usr/share/facegate/pipelines/gate-v4l2.pipeline"|' "$config"
grep -q '^backend = "gpiochip"' "$config" || { echo "image-configure: gate.backend not set in $config" >&2; exit 1; }
grep -q '^file = "/usr/share/facegate/pipelines/gate-v4l2.pipeline"' "$config" ||
    { echo "image-configure: pipeline.file not set in $config" >&2; exit 1; }
