#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# image-disk.sh ROOTFS DIR: the Raspberry Pi 4 disk image of the tree ROOTFS as DIR/facegate-pi4.img,
# by genimage (image/genimage.cfg), without loop mounts. Run by make-image.sh for the image and by
# image-test.sh for its test variant.
#
# One tree gives one image, byte for byte: genimage.cfg fixes every identifier, and every time in
# the file systems (each inode's, the superblocks', the FAT entries') is SOURCE_DATE_EPOCH, the last
# commit's time unless set, whatever the order the host lists the tree's directories in. mke2fs takes it for the inodes it copies in from 1.47.1 on (bookworm's
# 1.47.0 copies each file's ctime and atime from the tree, which no one can set): make-image.sh
# installs bookworm-backports' e2fsprogs.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tree=$1 dir=$2
fail() { echo "image: error: $*" >&2; exit 1; }
mke2fs_version=$(mke2fs -V 2>&1 | sed -n '1s/^mke2fs \([0-9.]*\).*/\1/p')
dpkg --compare-versions "$mke2fs_version" ge 1.47.1 ||
    fail "mke2fs $mke2fs_version keeps the tree's own times in the image: apt-get install -t bookworm-backports e2fsprogs (1.47.1 or later)"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct)}
# genimage's e2fsck -D (which rebuilds the directories' indexes) stamps the superblock with its own
# clock unless told this.
export E2FSCK_TIME=$SOURCE_DATE_EPOCH
# mke2fs clamps each time to SOURCE_DATE_EPOCH but keeps an older one, and a file's access time is
# whenever the host last read it: every access time "now" first, so that each is clamped.
find "$tree" -exec touch -a -h {} +
# genimage's shell sorts the boot partition's files as it copies them (mcopy ::/*): in one order.
export LC_ALL=C
mkdir -p "$dir"
rm -rf "$dir/genimage-tmp"
genimage --config "$REPO/image/genimage.cfg" --rootpath "$tree" --tmppath "$dir/genimage-tmp" \
    --inputpath "$dir" --outputpath "$dir" >"$dir/genimage.log" 2>&1 ||
    fail "genimage failed on $tree: $(tail -n1 "$dir/genimage.log")"
rm -rf "$dir/genimage-tmp"
