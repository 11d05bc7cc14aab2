"""One 3×3/stride-1/pad-1 conv on ORT's CPU provider: direct `Conv` vs Winograd F(2×2,3×3) in standard ops.

Run: python benchmarks/bench_winograd.py [--size 256] [--reps 10]
Prints, for every conv shape of VGG19 up to conv5_1 at a --size px input (forward, and the backward conv
with in/out swapped), the best time of the direct Conv and of two Winograd layouts, and their max relative
error against the direct Conv. Sessions are timed one at a time (ORT's default spinning thread pools
make interleaved sessions steal each other's cores). Never asserts.

Winograd layouts (U = G g Gᵀ derived in the graph from the stored kernel; ORT constant-folds it):
  A: V = Bᵀ d B as a grouped Conv (group=C, 16 fixed 4×4 kernels, stride 2) -> [16,C,P] (Reshape+Transpose,
     which ORT fuses into the MatMul); M = U·V one batched MatMul [16,O,C]×[16,C,P]; Y = Aᵀ M A as a
     MatMul [4,16]×[16,O·P] + DepthToSpace(2); crop; bias.
  B: Pad + SpaceToDepth(2) + 4 shifted Slices + Concat + MatMul [16,16] for the input transform; rest as A.

Result on the 2-core dev machine (256 px, onnxruntime 1.32): Winograd wins only on the 512-channel layers
(1.2-1.5×), ties at 256 channels, and loses 1.4-1.9× at 64/128 channels, where the transforms
(grouped Conv, DepthToSpace: memory-bound) cost more than the GEMM saves. Whole conv stack at best
~1.1-1.2×, so the grad graph keeps the direct Conv.

Why this file stays though nothing uses Winograd: it records a rejected experiment, so that the next
person who thinks "fewer multiplies" can rerun it on their CPU instead of rebuilding it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


class _Builder:
    def __init__(self) -> None:
        self.nodes, self.inits, self.n = [], [], 0

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self.n += 1
        self.nodes.append(helper.make_node(op_type, inputs, [f"t{self.n}"], **attrs))
        return f"t{self.n}"

    def c(self, array, dtype=np.float32) -> str:
        self.n += 1
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype), f"c{self.n}"))
        return f"c{self.n}"

    def model(self, out: str):
        graph = helper.make_graph(
            self.nodes,
            "m",
            [helper.make_tensor_value_info("x", 1, [1, None, None, None])],
            [helper.make_tensor_value_info(out, 1, None)],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        return model


def direct(w: np.ndarray, bias: np.ndarray):
    b = _Builder()
    return b.model(b.op("Conv", ["x", b.c(w), b.c(bias)], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))


def _transformed_kernel(b: _Builder, w: np.ndarray) -> str:
    """U [16,O,C] = G g Gᵀ per (o, c), computed in the graph from the stored [O,C,3,3] kernel."""
    o, c = w.shape[:2]
    flat = b.op("Reshape", [b.c(w), b.c([o * c, 9], np.int64)])
    u = b.op("MatMul", [flat, b.c(np.kron(G, G).T)])  # [O·C, 16]
    return b.op("Transpose", [b.op("Reshape", [u, b.c([o, c, 16], np.int64)])], perm=[2, 0, 1])


def _output_transform(
    b: _Builder, m: str, o: int, th: int, tw: int, h: int, w: int, bias: np.ndarray
):
    m = b.op("Reshape", [m, b.c([16, o * th * tw], np.int64)])
    y = b.op("MatMul", [b.c(np.kron(AT, AT)), m])  # [4 (dy,dx), O·P]
    y = b.op("Reshape", [y, b.c([1, 4 * o, th, tw], np.int64)])
    y = b.op("DepthToSpace", [y], blocksize=2, mode="DCR")
    if (2 * th, 2 * tw) != (h, w):
        y = b.op("Slice", [y, b.c([0, 0], np.int64), b.c([h, w], np.int64), b.c([2, 3], np.int64)])
    return b.model(b.op("Add", [y, b.c(bias.reshape(1, -1, 1, 1))]))


def winograd_a(w: np.ndarray, bias: np.ndarray, h: int, wd: int):
    o, c = w.shape[:2]
    th, tw = (h + 1) // 2, (wd + 1) // 2
    b = _Builder()
    u = _transformed_kernel(b, w)
    k = np.einsum("ar,bs->abrs", BT, BT).reshape(16, 1, 4, 4)
    v = b.op(
        "Conv",
        ["x", b.c(np.tile(k, (c, 1, 1, 1)))],
        kernel_shape=[4, 4],
        strides=[2, 2],
        group=c,
        pads=[1, 1, 2 * th + 1 - h, 2 * tw + 1 - wd],
    )  # [1, 16C, th, tw], channel c·16 + k
    v = b.op("Transpose", [b.op("Reshape", [v, b.c([c, 16, th * tw], np.int64)])], perm=[1, 0, 2])
    return _output_transform(b, b.op("MatMul", [u, v]), o, th, tw, h, wd, bias)


def winograd_b(w: np.ndarray, bias: np.ndarray, h: int, wd: int):
    o, c = w.shape[:2]
    th, tw = (h + 1) // 2, (wd + 1) // 2
    b = _Builder()
    u = _transformed_kernel(b, w)
    p = b.op("Pad", ["x", b.c([0, 0, 1, 1, 0, 0, 2 * th + 1 - h, 2 * tw + 1 - wd], np.int64)])
    s = b.op("SpaceToDepth", [p], blocksize=2)  # [1, 4C, th+1, tw+1], channel (py·2+px)·C + c
    shifts = [
        b.op(
            "Slice",
            [s, b.c([dy, dx], np.int64), b.c([dy + th, dx + tw], np.int64), b.c([2, 3], np.int64)],
        )
        for dy in (0, 1)
        for dx in (0, 1)
    ]
    d = b.op("Reshape", [b.op("Concat", shifts, axis=0), b.c([16, c * th * tw], np.int64)])
    mix = np.zeros((16, 16), np.float32)  # row a·4+b of Bᵀ d B from d's rows dy·8+dx·4+py·2+px
    for dy in (0, 1):
        for dx in (0, 1):
            for py in (0, 1):
                for px in (0, 1):
                    mix[:, dy * 8 + dx * 4 + py * 2 + px] = np.outer(
                        BT[:, 2 * dy + py], BT[:, 2 * dx + px]
                    ).ravel()
    v = b.op("Reshape", [b.op("MatMul", [b.c(mix), d]), b.c([16, c, th * tw], np.int64)])
    return _output_transform(b, b.op("MatMul", [u, v]), o, th, tw, h, wd, bias)


def best_ms(model, x: np.ndarray, reps: int) -> tuple[float, np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    y = session.run(None, {"x": x})[0]
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, 1000 * (time.perf_counter() - start))
    return best, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    s = args.size
    layers = [
        (64, 64, s),
        (64, 128, s // 2),
        (128, 128, s // 2),
        (128, 256, s // 4),
        (256, 256, s // 4),
        (256, 512, s // 8),
        (512, 512, s // 8),
        (512, 512, s // 16),
    ]
    shapes = list(dict.fromkeys(shape for c, o, h in layers for shape in ((c, o, h), (o, c, h))))
    rng = np.random.default_rng(0)
    print(
        f"{'C->O':>9} {'HxW':>8} {'direct ms':>10} {'A ms':>7} {'A x':>6} {'B ms':>7} {'B x':>6} {'max rel err':>11}"
    )
    for c, o, h in shapes:
        w = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        bias = (0.1 * rng.standard_normal(o)).astype(np.float32)
        x = np.maximum(rng.standard_normal((1, c, h, h)), 0).astype(np.float32)
        times, outs = {}, {}
        for _ in range(2):  # two rounds, sessions one at a time, best of both
            for name, build in (
                ("direct", lambda w=w, bias=bias: direct(w, bias)),
                ("A", lambda w=w, bias=bias, h=h: winograd_a(w, bias, h, h)),
                ("B", lambda w=w, bias=bias, h=h: winograd_b(w, bias, h, h)),
            ):
                ms, outs[name] = best_ms(build(), x, args.reps)
                times[name] = min(ms, times.get(name, float("inf")))
        ref = outs["direct"]
        err = max(np.abs(outs[n] - ref).max() / np.abs(ref).max() for n in ("A", "B"))
        print(
            f"{c:>4}->{o:<4} {h:>4}x{h:<3} {times['direct']:>10.1f} {times['A']:>7.1f} "
            f"{times['direct'] / times['A']:>5.2f}x {times['B']:>7.1f} {times['direct'] / times['B']:>5.2f}x {err:>11.1e}"
        )


if __name__ == "__main__":
    main()
