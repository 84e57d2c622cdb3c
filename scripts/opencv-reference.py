#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Record OpenCV's face detections and SFace embeddings for the test photos.

    opencv-reference.py --photos .assets/photos --models .assets/models \
                        --out tests/fixtures/opencv_reference.json

OpenCV's FaceDetectorYN / FaceRecognizerSF are the published reference implementations of
YuNet and SFace, so the Rust detector and embedder are tested against what they answer on
real photos.  The detection rule below is deliberately the same one the Rust detector uses
(fit the long side to `input_size`, detect, map back by 1/r); change both together.

--models must hold the original YuNet export (face_detection_yunet_2023mar.onnx) and the
SFace model made by prepare-models.py in the PRelu form OpenCV runs best (facegate_sface_2021dec_prelu.onnx).  If OpenCV cannot load
the latter, the int8 original is tried (the JSON records which one was used).
"""

import argparse
import hashlib
import itertools
import json
import math
import re
import sys
from pathlib import Path

import cv2
import numpy as np

YUNET = "face_detection_yunet_2023mar.onnx"
SFACE = "facegate_sface_2021dec_prelu.onnx"
SFACE_FALLBACK = "face_recognition_sface_2021dec_int8bq.onnx"

SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000
INPUT_SIZES = (640, 320)  # 640 is the main reference; 320 checks the small input size

METHOD = (
    "Per photo (sorted by name): img = cv2.imread(path) (BGR, w x h). For input_size S: "
    "r = S / max(w, h); sw = floor(w*r + 0.5), sh = floor(h*r + 0.5) (round half up, like Rust f64::round); "
    "scaled = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR); "
    f"det = cv2.FaceDetectorYN.create({YUNET}, '', (sw, sh), score_threshold={SCORE_THRESHOLD}, "
    f"nms_threshold={NMS_THRESHOLD}, top_k={TOP_K}); rows = det.detect(scaled)[1] "
    "(FaceDetectorYN zero-pads the image bottom/right to a multiple of 32 before the network, decodes "
    "score = sqrt(clamp01(cls)*clamp01(obj)), then NMS; rows come in NMS keep order, best score first); "
    "each row [x, y, w, h, 5 x (lx, ly), score] has its box and landmarks divided by r to get "
    "original-image coordinates (landmark order: right eye, left eye, nose tip, right mouth corner, "
    "left mouth corner, i.e. the first is the left-most eye in the image). "
    "Embedding: rec = cv2.FaceRecognizerSF.create(sface_model, ''); aligned = rec.alignCrop(img, row_in_original_coords) "
    "(5-point similarity onto the 112x112 ArcFace template); feat = rec.feature(aligned) "
    "(RGB, raw 0..255); embedding = feat / ||feat||. pairs: cosine of the first faces of every pair of photos "
    "that give exactly one face at input_size 640. Numbers are float32 values written in their shortest form."
)


class ReferenceError(Exception):
    """A problem worth a one-line message."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def f32(v) -> float:
    """A float32 as the double with the same shortest decimal form, so the JSON holds e.g.
    0.1234567 instead of 0.12345670163631439 and still round-trips to the same float32."""
    return float(str(np.float32(v)))


def scaled_size(w: int, h: int, input_size: int):
    # Round half up explicitly: Python's round() rounds half to even, Rust's f64::round does not.
    r = input_size / max(w, h)
    return r, int(math.floor(w * r + 0.5)), int(math.floor(h * r + 0.5))


def detect(img: np.ndarray, yunet_path: Path, input_size: int):
    """Detect with the shared rule; returns (r, (sw, sh), rows in original coordinates)."""
    h, w = img.shape[:2]
    r, sw, sh = scaled_size(w, h, input_size)
    scaled = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
    det = cv2.FaceDetectorYN.create(str(yunet_path), "", (sw, sh), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K)
    _, rows = det.detect(scaled)
    if rows is None:
        rows = np.zeros((0, 15), np.float32)
    # Box x, y, w, h and the 10 landmark coordinates go back by 1/r (in double, then float32
    # as OpenCV's rows are); the score stays.
    rows = rows.astype(np.float64)
    rows[:, :14] /= r
    return r, (sw, sh), rows.astype(np.float32)


def embed(rec, img: np.ndarray, row: np.ndarray) -> np.ndarray:
    aligned = rec.alignCrop(img, row)
    feat = rec.feature(aligned).astype(np.float64).ravel()
    return (feat / np.linalg.norm(feat)).astype(np.float32)


def face_record(row: np.ndarray, emb: np.ndarray) -> dict:
    return {
        "bbox": [f32(v) for v in row[0:4]],
        "landmarks": [[f32(row[4 + 2 * i]), f32(row[5 + 2 * i])] for i in range(5)],
        "score": f32(row[14]),
        "embedding": [f32(v) for v in emb],
    }


def load_recognizer(models: Path):
    """FaceRecognizerSF on the prepared fp32 SFace, falling back to the int8 original."""
    errors = []
    for name in (SFACE, SFACE_FALLBACK):
        path = models / name
        if not path.is_file():
            errors.append(f"{name}: missing")
            continue
        try:
            rec = cv2.FaceRecognizerSF.create(str(path), "")
            rec.feature(np.zeros((112, 112, 3), np.uint8))  # loading is lazy in some versions: force it
            return rec, path, errors
        except cv2.error as e:
            errors.append(f"{name}: OpenCV cannot load it ({str(e).strip().splitlines()[-1]})")
    raise ReferenceError("no usable SFace model: " + "; ".join(errors))


def dump_json(data: dict, path: Path) -> None:
    """Indented JSON, but arrays of plain numbers on one line so embeddings stay readable."""
    text = json.dumps(data, indent=2)
    number_array = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")
    text = number_array.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, type=Path, help="directory of *.jpg test photos")
    ap.add_argument("--models", required=True, type=Path, help=f"directory with {YUNET} and {SFACE}")
    ap.add_argument("--out", required=True, type=Path, help="JSON file to write")
    args = ap.parse_args()

    # OpenCV 5's new DNN engine warns once per net that it ignores setPreferableTarget;
    # that noise would bury the summary.
    if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    try:
        yunet = args.models / YUNET
        if not yunet.is_file():
            raise ReferenceError(f"missing {yunet}")
        photos = sorted(args.photos.glob("*.jpg"))
        if not photos:
            raise ReferenceError(f"no *.jpg in {args.photos}")
        rec, sface, load_notes = load_recognizer(args.models)
        for note in load_notes:
            print(f"note: {note}", file=sys.stderr)

        entries = []
        for p in photos:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ReferenceError(f"OpenCV cannot read {p}")
            h, w = img.shape[:2]
            entry = {"file": p.name, "width": w, "height": h}
            for size in INPUT_SIZES:
                r, (sw, sh), rows = detect(img, yunet, size)
                faces = [face_record(row, embed(rec, img, row)) for row in rows]
                # The 640 run is the main record; other sizes get suffixed keys.
                sfx = "" if size == INPUT_SIZES[0] else f"_{size}"
                entry[f"input_size{sfx}"] = size
                entry[f"scale{sfx}"] = r  # exact double: the Rust side recomputes the same r
                entry[f"scaled_size{sfx}"] = [sw, sh]
                entry[f"faces{sfx}"] = faces
            entries.append(entry)

        single = [e for e in entries if len(e["faces"]) == 1]
        pairs = []
        for a, b in itertools.combinations(single, 2):
            ea = np.asarray(a["faces"][0]["embedding"], np.float64)
            eb = np.asarray(b["faces"][0]["embedding"], np.float64)
            pairs.append({"name_a": a["file"], "name_b": b["file"], "cosine": f32(ea @ eb)})

        data = {
            "opencv_version": cv2.__version__,
            "models": {
                "detector": {"file": YUNET, "sha256": sha256_of(yunet)},
                "embedder": {"file": sface.name, "sha256": sha256_of(sface)},
            },
            "method": METHOD,
            "score_threshold": SCORE_THRESHOLD,
            "nms_threshold": NMS_THRESHOLD,
            "top_k": TOP_K,
            "photos": entries,
            "pairs": pairs,
        }
        dump_json(data, args.out)
    except ReferenceError as e:
        print(f"opencv-reference: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything unforeseen still gets one readable line
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        print(f"opencv-reference: error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1

    print_summary(data)
    print(f"wrote {args.out} (OpenCV {cv2.__version__}, embedder {sface.name})")
    return 0


def print_summary(data: dict) -> None:
    """Faces per photo at each size, then the cosine matrix of the single-face photos."""
    print(f"{'photo':<16} {'WxH':>10} {'faces@640':>9} {'faces@320':>9}  scores@640")
    for e in data["photos"]:
        scores = " ".join(f"{f['score']:.3f}" for f in e["faces"])
        print(f"{e['file']:<16} {e['width']:>4}x{e['height']:<5} {len(e['faces']):>9} {len(e['faces_320']):>9}  {scores}")

    names = [e["file"] for e in data["photos"] if len(e["faces"]) == 1]
    cos = {(p["name_a"], p["name_b"]): p["cosine"] for p in data["pairs"]}
    short = [Path(n).stem for n in names]
    width = max(len(s) for s in short) + 1 if short else 8
    print()
    print(" " * width + "".join(f"{s[:10]:>11}" for s in short))
    for a, sa in zip(names, short):
        cells = []
        for b in names:
            v = 1.0 if a == b else cos.get((a, b), cos.get((b, a)))
            cells.append(f"{v:>11.3f}")
        print(f"{sa:<{width}}" + "".join(cells))


if __name__ == "__main__":
    sys.exit(main())
