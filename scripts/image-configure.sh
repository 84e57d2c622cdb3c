#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# The gate's own settings in the image's root file system ($1), run by scripts/make-image.sh after
# FaceGate's packages are installed in it: the gate's defaults, the read-only root's layout
# (image/fstab), the configuration import from the boot partition and the A/B root slots.
set -eu
root=$1
image=$(cd "$(dirname "$0")/../image" && pwd)
fail() { echo "image-configure: $*" >&2; exit 1; }

# The image's gate: Debian's kernel has the GPIO character device, not /dev/gpiomem (rppal), and
# no driver for the Pi's own camera, so a USB camera through V4L2.
config=$root/etc/facegate/facegate.toml
sed -i 's|^backend = "rppal"|backend = "gpiochip"|' "$config"
sed -i 's|^file = "/usr/share/facegate/pipelines/gate.pipeline"|file = "/usr/share/facegate/pipelines/gate-v4l2.pipeline"|' "$config"
grep -q '^backend = "gpiochip"' "$config" || fail "gate.backend not set in $config"
grep -q '^file = "/usr/share/facegate/pipelines/gate-v4l2.pipeline"' "$config" || fail "pipeline.file not set in $config"

# Read-only root: what is written at run time moves to FGDATA (genimage makes that partition from
# /data), the directories left behind are its mount points (image/fstab).
install -m 0644 "$image/fstab" "$root/etc/fstab"
mkdir -p "$root/data"
for moved in etc/facegate:etc-facegate var/lib/facegate:facegate var/lib/systemd:var-lib-systemd; do
    from=$root/${moved%%:*}
    to=$root/data/${moved#*:}
    [ -d "$from" ] || fail "no /${moved%%:*} to move to FGDATA"
    rm -rf "$to"
    mv "$from" "$to"
    mkdir -m 0755 "$from"
done
# A machine ID made at each boot (the root cannot keep one); journald keeps its logs in /run.
: >"$root/etc/machine-id"
# Timers that write to the root (dpkg's and apt's): nothing is installed on a running gate.
for timer in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer; do
    rm -f "$root/etc/systemd/system/timers.target.wants/$timer"
    ln -sf /dev/null "$root/etc/systemd/system/$timer"
done

# What installing wrote about itself (under the tmpfs /var/log at run time, so never seen on a
# gate), with its times and inode numbers: the image would differ at each build.
rm -f "$root/var/log/dpkg.log" "$root/var/log/alternatives.log" "$root/var/log/apt/history.log" \
    "$root/var/log/apt/term.log" "$root/var/cache/ldconfig/aux-cache"

# The configuration written on the boot partition (facegate.toml), taken before the gate starts.
install -D -m 0755 "$image/import-config" "$root/usr/libexec/facegate/import-config"
install -m 0644 "$image/facegate-import-config.service" "$root/etc/systemd/system/"
ln -sf ../facegate-import-config.service "$root/etc/systemd/system/multi-user.target.wants/facegate-import-config.service"

# A/B updates (image/rauc, docs/APPLIANCE.md): RAUC with the update key's certificate ($2) as its
# keyring, facegate-slots as its bootloader backend, and the boot partition laid out per slot: the
# firmware's files at the top, config.txt naming slot A's directory, a/ holding its kernel,
# initramfs, device trees and command line (root by PARTUUID: both slots' file systems are one
# image, with one label and one UUID). b/ is written when slot B is installed.
cert=$2
install -D -m 0644 "$image/rauc/system.conf" "$root/etc/rauc/system.conf"
install -m 0644 "$cert" "$root/etc/rauc/keyring.pem"
install -D -m 0755 "$image/rauc/facegate-slots" "$root/usr/libexec/facegate/facegate-slots"
install -m 0644 "$image/rauc/facegate-slot-trial.service" "$root/etc/systemd/system/"
ln -sf ../facegate-slot-trial.service "$root/etc/systemd/system/multi-user.target.wants/facegate-slot-trial.service"
mkdir -p "$root/data/rauc"
firmware=$root/boot/firmware
# raspi-firmware's command line without its root (each slot names its own) and without rw.
cmdline=$(tr ' ' '\n' <"$firmware/cmdline.txt" | grep -v -e '^root=' -e '^rw$' -e '^ro$' | grep . | tr '\n' ' ' | sed 's/ $//')
printf '# The kernel command line of this root slot but its root (facegate-slots boot-files).\nCMDLINE="%s"\n' "$cmdline" \
    >"$root/etc/default/facegate-slots"
FACEGATE_FIRMWARE=$firmware sh "$image/rauc/facegate-slots" boot-files "$root" A
{
    echo "# The Raspberry Pi firmware's configuration, from raspi-firmware's, for FaceGate's two root"
    echo "# slots: os_prefix names the slot booted (facegate-slots rewrites it), whose directory holds"
    echo "# its kernel, initramfs, device trees and cmdline.txt."
    grep -v '^#' "$firmware/config.txt" | sed -e 's/^kernel=.*/kernel=vmlinuz/' -e 's/^initramfs .*/initramfs initrd.img followkernel/'
    echo "os_prefix=a/"
} >"$firmware/config.txt.new"
grep -q '^kernel=vmlinuz$' "$firmware/config.txt.new" && grep -q '^initramfs initrd.img followkernel$' "$firmware/config.txt.new" ||
    fail "raspi-firmware's config.txt names no kernel or initramfs to point at the slot's"
mv "$firmware/config.txt.new" "$firmware/config.txt"
rm -f "$firmware"/vmlinuz-* "$firmware"/initrd.img-* "$firmware"/*.dtb "$firmware/cmdline.txt"
