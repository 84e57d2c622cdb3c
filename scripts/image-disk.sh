#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# image-disk.sh ROOTFS DIR: the Raspberry Pi 4 disk image of the tree ROOTFS as DIR/facegate-pi4.img,
# by genimage (image/genimage.cfg), without loop mounts. Run by make-image.sh for the image and by
# image-test.sh for its test variant.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tree=$1 dir=$2
mkdir -p "$dir"
rm -rf "$dir/genimage-tmp"
if ! genimage --config "$REPO/image/genimage.cfg" --rootpath "$tree" --tmppath "$dir/genimage-tmp" \
    --inputpath "$dir" --outputpath "$dir" >"$dir/genimage.log" 2>&1; then
    echo "image: error: genimage failed on $tree: $(tail -n1 "$dir/genimage.log")" >&2
    exit 1
fi
rm -rf "$dir/genimage-tmp"
