#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Turn the raw OpenCV Zoo models into the ONNX files FaceGate loads.

    prepare-models.py --raw .assets/models --out .assets/models [--photos .assets/photos]

Outputs (one summary line each on stdout):

* ``facegate_sface_2021dec_prelu.onnx`` -- SFace with the unused graph inputs dropped and the
  block-quantized int8 weights constant-folded to fp32.  The int8bq file lists 174 graph
  inputs that are really initializers or unused, and ONNX Runtime then insists on being fed
  them; its block-quantized DequantizeLinear nodes also run on every inference, which costs
  about twice the time of plain fp32 weights.  Checked: cosine to the int8 model >= 0.999.
  This is the form OpenCV's DNN engine runs fastest (it fuses PRelu into the convolution), so
  the peer benchmark gives it to OpenCV.
* ``facegate_sface_2021dec.onnx`` -- the same network with every per-channel PRelu written as
  ``x*s + Relu(x)*(1-s)``, which is what FaceGate runs.  ONNX Runtime's CPU PRelu kernel took
  16 of SFace's 28 ms (one thread) and breaks its NCHWc convolution chain; Relu, Mul and Add
  fold into the convolutions instead, halving the time.  Checked: cosine to the int8 model
  >= 0.999 (1.0000000).
* ``facegate_yunet_2023mar.onnx`` -- YuNet with symbolic input height/width, so one model
  serves every camera resolution.  The network is fully convolutional but the export pinned
  the input to 640x640.  Checked: identical to the original at 640x640 and
  N = (H/s)*(W/s) rows per output at several sizes.  H and W must be multiples of 32 (the
  FPN upsamples stride-32 features and adds them to stride-16 ones), which is why OpenCV's
  FaceDetectorYN pads its input to a multiple of 32.

The script is idempotent: outputs are rebuilt deterministically, verified, and only
replaced when their bytes change.  Any problem ends it with a one-line message and exit 1.
"""

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

SFACE_RAW = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_OUT = "facegate_sface_2021dec.onnx"
SFACE_PRELU_OUT = "facegate_sface_2021dec_prelu.onnx"
YUNET_RAW = "face_detection_yunet_2023mar.onnx"
YUNET_OUT = "facegate_yunet_2023mar.onnx"

# The surgery below is written for these exact files (models/manifest.toml); a different
# file would need re-inspection, so refuse it rather than produce something subtly wrong.
RAW_SHA256 = {
    SFACE_RAW: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    YUNET_RAW: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
}

MIN_COSINE = 0.999
YUNET_STRIDES = (8, 16, 32)
YUNET_HEADS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}  # output name prefix -> columns
YUNET_EXPORT_SIZE = 640
YUNET_CHECK_SIZES = ((640, 640), (480, 640), (320, 320), (160, 160))  # (H, W)


class PrepareError(Exception):
    """A problem worth a one-line message (bad input file, failed check, ...)."""


# --------------------------------------------------------------------------- helpers


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_raw(raw_dir: Path, name: str) -> onnx.ModelProto:
    path = raw_dir / name
    if not path.is_file():
        raise PrepareError(f"missing raw model {path}")
    digest = sha256_of(path)
    if digest != RAW_SHA256[name]:
        raise PrepareError(f"{path}: sha256 {digest} is not the expected {RAW_SHA256[name]}")
    return onnx.load(str(path))


def used_tensor_names(graph: onnx.GraphProto) -> set:
    """Every tensor name read by a node, including nodes inside subgraphs (If/Loop bodies
    may read outer-scope tensors), plus the graph outputs."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(i for i in node.input if i)
        for attr in node.attribute:
            subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subgraphs:
                used |= used_tensor_names(sub)
    return used


def prune_graph_inputs(graph: onnx.GraphProto) -> int:
    """Drop graph inputs that are initializers or that no node reads.  Listing initializers
    as inputs (old IR habit) makes them overridable, and ONNX Runtime then asks callers for
    them; the SFace export has 174 of those."""
    init_names = {i.name for i in graph.initializer}
    used = used_tensor_names(graph)
    keep = [i for i in graph.input if i.name not in init_names and i.name in used]
    dropped = len(graph.input) - len(keep)
    del graph.input[:]
    graph.input.extend(keep)
    return dropped


def dequantize(node: onnx.NodeProto, inits: dict) -> np.ndarray:
    """Evaluate a constant DequantizeLinear, following the opset-21 definition:
    per-tensor (scalar scale), per-axis (1-D scale along `axis`) or blocked (scale has x's
    shape except along `axis`, where it has ceil(n / block_size) entries)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x = numpy_helper.to_array(inits[node.input[0]])
    scale = numpy_helper.to_array(inits[node.input[1]])
    zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
    axis = attrs.get("axis", 1)
    block = attrs.get("block_size", 0)
    if axis < 0:
        axis += x.ndim
    out_dtype = scale.dtype

    def expand(t: np.ndarray) -> np.ndarray:
        if t.ndim == 0 or t.size == 1 and block == 0:
            return t.reshape(())  # per-tensor: plain broadcast
        if block == 0:  # per-axis: 1-D along `axis`
            if t.ndim != 1 or t.shape[0] != x.shape[axis]:
                raise PrepareError(f"{node.output[0]}: per-axis scale shape {t.shape} does not fit x {x.shape}")
            shape = [1] * x.ndim
            shape[axis] = t.shape[0]
            return t.reshape(shape)
        # Blocked: repeat each scale block_size times along axis; the last block may be short.
        expected = list(x.shape)
        expected[axis] = -(-x.shape[axis] // block)
        if list(t.shape) != expected:
            raise PrepareError(f"{node.output[0]}: blocked scale shape {t.shape} != expected {tuple(expected)}")
        return np.take(np.repeat(t, block, axis=axis), np.arange(x.shape[axis]), axis=axis)

    # Integer types are exact in float32 up to 2^24, so this matches the runtime's arithmetic.
    xf = x.astype(np.float32)
    if zp is not None:
        xf = xf - expand(zp).astype(np.float32)
    return (xf * expand(scale).astype(np.float32)).astype(out_dtype)


def fold_constants(graph: onnx.GraphProto) -> tuple:
    """Replace DequantizeLinear (and the weight Reshape that follows each one) by initializers
    when all of their inputs are initializers.  Folding the Reshape too leaves Conv weights
    as plain initializers, which every runtime (ORT prepacking, OpenCV's importer) handles
    best.  Returns (dequantize_folded, reshape_folded)."""
    inits = {i.name: i for i in graph.initializer}
    folded = {"DequantizeLinear": 0, "Reshape": 0}
    keep = []
    for node in graph.node:  # nodes are topologically sorted, so one pass suffices
        if node.op_type in folded and node.domain in ("", "ai.onnx") and all(
            (not name) or name in inits for name in node.input
        ):
            if node.op_type == "DequantizeLinear":
                value = dequantize(node, inits)
            else:
                data = numpy_helper.to_array(inits[node.input[0]])
                shape = numpy_helper.to_array(inits[node.input[1]])
                # allowzero=0 semantics: a 0 copies the input dim.
                shape = [data.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
                value = data.reshape(shape)
            tensor = numpy_helper.from_array(value, node.output[0])
            graph.initializer.append(tensor)
            inits[node.output[0]] = tensor
            folded[node.op_type] += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return folded["DequantizeLinear"], folded["Reshape"]


def prune_initializers(graph: onnx.GraphProto) -> int:
    used = used_tensor_names(graph)
    keep = [i for i in graph.initializer if i.name in used]
    dropped = len(graph.initializer) - len(keep)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return dropped


def prune_value_info(graph: onnx.GraphProto, keep_names: set) -> None:
    keep = [v for v in graph.value_info if v.name in keep_names]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def fix_ir_version(model: onnx.ModelProto) -> None:
    """The SFace file says IR 6 with opset 21, which the checker rejects (opset 21 needs
    IR 10).  Raise the IR version to the minimum the opsets need; never lower it."""
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = max(model.ir_version, needed)


def check(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # checker raises several types; one line is enough
        raise PrepareError(f"{what}: onnx checker: {str(e).splitlines()[0]}") from e


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the raw SFace file warns about its leftover inputs
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def median_ms(sess: ort.InferenceSession, feed: dict, runs: int) -> float:
    sess.run(None, feed)  # warm-up: first run allocates and prepacks
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def load_photo(photos_dir: Path):
    """First photo (by name) as an RGB uint8 HxWx3 array, or None when there is none; the
    checks then fall back to synthetic input and say so."""
    if photos_dir is None or not photos_dir.is_dir():
        return None, None
    files = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        return None, None
    from PIL import Image  # only needed for the natural-image checks

    with Image.open(files[0]) as im:
        return np.asarray(im.convert("RGB")), files[0].name


def resize_rgb(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def write_if_changed(model: onnx.ModelProto, path: Path) -> str:
    """Atomically replace `path` only if the serialized model differs, so reruns are no-ops."""
    data = model.SerializeToString(deterministic=True) if _supports_deterministic() else model.SerializeToString()
    if path.is_file() and path.read_bytes() == data:
        return "unchanged"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file 0600; give it the usual umask-derived mode instead.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return "written"


def _supports_deterministic() -> bool:
    try:
        onnx.ModelProto().SerializeToString(deterministic=True)
        return True
    except TypeError:
        return False


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64)
    b = b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------- SFace


def rewrite_prelu(graph: onnx.GraphProto) -> int:
    """Replace each PRelu(x, s) whose slope is a constant by x*s + Relu(x)*(1-s), exact for any
    slope (SFace's range from -0.81 to 1.12, so max(x, s*x) would not do).  Returns how many."""
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    rewritten = 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            nodes.append(node)
            continue
        x, slope = node.input
        (y,) = node.output
        stem = node.name or y
        complement = numpy_helper.from_array(
            (1 - numpy_helper.to_array(inits[slope])).astype(np.float32), f"{stem}/one_minus_slope"
        )
        graph.initializer.append(complement)
        nodes += [
            onnx.helper.make_node("Mul", [x, slope], [f"{stem}/negative_part"], name=f"{stem}/mul_slope"),
            onnx.helper.make_node("Relu", [x], [f"{stem}/relu"], name=f"{stem}/relu"),
            onnx.helper.make_node("Mul", [f"{stem}/relu", complement.name], [f"{stem}/positive_part"],
                                  name=f"{stem}/mul_complement"),
            onnx.helper.make_node("Add", [f"{stem}/negative_part", f"{stem}/positive_part"], [y], name=f"{stem}/add"),
        ]
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def prepare_sface(raw_dir: Path, out_dir: Path, photo, photo_name, threads: int, runs: int) -> str:
    model = load_raw(raw_dir, SFACE_RAW)
    g = model.graph
    n_dropped_inputs = prune_graph_inputs(g)
    # The int8 baseline is the raw model with only the inputs pruned: that is what ORT
    # would run if we did nothing else.
    int8 = onnx.ModelProto()
    int8.CopyFrom(model)

    n_dq, n_reshape = fold_constants(g)
    n_dead = prune_initializers(g)
    produced = {o for n in g.node for o in n.output}
    prune_value_info(g, produced)  # value_info of folded tensors would now describe initializers
    fix_ir_version(model)
    if any(n.op_type == "DequantizeLinear" for n in g.node):
        raise PrepareError("SFace: some DequantizeLinear nodes have non-constant inputs and were not folded")
    check(model, SFACE_PRELU_OUT)

    ins = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in g.input]
    outs = [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in g.output]
    if ins != [("data", [1, 3, 112, 112])] or outs != [("fc1", [1, 128])]:
        raise PrepareError(f"SFace: unexpected interface after surgery: inputs {ins} outputs {outs}")

    prelu = onnx.ModelProto()
    prelu.CopyFrom(model)
    n_prelu = rewrite_prelu(g)
    check(model, SFACE_OUT)

    s_int8 = session(int8, threads)
    s_prelu = session(prelu, threads)
    s_fp32 = session(model, threads)

    # Natural input: the centre half of a photo (portraits, so roughly the face), RGB 0..255
    # NCHW, as FaceGate feeds aligned crops.  Random input catches errors a smooth image hides.
    if photo is not None:
        h, w = photo.shape[:2]
        side = min(h, w) // 2
        y0, x0 = (h - side) // 2, (w - side) // 2
        crop = resize_rgb(photo[y0 : y0 + side, x0 : x0 + side], 112, 112)
        real = crop.astype(np.float32).transpose(2, 0, 1)[None]
        real_label = f"photo {photo_name}"
    else:
        yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
        real = np.stack([128 + 100 * np.sin(xx / 9 + c) * np.cos(yy / 13) for c in range(3)])[None]
        real_label = "synthetic (no photo found)"
    rnd = np.random.default_rng(0).uniform(0, 255, size=(1, 3, 112, 112)).astype(np.float32)

    cos = {}
    for label, x in (("real", real), ("random", rnd)):
        a = s_int8.run(["fc1"], {"data": x})[0]
        for form, sess in (("prelu", s_prelu), ("rewritten", s_fp32)):
            cos[label, form] = cosine(a, sess.run(["fc1"], {"data": x})[0])
            if not cos[label, form] >= MIN_COSINE:
                raise PrepareError(
                    f"SFace: fp32 ({form})/int8 cosine on {label} input is {cos[label, form]:.5f} < {MIN_COSINE}"
                )

    t_int8 = median_ms(s_int8, {"data": real}, runs)
    t_prelu = median_ms(s_prelu, {"data": real}, runs)
    t_fp32 = median_ms(s_fp32, {"data": real}, runs)

    prelu_path = out_dir / SFACE_PRELU_OUT
    prelu_state = write_if_changed(prelu, prelu_path)
    path = out_dir / SFACE_OUT
    state = write_if_changed(model, path)
    return (
        f"{path}: {state}; {prelu_path.name}: {prelu_state}; in data[1,3,112,112] out fc1[1,128]; "
        f"dropped {n_dropped_inputs} unused inputs, folded {n_dq} DequantizeLinear + {n_reshape} Reshape, "
        f"removed {n_dead} dead initializers, rewrote {n_prelu} PRelu; cosine to int8: prelu form "
        f"{cos['real', 'prelu']:.7f} / rewritten {cos['real', 'rewritten']:.7f} ({real_label}), "
        f"{cos['random', 'prelu']:.7f} / {cos['random', 'rewritten']:.7f} (random); "
        f"median of {runs} ({threads} threads): int8 {t_int8:.1f} ms, fp32 prelu form {t_prelu:.1f} ms, "
        f"rewritten {t_fp32:.1f} ms; sha256 {sha256_of(path)[:16]}"
    )


# --------------------------------------------------------------------------- YuNet


def spatial_literals(size: int) -> set:
    """Numbers an export at `size` x `size` may have baked in: the size itself, each stride's
    feature-map side and its cell count."""
    vals = {size, size * size}
    for s in YUNET_STRIDES:
        vals |= {size // s, (size // s) ** 2}
    return vals


def make_yunet_dynamic(model: onnx.ModelProto) -> int:
    """Make input H/W and output N symbolic and remove size literals.  Returns how many
    Reshape targets were rewritten."""
    g = model.graph
    if len(g.input) != 1 or [d.dim_value for d in g.input[0].type.tensor_type.shape.dim] != [
        1,
        3,
        YUNET_EXPORT_SIZE,
        YUNET_EXPORT_SIZE,
    ]:
        raise PrepareError(f"YuNet: expected one input [1,3,{YUNET_EXPORT_SIZE},{YUNET_EXPORT_SIZE}]")

    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in ((dims[2], "height"), (dims[3], "width")):
        d.Clear()
        d.dim_param = name

    expected_outputs = {f"{h}_{s}" for h in YUNET_HEADS for s in YUNET_STRIDES}
    if {o.name for o in g.output} != expected_outputs:
        raise PrepareError(f"YuNet: unexpected outputs {[o.name for o in g.output]}")
    for o in g.output:
        stride = o.name.split("_")[1]
        d = o.type.tensor_type.shape.dim[1]
        d.Clear()
        d.dim_param = f"cells_{stride}"  # (height/stride) * (width/stride)

    # Shapes inferred for 640x640 would contradict any other size.
    del g.value_info[:]

    literals = spatial_literals(YUNET_EXPORT_SIZE)
    inits = {i.name: i for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    rewritten = 0
    for n in g.node:
        if n.op_type == "Reshape":
            if n.input[1] not in inits:
                continue  # computed at run time from Shape: already dynamic
            init = inits[n.input[1]]
            target = numpy_helper.to_array(init).astype(np.int64)
            # Dim 0 is the batch (1) and the last is the per-cell column count; only the
            # ones in between can carry the cell count.
            baked = [k for k in range(1, len(target) - 1) if int(target[k]) in literals]
            if not baked:
                continue
            if len(baked) > 1 or -1 in target:
                raise PrepareError(f"YuNet: Reshape {n.name or n.output[0]} target {target.tolist()} has several size literals")
            target[baked[0]] = -1
            if len(consumers[n.input[1]]) > 1:
                # Shared with something else: give this Reshape its own copy.
                new = numpy_helper.from_array(target, f"{n.input[1]}_dynamic_{rewritten}")
                g.initializer.append(new)
                n.input[1] = new.name
            else:
                init.CopyFrom(numpy_helper.from_array(target, init.name))
            rewritten += 1
        elif n.op_type in ("Resize", "Upsample"):
            # Fixed output sizes would pin the feature maps; scales are fine.
            sizes = n.input[3] if n.op_type == "Resize" and len(n.input) > 3 else ""
            if sizes:
                raise PrepareError(f"YuNet: Resize {n.name or n.output[0]} uses fixed 'sizes'; needs rewriting to scales")
        elif n.op_type in ("Expand", "Tile", "ConstantOfShape", "Slice"):
            for i in n.input:
                if i in inits and set(numpy_helper.to_array(inits[i]).ravel().tolist()) & literals:
                    raise PrepareError(f"YuNet: {n.op_type} {n.name or n.output[0]} has a size literal in {i}")
    return rewritten


def prepare_yunet(raw_dir: Path, out_dir: Path, photo, photo_name, threads: int, runs: int) -> str:
    original = load_raw(raw_dir, YUNET_RAW)
    model = onnx.ModelProto()
    model.CopyFrom(original)
    rewritten = make_yunet_dynamic(model)
    check(model, YUNET_OUT)
    # Strict symbolic shape inference must get through the whole graph with unknown H, W.
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise PrepareError(f"YuNet: shape inference with symbolic H/W failed: {str(e).splitlines()[0]}") from e

    s_orig = session(original, threads)
    s_dyn = session(model, threads)
    in_name = s_dyn.get_inputs()[0].name
    if s_dyn.get_inputs()[0].shape != [1, 3, "height", "width"]:
        raise PrepareError(f"YuNet: ORT sees input shape {s_dyn.get_inputs()[0].shape}")
    names = [o.name for o in s_dyn.get_outputs()]

    # Same answers as the original at its own size, on a natural image (BGR 0..255, as
    # FaceDetectorYN feeds it) and on noise.
    size = YUNET_EXPORT_SIZE
    feeds = [("random", np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32))]
    if photo is not None:
        bgr = resize_rgb(photo, size, size)[:, :, ::-1]
        feeds.insert(0, (f"photo {photo_name}", bgr.astype(np.float32).transpose(2, 0, 1)[None].copy()))
    max_diff = 0.0
    for label, x in feeds:
        for name, a, b in zip(names, s_orig.run(names, {in_name: x}), s_dyn.run(names, {in_name: x})):
            if a.shape != b.shape:
                raise PrepareError(f"YuNet: {name} shape {b.shape} != original {a.shape} at {size}x{size} ({label})")
            max_diff = max(max_diff, float(np.max(np.abs(a - b))))
    if max_diff > 1e-4:
        raise PrepareError(f"YuNet: outputs differ from the original by {max_diff:.2e} > 1e-4 at {size}x{size}")

    timings = []
    for h, w in YUNET_CHECK_SIZES:
        feed = {in_name: np.zeros((1, 3, h, w), np.float32)}
        for name, out in zip(names, s_dyn.run(names, feed)):
            head, stride = name.split("_")
            stride = int(stride)
            want = (1, (h // stride) * (w // stride), YUNET_HEADS[head])
            if out.shape != want:
                raise PrepareError(f"YuNet: at {h}x{w} {name} has shape {out.shape}, expected {want}")
        timings.append(f"{h}x{w} {median_ms(s_dyn, feed, runs):.2f} ms")

    path = out_dir / YUNET_OUT
    state = write_if_changed(model, path)
    return (
        f"{path}: {state}; in {in_name}[1,3,height,width] (multiples of 32) out cls/obj_{{8,16,32}}[1,N,1] "
        f"bbox_*[1,N,4] kps_*[1,N,10] N=(H/s)*(W/s); {rewritten} Reshape targets rewritten; "
        f"max|diff| vs original at 640x640 {max_diff:.1e}; rows OK at "
        f"{', '.join(f'{h}x{w}' for h, w in YUNET_CHECK_SIZES)}; median of {runs} ({threads} threads, HxW): "
        f"{', '.join(timings)}; sha256 {sha256_of(path)[:16]}"
    )


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw", required=True, type=Path, help="directory with the downloaded raw models")
    ap.add_argument("--out", required=True, type=Path, help="directory for the prepared models")
    ap.add_argument(
        "--photos",
        type=Path,
        help="photos for the natural-image checks (default: RAW/../photos; synthetic input if none)",
    )
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per measurement (default 20)")
    args = ap.parse_args()

    try:
        if not args.raw.is_dir():
            raise PrepareError(f"--raw {args.raw} is not a directory")
        args.out.mkdir(parents=True, exist_ok=True)
        photos = args.photos if args.photos is not None else args.raw.parent / "photos"
        photo, photo_name = load_photo(photos)
        print(prepare_sface(args.raw, args.out, photo, photo_name, args.threads, args.runs), flush=True)
        print(prepare_yunet(args.raw, args.out, photo, photo_name, args.threads, args.runs), flush=True)
    except PrepareError as e:
        print(f"prepare-models: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything unforeseen still gets one readable line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"prepare-models: error: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
