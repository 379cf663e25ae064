#!/usr/bin/env python3
"""Rewrites the LEADER graph that the `afis` package ships (a tf2onnx export of a Keras model)
into an equivalent graph that ONNX Runtime runs about twice as fast on a CPU, and checks the
result against the original.

The export spells every high-level operation as a chain of element-wise nodes, each a full pass
over a feature map, with transposes between NHWC and NCHW around many of them. The rewrite
keeps the network's mathematics (float32 throughout, no quantisation) and changes only how it
is spelled, in named stages:

1. `fuse_gelu`: every tanh-GELU chain (8 nodes and two transposes) becomes one `FastGelu`
   (ONNX Runtime's contrib op computing the same tanh approximation).
2. `convnext_mlps_to_matmul`: each ConvNeXt block's LayerNorm -> 1x1 expand -> GELU -> 1x1
   reduce runs in NHWC as LayerNormalization, MatMul, FastGelu with bias, MatMul: GEMMs with
   pre-packed weights, and no blocked-layout reorders of the 4x-wide hidden tensor.
3. `fold_layernorms`: the remaining channel LayerNorms compute their moments with a 1x1
   convolution of constant weight 1/C, and their scale and shift are folded into the
   neighbouring 1x1 convolution where there is one.
4. `direct_dilated_convs`: the SpaceToBatch / BatchToSpace form tf2onnx gives atrous
   convolutions becomes one Conv with `dilations`.
5. `nearest_resize`: the Tile/Reshape form of 2x nearest upsampling becomes one Resize.
6. `pointwise_convs_to_gemm`: the remaining 1x1 convolutions become Gemm (batch 1), which ONNX
   Runtime does not wrap in NCHWc layout conversions.

The output is bit-reproducible: the only arithmetic on weights is element-wise float64 on
float32 values and sums taken with `math.fsum` (correctly rounded, independent of the CPU's
vector width), so the manifest pins its sha256 like any download.

`--check` runs the original and the rewrite with ONNX Runtime on the given images and fails
unless, on every image, the minutiae decoded from both (as the engine decodes them) agree:
same count within `--count-tolerance`, and at least `--agreement` of the original's minutiae
found within 2 px and 5 degrees. The largest output differences are reported.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """The node list of a model with producer/consumer maps, rebuilt after each edit."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.refresh()

    def refresh(self) -> None:
        self.producer = {}
        self.consumers = collections.defaultdict(list)
        for n in self.g.node:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.consumers[i].append(n)

    def const(self, name: str):
        """The value of an initializer or Constant node, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(p.attribute[0].t)
        return None

    def const_input(self, node_name: str):
        """The one constant input of a binary node (the other is the data)."""
        node = self.node(node_name)
        return next(c for c in (self.const(i) for i in node.input) if c is not None)

    def add_init(self, name: str, value) -> str:
        t = numpy_helper.from_array(np.asarray(value), name)
        self.g.initializer.append(t)
        self.inits[name] = t
        return name

    def node(self, name: str):
        return next((n for n in self.g.node if n.name == name), None)

    def replace_uses(self, old: str, new: str) -> None:
        if any(o.name == old for o in self.g.output):
            raise RuntimeError(f"{old} is a graph output")
        for n in self.g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new

    def remove(self, nodes) -> None:
        names = {n.name for n in nodes}
        assert all(names), "unnamed node"
        keep = [n for n in self.g.node if n.name not in names]
        del self.g.node[:]
        self.g.node.extend(keep)

    def insert_before(self, anchor, new_nodes) -> None:
        """Inserts at the anchor's position, which keeps the list topologically sorted when the
        new nodes' inputs are produced before the anchor."""
        nodes = list(self.g.node)
        k = next(i for i, n in enumerate(nodes) if n.name == anchor.name)
        for j, n in enumerate(new_nodes):
            if not n.name:
                n.name = f"{anchor.name}__new{j}"
        nodes[k:k] = new_nodes
        del self.g.node[:]
        self.g.node.extend(nodes)

    def replace(self, anchor, new_nodes, old_nodes) -> None:
        self.insert_before(anchor, new_nodes)
        self.remove(old_nodes)
        self.refresh()

    def prune(self) -> None:
        """Drops nodes whose outputs nothing uses, then unused initializers."""
        outputs = {o.name for o in self.g.output}
        while True:
            self.refresh()
            dead = {n.name for n in self.g.node
                    if not any(o in outputs or self.consumers.get(o) for o in n.output)}
            if not dead:
                break
            keep = [n for n in self.g.node if n.name not in dead]
            del self.g.node[:]
            self.g.node.extend(keep)
        used = {i for n in self.g.node for i in n.input}
        keep = [t for t in self.g.initializer if t.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        self.inits = {t.name: t for t in self.g.initializer}


# Exact arithmetic on weights: float32 values are exact in float64, so products of two are
# exact, and fsum rounds the true sum once. Nothing depends on BLAS or SIMD summation order.

def exact_mean(a: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(a, np.float64), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    means = [math.fsum(flat[:, j]) / flat.shape[0] for j in range(flat.shape[1])]
    return np.array(means, np.float64).reshape(moved.shape[1:])


def exact_matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    v = np.asarray(v, np.float64)
    return np.array([math.fsum(row * v) for row in m], np.float64)


def attr(node, name: str, default):
    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


# Stage 1 ---------------------------------------------------------------------------------------

def fuse_gelu(g: Graph) -> int:
    """'<p>/Gelu/{mul,Pow,mul_1,add,mul_2,Tanh,add_1,mul_3}' computes
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), which is FastGelu(x)."""
    done = 0
    for tanh in [n for n in g.g.node if n.op_type == "Tanh" and n.name.endswith("/Gelu/Tanh")]:
        p = tanh.name[: -len("Tanh")]
        half = g.node(p + "mul")
        x = next(i for i in half.input if g.const(i) is None)
        if float(g.const_input(p + "mul")) != 0.5:
            raise SystemExit(f"{p}: not the tanh GELU this rewrite knows")
        chain = [n for n in g.g.node if n.name.startswith(p)]
        # tf2onnx wraps the Pow in a transpose pair.
        pow_in = g.producer.get(g.node(p + "Pow").input[0])
        if pow_in is not None and pow_in.op_type == "Transpose":
            chain.append(pow_in)
        chain += [c for c in g.consumers[g.node(p + "mul_1").output[0]] if c.op_type == "Transpose"]
        out = g.node(p + "mul_3")
        fused = helper.make_node("FastGelu", [x], [out.output[0]], name=p + "FastGelu",
                                 domain="com.microsoft")
        g.replace(out, [fused], chain)
        done += 1
    return done


# Stage 2 ---------------------------------------------------------------------------------------

def layernorm_at(g: Graph, mean_node):
    """The pieces of a channel LayerNorm '<p>moments/mean ... <p>add_2' (NCHW, over axis 1)."""
    p = mean_node.name[: -len("moments/mean")]
    gamma = g.const_input(p + "mul").reshape(-1)
    beta = g.const_input(p + "add_1").reshape(-1)
    eps = float(g.const_input(p + "add").reshape(-1)[0])
    chain = [n for n in g.g.node if n.name.startswith(p)]
    # tf2onnx's reshapes of the mean between it and the SquaredDifference carry other names.
    s = g.producer[g.node(p + "moments/SquaredDifference").input[1]]
    while s.name != mean_node.name:
        chain.append(s)
        s = g.producer[s.input[0]]
    return dict(prefix=p, x=mean_node.input[0], out=g.node(p + "add_2"), gamma=gamma, beta=beta,
                eps=eps, chain=chain)


def layernorm_means(g: Graph):
    return [n for n in g.g.node
            if n.op_type == "ReduceMean" and n.name.endswith("_ln_1/moments/mean")]


def only_consumer(g: Graph, value: str, op_type: str):
    c = g.consumers[value]
    return c[0] if len(c) == 1 and c[0].op_type == op_type else None


def convnext_mlps_to_matmul(g: Graph) -> int:
    done = 0
    for mean in layernorm_means(g):
        ln = layernorm_at(g, g.node(mean.name))
        expand = only_consumer(g, ln["out"].output[0], "Conv")
        gelu = expand and only_consumer(g, expand.output[0], "FastGelu")
        reduce = gelu and only_consumer(g, gelu.output[0], "Conv")
        if reduce is None:
            continue
        we, be = g.const(expand.input[1]), g.const(expand.input[2])
        wr, br = g.const(reduce.input[1]), g.const(reduce.input[2])
        if we.shape[2:] != (1, 1) or wr.shape[2:] != (1, 1):
            continue
        q = ln["prefix"] + "mlp/"
        f32 = lambda a: np.ascontiguousarray(a).astype(np.float32)  # noqa: E731
        new = [
            helper.make_node("Transpose", [ln["x"]], [q + "nhwc"], perm=[0, 2, 3, 1],
                             name=q + "to_nhwc"),
            helper.make_node("LayerNormalization",
                             [q + "nhwc", g.add_init(q + "gamma", f32(ln["gamma"])),
                              g.add_init(q + "beta", f32(ln["beta"]))],
                             [q + "ln"], axis=-1, epsilon=ln["eps"], name=q + "ln"),
            helper.make_node("MatMul", [q + "ln", g.add_init(q + "WE", f32(we[:, :, 0, 0].T))],
                             [q + "h"], name=q + "expand"),
            helper.make_node("FastGelu", [q + "h", g.add_init(q + "bE", f32(be))], [q + "g"],
                             domain="com.microsoft", name=q + "gelu"),
            helper.make_node("MatMul", [q + "g", g.add_init(q + "WR", f32(wr[:, :, 0, 0].T))],
                             [q + "r"], name=q + "reduce"),
            helper.make_node("Add", [q + "r", g.add_init(q + "bR", f32(br))], [q + "rb"],
                             name=q + "bias"),
            helper.make_node("Transpose", [q + "rb"], [q + "y"], perm=[0, 3, 1, 2],
                             name=q + "to_nchw"),
        ]
        g.insert_before(reduce, new)
        g.replace_uses(reduce.output[0], q + "y")
        g.remove(ln["chain"] + [expand, gelu, reduce])
        g.refresh()
        done += 1
    return done


# Stage 3 ---------------------------------------------------------------------------------------

def moments_nodes(p: str, x: str, mean_w: str, eps: str, centred: str, out: str):
    """mu = conv(x, 1/C); d = x - mu; var = conv(d², 1/C); out = d / sqrt(var + eps)."""
    return [
        helper.make_node("Conv", [x, mean_w], [p + "mu"]),
        helper.make_node("Sub", [x, p + "mu"], [centred]),
        helper.make_node("Mul", [centred, centred], [p + "d2"]),
        helper.make_node("Conv", [p + "d2", mean_w], [p + "var"]),
        helper.make_node("Add", [p + "var", eps], [p + "ve"]),
        helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
        helper.make_node("Reciprocal", [p + "sd"], [p + "rs"]),
        helper.make_node("Mul", [centred, p + "rs"], [out]),
    ]


def fold_layernorms(g: Graph) -> int:
    done = 0
    for mean in layernorm_means(g):
        ln = layernorm_at(g, g.node(mean.name))
        p, x, y = ln["prefix"], ln["x"], ln["out"].output[0]
        gamma, beta = ln["gamma"], ln["beta"]
        c = gamma.size
        mean_w = g.add_init(p + "wmean", np.full((1, c, 1, 1), 1.0 / c, np.float32))
        eps = g.add_init(p + "eps", np.array(ln["eps"], np.float32))
        following = only_consumer(g, y, "Conv")
        preceding = g.producer.get(x)
        x_only_here = all(n.name.startswith(p) for n in g.consumers[x])
        if following is not None:
            # Scale and shift move into the next 1x1 conv: W·(γ·n + β) + b = (W·γ)·n + (W·β + b).
            w = g.const(following.input[1])
            assert w.shape[2:] == (1, 1) and w.shape[1] == c
            b = (g.const(following.input[2]) if len(following.input) > 2
                 else np.zeros(w.shape[0], np.float32))
            w2 = w[:, :, 0, 0].astype(np.float64)
            following.input[1] = g.add_init(
                p + "Wfold", (w2 * gamma.astype(np.float64)[None, :])[:, :, None, None]
                .astype(np.float32))
            b_fold = g.add_init(p + "bfold", (b.astype(np.float64) + exact_matvec(w2, beta))
                                .astype(np.float32))
            if len(following.input) > 2:
                following.input[2] = b_fold
            else:
                following.input.append(b_fold)
            new = moments_nodes(p, x, mean_w, eps, p + "d", y)
        elif (preceding is not None and preceding.op_type == "Conv" and x_only_here
              and g.const(preceding.input[1]) is not None and attr(preceding, "group", 1) == 1
              and np.abs(gamma).min() > 1e-3):
            # The previous conv's output is centred over channels when its weights are (the
            # mean subtraction folds into it), and scaled by γ; the variance then needs 1/(Cγ²).
            w = g.const(preceding.input[1]).astype(np.float64)
            b = g.const(preceding.input[2]).astype(np.float64)
            g64 = gamma.astype(np.float64)
            w = (w - exact_mean(w, 0)[None]) * g64[:, None, None, None]
            b = (b - math.fsum(b) / b.size) * g64
            preceding.input[1] = g.add_init(p + "Wprev", w.astype(np.float32))
            preceding.input[2] = g.add_init(p + "bprev", b.astype(np.float32))
            var_w = g.add_init(p + "wvar", (1.0 / (c * g64 ** 2)).reshape(1, c, 1, 1)
                               .astype(np.float32))
            shift = g.add_init(p + "beta", beta.reshape(1, -1, 1, 1).astype(np.float32))
            new = [
                helper.make_node("Mul", [x, x], [p + "x2"]),
                helper.make_node("Conv", [p + "x2", var_w], [p + "var"]),
                helper.make_node("Add", [p + "var", eps], [p + "ve"]),
                helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
                helper.make_node("Reciprocal", [p + "sd"], [p + "rs"]),
                helper.make_node("Mul", [x, p + "rs"], [p + "n"]),
                helper.make_node("Add", [p + "n", shift], [y]),
            ]
        else:
            scale = g.add_init(p + "gamma", gamma.reshape(1, -1, 1, 1).astype(np.float32))
            shift = g.add_init(p + "beta", beta.reshape(1, -1, 1, 1).astype(np.float32))
            new = moments_nodes(p, x, mean_w, eps, p + "d", p + "n") + [
                helper.make_node("Mul", [p + "n", scale], [p + "ng"]),
                helper.make_node("Add", [p + "ng", shift], [y]),
            ]
        g.replace(ln["out"], new, ln["chain"])
        done += 1
    return done


# Stage 4 ---------------------------------------------------------------------------------------

def direct_dilated_convs(g: Graph) -> int:
    done = 0
    candidates = [n for n in g.g.node if n.op_type == "Conv" and n.name.endswith("/convolution")]
    for conv in candidates:
        layer = conv.name[: -len("convolution")]
        bias_add = g.node(layer + "BiasAdd")
        if bias_add is None or bias_add.op_type != "Add":
            continue
        w = g.const(conv.input[1])
        b = next(c for c in (g.const(i) for i in bias_add.input) if c is not None).reshape(-1)
        # Back to the Pad that starts the SpaceToBatch, noting its block size (the dilation).
        s, dilation = g.producer[conv.input[0]], None
        while s.op_type != "Pad":
            if s.op_type == "SpaceToDepth":
                dilation = attr(s, "blocksize", None)
            s = g.producer[s.input[0]]
        if dilation is None:
            continue
        src = s.input[0]
        if src == g.g.input[0].name:
            # The stem reads the NHWC input through its NCHW view [1, 1, H, W].
            src = next(n.output[0] for n in g.g.node if n.op_type == "Reshape" and (
                g.producer.get(n.input[0]) is not None
                and g.producer[n.input[0]].op_type == "Unsqueeze"
                and g.producer[n.input[0]].input[0] == src))
        k = w.shape[2]
        total = dilation * (k - 1)
        before, after = total // 2, total - total // 2
        y = layer + "direct:0"
        new = [
            helper.make_node("Conv", [src, g.add_init(layer + "Wd", w.astype(np.float32)),
                                      g.add_init(layer + "bd", b.astype(np.float32))], [y],
                             name=layer + "direct", dilations=[dilation, dilation],
                             pads=[before, before, after, after], kernel_shape=[k, k]),
            # BatchToSpace left [C, 1, H, W]; with batch 1 that is a free reshape of NCHW.
            helper.make_node("Reshape", [y, g.add_init(layer + "cnhw",
                                                       np.array([-1, 1, 0, 0], np.int64))],
                             [layer + "cnhw:0"], name=layer + "cnhw"),
        ]
        g.insert_before(bias_add, new)
        g.replace_uses(bias_add.output[0], layer + "cnhw:0")
        g.refresh()
        done += 1
    return done


# Stage 5 ---------------------------------------------------------------------------------------

def nearest_resize(g: Graph) -> int:
    done = 0
    for expand in [n for n in g.g.node
                   if n.op_type == "Unsqueeze" and n.name.endswith("/Repeat/ExpandDims")]:
        p = expand.name[: -len("Repeat/ExpandDims")]
        last = g.node(p + "Repeat_1/Reshape_1")
        y = p + "resize:0"
        resize = helper.make_node(
            "Resize", [expand.input[0], "", g.add_init(p + "scales",
                                                       np.array([1, 1, 2, 2], np.float32))],
            [y], name=p + "resize", mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        g.insert_before(last, [resize])
        for c in list(g.consumers[last.output[0]]):
            if c.op_type == "Transpose" and list(attr(c, "perm", [])) == [0, 3, 1, 2]:
                g.replace_uses(c.output[0], y)
            else:
                nhwc = helper.make_node("Transpose", [y], [p + "nhwc:0"], name=p + "nhwc",
                                        perm=[0, 2, 3, 1])
                g.insert_before(c, [nhwc])
                for k, i in enumerate(c.input):
                    if i == last.output[0]:
                        c.input[k] = p + "nhwc:0"
        g.refresh()
        done += 1
    return done


# Stage 6 ---------------------------------------------------------------------------------------

def pointwise_convs_to_gemm(g: Graph) -> int:
    """1x1 convs become Reshape [C, HW] -> Gemm(W, X, b) -> Reshape [1, O, H, W] (batch 1)."""
    done = 0
    spatial = {}
    for conv in [n for n in g.g.node if n.op_type == "Conv"]:
        w = g.const(conv.input[1])
        if (w is None or w.shape[2:] != (1, 1) or attr(conv, "group", 1) != 1
                or any(v != 1 for v in attr(conv, "strides", [1, 1]))
                or any(v != 0 for v in attr(conv, "pads", [0, 0, 0, 0]))):
            continue
        o, c = w.shape[:2]
        x, y, p = conv.input[0], conv.output[0], conv.name + "/gemm/"
        new = []
        if x not in spatial:
            new += [
                helper.make_node("Shape", [x], [x + "/shape"], name=x + "/Shape"),
                helper.make_node("Slice", [x + "/shape",
                                           g.add_init(x + "/s2", np.array([2], np.int64)),
                                           g.add_init(x + "/s4", np.array([4], np.int64))],
                                 [x + "/hw"], name=x + "/SliceHW"),
            ]
            spatial[x] = x + "/hw"
        gemm_in = [g.add_init(p + "W", w[:, :, 0, 0].astype(np.float32)), p + "x2"]
        if len(conv.input) > 2 and conv.input[2]:
            gemm_in.append(g.add_init(p + "b", g.const(conv.input[2]).reshape(o, 1)
                                      .astype(np.float32)))
        new += [
            helper.make_node("Reshape", [x, g.add_init(p + "shape_in", np.array([c, -1], np.int64))],
                             [p + "x2"], name=p + "Rin"),
            helper.make_node("Gemm", gemm_in, [p + "y2"], name=p + "Gemm"),
            helper.make_node("Concat", [g.add_init(p + "lead", np.array([1, o], np.int64)),
                                        spatial[x]], [p + "shape_out"], axis=0, name=p + "Cshape"),
            helper.make_node("Reshape", [p + "y2", p + "shape_out"], [y], name=p + "Rout"),
        ]
        g.replace(conv, new, [conv])
        done += 1
    return done


STAGES = [fuse_gelu, convnext_mlps_to_matmul, fold_layernorms, direct_dilated_convs,
          nearest_resize, pointwise_convs_to_gemm]


def rewrite(src: Path, out: Path) -> dict:
    model = onnx.load(str(src))
    g = Graph(model)
    counts = {stage.__name__: stage(g) for stage in STAGES}
    if any(v == 0 for v in counts.values()):
        raise SystemExit(f"a stage found nothing to rewrite ({counts}): not the LEADER export "
                         "this script was written for")
    g.prune()
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    counts["nodes"] = len(model.graph.node)
    return counts


# The check ------------------------------------------------------------------------------------

def load_gray(path: Path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(path).convert("L"), dtype=np.uint8)


def pad32(img: np.ndarray):
    """Centre-padded to multiples of 32 with the top-left pixel, as the engine pads."""
    h, w = img.shape
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    left, top = (pw - w) // 2, (ph - h) // 2
    x = np.full((1, ph, pw, 1), float(img[0, 0]), np.float32)
    x[0, top:top + h, left:left + w, 0] = img
    return x, left, top


def minutiae(out: np.ndarray, left: int, top: int, w: int, h: int) -> np.ndarray:
    """(x, y, direction) of every pixel with quality >= 0.55, best 150, as the engine decodes."""
    o = out[top:top + h, left:left + w]
    ys, xs = np.nonzero(o[..., 3].astype(np.float64) >= 0.55)
    order = np.lexsort((xs, ys, -o[ys, xs, 3].astype(np.float64)))[:150]
    ys, xs = ys[order], xs[order]
    return np.stack([xs, ys, o[ys, xs, 1]], 1).astype(np.float64)


def agreement(ref: np.ndarray, got: np.ndarray) -> int:
    """Reference minutiae with a distinct counterpart within 2 px and 5 degrees."""
    used = np.zeros(len(got), bool)
    found = 0
    for r in ref:
        if not len(got):
            break
        d = np.hypot(got[:, 0] - r[0], got[:, 1] - r[1])
        d[used] = np.inf
        j = int(np.argmin(d))
        turn = abs((got[j, 2] - r[2] + math.pi) % (2 * math.pi) - math.pi)
        if d[j] <= 2.0 and turn <= math.radians(5.0):
            used[j] = True
            found += 1
    return found


def check(src: Path, out: Path, images: list[Path], count_tolerance: int,
          min_agreement: float) -> dict:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = [ort.InferenceSession(str(m), opts, providers=["CPUExecutionProvider"])
                for m in (src, out)]
    report = {"images": [], "failures": []}
    for path in images:
        img = load_gray(path)
        x, left, top = pad32(img)
        ref, got = (s.run(None, {s.get_inputs()[0].name: x})[0][0] for s in sessions)
        diff = np.abs(ref - got).max(axis=(0, 1))
        a = minutiae(ref, left, top, img.shape[1], img.shape[0])
        b = minutiae(got, left, top, img.shape[1], img.shape[0])
        agree = agreement(a, b)
        row = {"image": path.name, "reference": len(a), "rewritten": len(b), "agree": agree,
               "max_abs_diff_per_channel": [float(v) for v in diff]}
        report["images"].append(row)
        if abs(len(a) - len(b)) > count_tolerance or agree < min_agreement * len(a):
            report["failures"].append(row)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="LEADER.onnx as the afis package ships it")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", type=Path, nargs="*", default=[], metavar="IMAGE",
                    help="500 ppi images to compare the two graphs on")
    ap.add_argument("--count-tolerance", type=int, default=2)
    ap.add_argument("--agreement", type=float, default=0.95)
    ap.add_argument("--report", type=Path)
    a = ap.parse_args()
    report = {"stages": rewrite(a.src, a.out)}
    if a.check:
        report.update(check(a.src, a.out, a.check, a.count_tolerance, a.agreement))
        images = report["images"]
        n_ref = sum(r["reference"] for r in images)
        n_agree = sum(r["agree"] for r in images)
        worst = np.max([r["max_abs_diff_per_channel"] for r in images], axis=0)
        report["summary"] = {"images": len(images), "reference_minutiae": n_ref,
                             "agree": n_agree, "identical_counts":
                             sum(r["reference"] == r["rewritten"] for r in images),
                             "max_abs_diff_per_channel": [float(v) for v in worst]}
    if a.report:
        a.report.parent.mkdir(parents=True, exist_ok=True)
        a.report.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "images"}))
    if report.get("failures"):
        raise SystemExit(f"the rewritten LEADER disagrees with the original on "
                         f"{len(report['failures'])} image(s): {report['failures'][:3]}")


if __name__ == "__main__":
    main()
