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
# Reproducible: one commit and one package set give one image, byte for byte. The package set is
# every Debian package the image holds, kept as .debs in $FACEGATE_ASSETS/image-packages (a flat
# repository) by the first build, which takes Debian's current ones; every later build installs
# from it alone, so Debian's point releases and security updates change nothing until it is
# deleted. Its manifest goes beside the image (facegate-pi4.packages), and the image's sha256
# (facegate-pi4.img.sha256). scripts/image-reproducible.sh builds twice and compares.
#
# Any failure ends it with one line saying what failed, and a non-zero exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ASSETS=${FACEGATE_ASSETS:-$REPO/.assets}
OUT=$TARGET_DIR/image
PACKAGE_SET=$ASSETS/image-packages
START=$SECONDS

say() { echo "image: $*"; }
fail() { echo "image: error: $*" >&2; exit 1; }
trap 'fail "unexpected failure at scripts/make-image.sh line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || fail "the image is built as root (mmdebstrap's root mode, binfmt_misc)"

# ---------------------------------------------------------------------------- 1. host tools
source "$REPO/scripts/debian.sh"
ensure_debian_packages mmdebstrap qemu-user-static binfmt-support genimage mtools dosfstools zstd apt-utils bmap-tools openssl
# mke2fs takes SOURCE_DATE_EPOCH for every time it copies in from 1.47.1 on (scripts/image-disk.sh).
ensure_backports_packages "e2fsprogs>=1.47.1"
# The arm64 maintainer scripts run through qemu-user, which binfmt_misc starts.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        fail "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || fail "binfmt_misc has no qemu-aarch64 entry (qemu-user-static)"

# ---------------------------------------------------------------------------- 2. packages
bash "$REPO/scripts/make-debs.sh" arm64
version=$(workspace_version)
debs=("$TARGET_DIR/deb/facegate_${version}_arm64.deb" "$TARGET_DIR/deb/facegate-models_${version}_all.deb")

# ---------------------------------------------------------------------------- 3. root file system
# Two layers, each kept while its inputs are unchanged (a Debian point release remakes neither:
# delete the package set to take one):
#   base    Debian's packages, FaceGate's dependencies among them, and the initramfs: the slow part,
#           made by one mmdebstrap call;
#   rootfs  a copy of base with FaceGate's packages installed by dpkg (their dependencies are all
#           in base, so nothing is downloaded) and the gate configured: about a minute.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
# A failed mmdebstrap can leave its mounts in the tree (the package set's, read-only): unmounted
# first, and rm kept to the tree's own file system whatever is left.
remove_tree() {
    local mount
    for mount in $(findmnt -rn -o TARGET | grep -F "$1/" | sort -r); do umount "$mount"; done
    rm -rf --one-file-system "$1"
}
kept() { [ -d "$OUT/$1" ] && [ "$(cat "$OUT/$1.stamp" 2>/dev/null)" = "$2" ]; }
# The named fields of each stanza of an apt index on stdin, one line per stanza that has them all.
stanza_fields() {
    awk -v RS= -v names="$*" '{
        delete value; n = split($0, line, "\n")
        for (i = 1; i <= n; i++) { colon = index(line[i], ": "); if (colon) value[substr(line[i], 1, colon - 1)] = substr(line[i], colon + 2) }
        out = ""; count = split(names, name, " ")
        for (i = 1; i <= count; i++) { if (!(name[i] in value)) next; out = out (i > 1 ? " " : "") value[name[i]] }
        print out }'
}
mkdir -p "$OUT"

# FaceGate's dependencies, the first of each alternative, without versions.
depends=$(for deb in "${debs[@]}"; do dpkg-deb -f "$deb" Depends; done |
    tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^facegate' | sort -u | grep .)
packages=(
    systemd systemd-sysv udev dbus kmod
    linux-image-arm64 raspi-firmware firmware-brcm80211
    e2fsprogs
    # A/B updates of the root (image/rauc): RAUC and its D-Bus service, which `rauc install` talks to.
    rauc rauc-service
    $depends
)
base=$OUT/base
# The package set, when one is kept, is an input of the base like the package list.
set_identity() { [ -f "$PACKAGE_SET/Packages" ] && cat "$PACKAGE_SET/Packages" "$PACKAGE_SET/epoch"; true; }
base_stamp_now() {
    (printf '%s\n' "${packages[@]}"; set_identity; cat "$REPO/scripts/debian.sh" "$REPO/scripts/image-base.sh") | stamp_of
}
base_stamp=$(base_stamp_now)
if kept base "$base_stamp"; then
    say "Debian base unchanged: kept ($base)"
else
    remove_tree "$base"
    remove_tree "$base.new"
    rm -rf "$OUT/base.stamp" "$PACKAGE_SET.new"
    log=$OUT/mmdebstrap.log
    # The image's apt sources are Debian's, wherever this build takes its packages from.
    printf '%s\n' "${DEBIAN_SOURCES[@]/%/ non-free-firmware}" >"$OUT/sources.list"
    if [ -f "$PACKAGE_SET/Packages" ]; then
        absent=$(printf '%s\n' "${packages[@]}" | sort -u |
            comm -23 - <(sed -n 's/^Package: //p' "$PACKAGE_SET/Packages" | sort -u) | tr '\n' ' ')
        [ -z "$absent" ] || fail "the image now needs ${absent}which the kept package set $PACKAGE_SET lacks: delete it to take Debian's current packages"
        base_epoch=$(cat "$PACKAGE_SET/epoch")
        say "Debian base from the kept package set $PACKAGE_SET (log: $log)"
        sources=(--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount "deb [trusted=yes] file://$PACKAGE_SET ./")
    else
        # Every time the maintainer scripts write is clamped to this, the set's own time.
        base_epoch=$(date +%s)
        say "Debian base from Debian's mirror, its packages kept in $PACKAGE_SET (log: $log)"
        mkdir -p "$PACKAGE_SET.new/lists"
        sources=(--skip=essential/unlink --customize-hook="sync-out /var/cache/apt/archives $PACKAGE_SET.new"
            --customize-hook="sync-out /var/lib/apt/lists $PACKAGE_SET.new/lists"
            "${DEBIAN_SOURCES[@]/%/ non-free-firmware}")
    fi
    include=$(IFS=,; echo "${packages[*]}")
    SOURCE_DATE_EPOCH=$base_epoch mmdebstrap --arch=arm64 --variant=minbase --include="$include" \
        --essential-hook='chroot "$1" dpkg-divert --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
        --customize-hook="sh $REPO/scripts/image-base.sh \"\$1\"" \
        --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs' \
        --customize-hook='chroot "$1" update-initramfs -c -k all' \
        --customize-hook="upload $OUT/sources.list /etc/apt/sources.list" \
        bookworm "$base.new" "${sources[@]}" \
        >"$log" 2>&1 || fail "mmdebstrap of the Debian base failed: $(grep -m1 -E '^E:' "$log" || tail -n1 "$log")"
    # file-mirror-automount leaves the package set's mount point behind (the set's own path).
    if [ -f "$PACKAGE_SET/Packages" ]; then
        rmdir -p --ignore-fail-on-non-empty "$base.new$PACKAGE_SET" 2>/dev/null || true
        [ ! -e "$base.new$PACKAGE_SET" ] || fail "the package set's mount point $base.new$PACKAGE_SET is not empty"
    fi
    for f in vmlinuz initrd.img; do
        ls "$base.new"/boot/"$f"-* >/dev/null 2>&1 || fail "the Debian base has no kernel or initramfs ($f)"
    done
    ls "$base.new/boot/firmware/"*.dtb >/dev/null 2>&1 || fail "raspi-firmware put no device tree in /boot/firmware"
    grep -qw ro "$base.new/boot/firmware/cmdline.txt" || fail "cmdline.txt does not mount the root read-only"
    if [ -d "$PACKAGE_SET.new" ]; then
        # The set's index says what Debian's does, where apt and mmdebstrap read it: each package's
        # priority and section from Debian's lists (the archive overrides what a package's own
        # control file says: apt is "important" there, "required" in bookworm, and minbase takes
        # the required ones), and Debian's suite and codename (mmdebstrap takes the essential
        # packages of the suite it is asked for, and would find none in a suite without a name).
        (cd "$PACKAGE_SET.new" && rm -rf lock partial &&
            for list in lists/*_Packages*; do /usr/lib/apt/apt-helper cat-file "$list"; echo; done |
                stanza_fields Package Priority Section | awk '!seen[$1]++' >override &&
            rm -rf lists && apt-ftparchive packages . override >Packages 2>"$OUT/apt-ftparchive.log" &&
            apt-ftparchive -o APT::FTPArchive::Release::Suite=bookworm -o APT::FTPArchive::Release::Codename=bookworm \
                release . >"$OUT/Release" && mv "$OUT/Release" Release) ||
            fail "cannot index the package set in $PACKAGE_SET.new"
        echo "$base_epoch" >"$PACKAGE_SET.new/epoch"
    fi
    # Every package installed must be in the set, or a later build could not make the same base.
    set_index=$PACKAGE_SET/Packages
    [ -d "$PACKAGE_SET.new" ] && set_index=$PACKAGE_SET.new/Packages
    dpkg-query --admindir="$base.new/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' >"$OUT/installed"
    stanza_fields Package Version Architecture <"$set_index" >"$OUT/in-set"
    missing=$(sort "$OUT/installed" | comm -23 - <(sort -u "$OUT/in-set") | head -n3 | tr '\n' ' ')
    [ -z "$missing" ] || fail "installed but not in the package set ($set_index): $missing"
    find "$base.new" -newermt "@$base_epoch" -exec touch -h -d "@$base_epoch" {} +
    if [ -d "$PACKAGE_SET.new" ]; then
        rm -rf "$PACKAGE_SET"
        mv "$PACKAGE_SET.new" "$PACKAGE_SET"
        say "package set kept: $(grep -c '^Package:' "$PACKAGE_SET/Packages") packages, $(du -sh "$PACKAGE_SET" | cut -f1)"
    fi
    mv "$base.new" "$base"
    base_stamp=$(base_stamp_now)
    echo "$base_stamp" >"$OUT/base.stamp"
    say "Debian base in $((SECONDS - START)) s"
fi

# The certificate the image's RAUC trusts: the update key's (scripts/update-key.sh).
source "$REPO/scripts/update-key.sh"
update_signing_identity
[ -f "$bundle_cert" ] || fail "the update certificate $bundle_cert is not a file (it goes into the image's RAUC keyring)"

rootfs=$OUT/rootfs
rootfs_stamp=$( (echo "$base_stamp"; cat "${debs[@]}" "$REPO/scripts/make-image.sh" "$REPO/scripts/image-configure.sh" \
    "$REPO/image/fstab" "$REPO/image/import-config" "$REPO/image/facegate-import-config.service" \
    "$REPO"/image/rauc/* "$bundle_cert") | stamp_of)
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
    # The commit's time for what the maintainer scripts date (the accounts' last password change).
    SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct) unshare --mount --fork sh -c '
        mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
        chroot "$1" sh -c "DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/facegate/*.deb"' sh "$rootfs.new" \
        >"$log" 2>&1 || fail "installing FaceGate's packages in the image failed: $(grep -m1 -E 'error|dpkg:' "$log" || tail -n1 "$log")"
    rm -rf "$rootfs.new/tmp/facegate"
    sh "$REPO/scripts/image-configure.sh" "$rootfs.new" "$bundle_cert" >>"$log" 2>&1 ||
        fail "configuring the gate in the image failed: $(grep -m1 '^image-configure:' "$log" || tail -n1 "$log")"
    mv "$rootfs.new" "$rootfs"
    echo "$rootfs_stamp" >"$OUT/rootfs.stamp"
    say "FaceGate installed and configured in $((SECONDS - began)) s"
fi

# ---------------------------------------------------------------------------- 4. disk image
bash "$REPO/scripts/image-disk.sh" "$rootfs" "$OUT"
zstd -q -f -9 -T0 "$OUT/facegate-pi4.img" -o "$OUT/facegate-pi4.img.zst"
dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' >"$OUT/facegate-pi4.packages"
# bmaptool copy writes only the blocks in use (about a third of the disk) and checks each range.
bmaptool -q create -o "$OUT/facegate-pi4.img.bmap" "$OUT/facegate-pi4.img"
(cd "$OUT" && sha256sum facegate-pi4.img facegate-pi4.img.zst facegate-pi4.img.bmap >facegate-pi4.img.sha256)
say "sha256 $(cut -c1-16 "$OUT/facegate-pi4.img.sha256" | head -n1)… (facegate-pi4.img.sha256), packages in facegate-pi4.packages"
say "$OUT/facegate-pi4.img: $(du -h --apparent-size "$OUT/facegate-pi4.img" | cut -f1), zstd $(du -h "$OUT/facegate-pi4.img.zst" | cut -f1)"
say "done in $((SECONDS - START)) s"
