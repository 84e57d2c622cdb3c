#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Cut one face out of a corpus source photo (or just convert it) for scripts/fetch-assets.py.

    make-corpus-crop.py SRC DEST [--box X,Y,W,H]

Writes DEST as an 8-bit RGB PNG: lossless, so cutting a face out of a group photo adds no JPEG
generation loss, and with the pinned Pillow of requirements-tools.txt the bytes are the same on
every run, so models/corpus.toml can pin their sha256.  The EXIF orientation is deliberately not
applied: the gate's decoders do not apply it either, and the box is in stored-pixel coordinates.
"""

import argparse
import sys

from PIL import Image


def parse_box(text: str) -> tuple:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box wants X,Y,W,H in whole pixels, not {text!r}")
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise argparse.ArgumentTypeError(f"--box {text}: x and y must be >= 0, w and h > 0")
    return x, y, w, h


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("--box", type=parse_box)
    a = p.parse_args()
    try:
        img = Image.open(a.src).convert("RGB")
    except OSError as e:
        print(f"make-corpus-crop: error: cannot read {a.src}: {e}", file=sys.stderr)
        return 1
    if a.box:
        x, y, w, h = a.box
        if x + w > img.width or y + h > img.height:
            print(f"make-corpus-crop: error: box {x},{y},{w},{h} lies outside {a.src} "
                  f"({img.width}x{img.height})", file=sys.stderr)
            return 1
        img = img.crop((x, y, x + w, y + h))
    img.save(a.dest, "PNG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
