#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# The Debian base of the image ($1), run by scripts/make-image.sh as an mmdebstrap customize hook
# before the initramfs is built: what the boot needs to know, nothing of the gate's.
set -eu
root=$1

echo facegate >"$root/etc/hostname"
# mmdebstrap copies the build machine's resolver in; a gate reaches no name server (the unit denies
# it every address), and the build machine's must not end up in the image.
rm -f "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfacegate\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

# raspi-firmware writes /boot/firmware/cmdline.txt from these when the initramfs is built; its
# template says "rw", and the later "ro" wins (systemd-remount-fs then applies fstab's options).
cat >"$root/etc/default/raspi-firmware" <<'RASPI'
ROOTPART=LABEL=RASPIROOT
CONSOLES="ttyS1,115200 tty0"
RASPI
echo ro >"$root/etc/default/raspi-extra-cmdline"
