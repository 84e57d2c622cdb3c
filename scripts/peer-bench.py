#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""The face gate an integrator would write without FaceGate, timed frame by frame.

    peer-bench.py --peer opencv|onnxruntime --video V.avi --detector YUNET.onnx
                  --embedder SFACE.onnx --gallery GALLERY.json --input-size 320 --threads 2

`facegatectl bench peers` runs this (in a throwaway virtual environment with
scripts/requirements-peers.txt) once per peer and model form, next to FaceGate's own pipelines,
and prints the comparison.  Every frame of the video is decoded (cv2.VideoCapture), every face
detected at the same detector input size as FaceGate's fgdetect (the frame scaled so its long
side is --input-size), then aligned, embedded and matched against the gallery, as the peers have
no tracker:

* ``opencv``: cv2.FaceDetectorYN + cv2.FaceRecognizerSF (alignCrop + feature), OpenCV's own
  DNN engine.
* ``onnxruntime``: the same two models through ONNX Runtime's Python API, with the YuNet decoding
  and NMS (numpy) and the 5-point similarity alignment (numpy + cv2.warpAffine) written out as
  OpenCV does them.

Prints one JSON object on stdout: frames, frames per second over the frame loop (model loading
excluded, as for FaceGate), median and p99 per stage (per frame; embedding also per face), CPU
seconds and peak RSS of this process.  Errors: one line on stderr, exit 1.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
MATCH_THRESHOLD = 0.45  # fgmatch's default threshold
YUNET_STRIDES = (8, 16, 32)
# The ArcFace 112x112 template SFace was trained on (landmark order as YuNet's).
ARCFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


class PeerError(Exception):
    """A problem worth a one-line message."""


def percentile(samples, q):
    """Nearest rank on the sorted samples, as `facegatectl bench` computes it."""
    ordered = sorted(samples)
    return ordered[round((len(ordered) - 1) * q)]


def summary(samples_s):
    if not samples_s:
        return None
    return {
        "count": len(samples_s),
        "median_ms": percentile(samples_s, 0.5) * 1e3,
        "p99_ms": percentile(samples_s, 0.99) * 1e3,
        "total_ms": sum(samples_s) * 1e3,
    }


def peak_rss_kib():
    """VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise PeerError("/proc/self/status has no VmHWM")


def detection_size(width, height, input_size):
    """The frame scaled so its long side is input_size (as fgdetect's letterbox does)."""
    r = input_size / max(width, height)
    return max(1, int(width * r + 0.5)), max(1, int(height * r + 0.5)), r


class OpenCvPeer:
    def __init__(self, cv2, np, detector, embedder, input_size, width, height):
        self.cv2, self.np = cv2, np
        self.w, self.h, self.r = detection_size(width, height, input_size)
        self.detector = cv2.FaceDetectorYN.create(str(detector), "", (self.w, self.h), SCORE_THRESHOLD, NMS_THRESHOLD)
        self.recognizer = cv2.FaceRecognizerSF.create(str(embedder), "")

    def detect(self, frame):
        small = self.cv2.resize(frame, (self.w, self.h), interpolation=self.cv2.INTER_LINEAR)
        _, faces = self.detector.detect(small)
        if faces is None:
            return []
        faces = faces.copy()
        faces[:, :14] /= self.r  # back to full-resolution coordinates; column 14 is the score
        return list(faces)

    def embed(self, frame, face):
        aligned = self.recognizer.alignCrop(frame, face)
        feature = self.recognizer.feature(aligned).reshape(-1)
        return feature / self.np.linalg.norm(feature)


class OnnxRuntimePeer:
    def __init__(self, cv2, np, ort, detector, embedder, input_size, width, height, threads):
        self.cv2, self.np = cv2, np
        self.w, self.h, self.r = detection_size(width, height, input_size)
        # YuNet needs multiples of 32 (its FPN); pad bottom/right with zeros as FaceDetectorYN does.
        self.pw, self.ph = -(-self.w // 32) * 32, -(-self.h // 32) * 32
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # FaceGate's setting (plugins/vision/src/runtime.rs): with ONNX Runtime's default, the
        # idle session's pool spins while the other one runs, and on two cores that halves the
        # embedder's speed. The peer gets the same engine settings, not a handicap.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self.yunet = ort.InferenceSession(str(detector), options, providers=providers)
        self.sface = ort.InferenceSession(str(embedder), options, providers=providers)
        self.yunet_input = self.yunet.get_inputs()[0].name
        self.sface_input = self.sface.get_inputs()[0].name
        self.output_names = [o.name for o in self.yunet.get_outputs()]
        self.template = np.array(ARCFACE_TEMPLATE, dtype=np.float64)
        self.padded = np.zeros((1, 3, self.ph, self.pw), dtype=np.float32)
        # Cell centres per stride, computed once.
        self.grids = {}
        for s in YUNET_STRIDES:
            rows, cols = self.ph // s, self.pw // s
            r, c = np.mgrid[0:rows, 0:cols]
            self.grids[s] = (c.reshape(-1).astype(np.float32), r.reshape(-1).astype(np.float32))

    def detect(self, frame):
        np = self.np
        small = self.cv2.resize(frame, (self.w, self.h), interpolation=self.cv2.INTER_LINEAR)
        self.padded[0, :, : self.h, : self.w] = small.transpose(2, 0, 1)  # BGR, raw 0..255
        outputs = dict(zip(self.output_names, self.yunet.run(self.output_names, {self.yunet_input: self.padded})))
        candidates = []
        for s in YUNET_STRIDES:
            cls = np.clip(outputs[f"cls_{s}"][0, :, 0], 0, 1)
            obj = np.clip(outputs[f"obj_{s}"][0, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            keep = np.nonzero(score > SCORE_THRESHOLD)[0]
            if keep.size == 0:
                continue
            col, row = self.grids[s][0][keep], self.grids[s][1][keep]
            b = outputs[f"bbox_{s}"][0, keep]
            k = outputs[f"kps_{s}"][0, keep]
            cx, cy = (col + b[:, 0]) * s, (row + b[:, 1]) * s
            w, h = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
            face = np.empty((keep.size, 15), dtype=np.float32)
            face[:, 0], face[:, 1], face[:, 2], face[:, 3] = cx - w / 2, cy - h / 2, w, h
            face[:, 4:14:2] = (k[:, 0::2] + col[:, None]) * s
            face[:, 5:14:2] = (k[:, 1::2] + row[:, None]) * s
            face[:, 14] = score[keep]
            candidates.append(face)
        if not candidates:
            return []
        faces = np.concatenate(candidates)
        faces = faces[self.nms(faces)]
        faces[:, :14] /= self.r
        return list(faces)

    def nms(self, faces):
        np = self.np
        order = np.argsort(-faces[:, 14], kind="stable")
        x1, y1 = faces[:, 0], faces[:, 1]
        x2, y2 = x1 + faces[:, 2], y1 + faces[:, 3]
        area = faces[:, 2] * faces[:, 3]
        kept = []
        while order.size:
            i = order[0]
            kept.append(i)
            rest = order[1:]
            iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
            ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
            inter = iw * ih
            iou = inter / (area[i] + area[rest] - inter)
            order = rest[iou <= NMS_THRESHOLD]
        return kept

    def similarity_transform(self, landmarks):
        """Least-squares similarity (Umeyama) taking the landmarks onto the template."""
        np = self.np
        src = landmarks.astype(np.float64)
        dst = self.template
        src_mean, dst_mean = src.mean(0), dst.mean(0)
        src_c, dst_c = src - src_mean, dst - dst_mean
        cov = dst_c.T @ src_c / len(src)
        u, d, vt = np.linalg.svd(cov)
        sign = np.ones(2)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            sign[1] = -1
        rotation = u @ np.diag(sign) @ vt
        scale = (d * sign).sum() / src_c.var(0).sum()
        matrix = np.empty((2, 3))
        matrix[:, :2] = scale * rotation
        matrix[:, 2] = dst_mean - scale * rotation @ src_mean
        return matrix

    def embed(self, frame, face):
        np = self.np
        matrix = self.similarity_transform(face[4:14].reshape(5, 2))
        aligned = self.cv2.warpAffine(frame, matrix, (112, 112), flags=self.cv2.INTER_LINEAR,
                                      borderMode=self.cv2.BORDER_CONSTANT, borderValue=0)
        blob = aligned[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # RGB, raw 0..255
        feature = self.sface.run(None, {self.sface_input: blob})[0].reshape(-1)
        return feature / np.linalg.norm(feature)


def run(args):
    try:
        import cv2
        import numpy as np
    except ImportError as e:
        raise PeerError(f"{e}; install scripts/requirements-peers.txt into this Python") from e
    cv2.setNumThreads(args.threads)
    for path in (args.video, args.detector, args.embedder, args.gallery):
        if not path.is_file():
            raise PeerError(f"{path}: no such file")
    gallery = json.loads(args.gallery.read_text())
    ids = [person["id"] for person in gallery]
    enrolled = np.array([person["embedding"] for person in gallery], dtype=np.float32)

    capture = cv2.VideoCapture(str(args.video))
    if not capture.isOpened():
        raise PeerError(f"{args.video}: OpenCV cannot open the video")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if args.peer == "opencv":
        peer = OpenCvPeer(cv2, np, args.detector, args.embedder, args.input_size, width, height)
        engine = f"OpenCV {cv2.__version__}"
    else:
        import onnxruntime as ort

        peer = OnnxRuntimePeer(cv2, np, ort, args.detector, args.embedder, args.input_size, width, height, args.threads)
        engine = f"ONNX Runtime {ort.__version__} (Python), OpenCV {cv2.__version__} for decode/resize/warp"

    decode, detect, embed_frame, embed_face, match = [], [], [], [], []
    frames = faces_seen = identified = 0
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ok, frame = capture.read()
        t1 = time.perf_counter()
        if not ok:
            break
        decode.append(t1 - t0)
        faces = peer.detect(frame)
        t2 = time.perf_counter()
        detect.append(t2 - t1)
        embeddings = []
        for face in faces:
            t = time.perf_counter()
            embeddings.append(peer.embed(frame, face))
            embed_face.append(time.perf_counter() - t)
        t3 = time.perf_counter()
        if faces:
            embed_frame.append(t3 - t2)
        for embedding in embeddings:
            scores = enrolled @ embedding
            best = int(np.argmax(scores))
            identified += bool(scores[best] >= MATCH_THRESHOLD)
        if embeddings:
            match.append(time.perf_counter() - t3)
        frames += 1
        faces_seen += len(faces)
    elapsed = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    if frames == 0:
        raise PeerError(f"{args.video}: OpenCV decoded no frames")
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    return {
        "peer": args.peer,
        "engine": engine,
        "detector": args.detector.name,
        "embedder": args.embedder.name,
        "threads": args.threads,
        "input_size": args.input_size,
        "frames": frames,
        "faces": faces_seen,
        "faces_embedded": faces_seen,
        "faces_identified": identified,
        "seconds": elapsed,
        "fps": frames / elapsed,
        "cpu_seconds": cpu,
        "peak_rss_kib": peak_rss_kib(),
        "stages": {
            "decode": summary(decode),
            "detect": summary(detect),
            "embed (frames with faces)": summary(embed_frame),
            "embed per face": summary(embed_face),
            "match (frames with faces)": summary(match),
        },
        "known": ids,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", required=True, choices=("opencv", "onnxruntime"))
    ap.add_argument("--video", required=True, type=Path)
    ap.add_argument("--detector", required=True, type=Path, help="YuNet 2023mar ONNX file")
    ap.add_argument("--embedder", required=True, type=Path, help="SFace 2021dec ONNX file")
    ap.add_argument("--gallery", required=True, type=Path, help='JSON: [{"id": ..., "embedding": [...]}, ...]')
    ap.add_argument("--input-size", type=int, default=320, help="detector input, long side in pixels")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="inference threads")
    args = ap.parse_args()
    try:
        print(json.dumps(run(args)))
    except PeerError as e:
        print(f"peer-bench: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything unforeseen still gets one readable line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"peer-bench: error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
