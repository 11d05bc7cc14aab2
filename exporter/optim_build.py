"""The optimiser's update graphs (core/device_optim.py runs them), written node by node with onnx.helper.

Vectors (image, gradient, direction, L-BFGS pairs, Adam moments) are images [1,3,H,W], like the grad
graph's input, with dynamic H and W. Scalars and the small coefficient vectors come from the host;
every scalar result comes back in one float vector `dots` per graph, so one download per run.

    check            g                               -> bad [1]: 1 if g has a NaN or an infinity, else 0
    copy             x                               -> y = x
    trial            x, d, g, t, lower, upper        -> x_try = clip(x + t·d), dots = [g·(x_try − x)]
    lbfgs-direction  x, g, s_i, y_i, ρ_i, γ, lo, up  -> d = −H·gf (two-loop recursion)·free,
                                                        dots = [max|gf|, gf·d]
    lbfgs-direction-f32  the same with ρ and the recursion's scalars in float32 (DirectML: no float64)
    lbfgs-pair       x, x_try, g, g_try              -> s = x_try − x, y = g_try − g, dots = [s·y, y·y]
    adam             x, g, m, v, coef, lower, upper  -> x_new, m_new, v_new (one Adam step, projected)
    temporal         x, g, target, mask, k           -> g_out = g + 2k·c·(x − target),
                                                        dots = [k·Σ c·(x − target)²]

free = not ((x ≤ lower and g > 0) or (x ≥ upper and g < 0)) is the projected L-BFGS's free set and
gf = g·free. i runs over core.device_optim.SLOTS history pairs, oldest first; unused ones get ρ = 0.
Clipping is Max then Min: CUDA's Clip reads its bounds on the host. Run with `python -m
onnxstyle.exporter.optim_build [--out DIR]` (default: the package's core/models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxstyle.core.device_optim import ADAM_COEFFICIENTS, SHIPPED, SLOTS
from onnxstyle.core.files import write_atomic
from onnxstyle.core.graph import PACKAGE_MODELS

from .build import _Graph, _model


def _vector(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, "H", "W"])


def _floats(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _history() -> list[onnx.ValueInfoProto]:
    return [_vector(f"s{i}") for i in range(SLOTS)] + [_vector(f"y{i}") for i in range(SLOTS)]


def _dot(g: _Graph, a: str, b: str) -> str:
    """a·b as a [1] tensor (ReduceSum over everything: float32 with ORT's tree-like reductions)."""
    return g.op("Reshape", [g.op("ReduceSum", [g.op("Mul", [a, b])], keepdims=0), g.const([1])])


def _blocked(g: _Graph, x: str, grad: str) -> str:
    """Pixels at a bound whose gradient pushes outwards: frozen this iteration (not free)."""
    zero = g.const(0.0, np.float32)
    at_lower = g.op("And", [g.op("LessOrEqual", [x, "lower"]), g.op("Greater", [grad, zero])])
    at_upper = g.op("And", [g.op("GreaterOrEqual", [x, "upper"]), g.op("Less", [grad, zero])])
    return g.op("Or", [at_lower, at_upper])


def _clip(g: _Graph, x: str, name: str) -> str:
    return g.op("Min", [g.op("Max", [x, "lower"]), "upper"], name=name)


def _check() -> onnx.ModelProto:
    g = _Graph()
    bad = g.op("Or", [g.op("IsNaN", ["g"]), g.op("IsInf", ["g"])])
    flag = g.op("ReduceMax", [g.op("Cast", [bad], to=TensorProto.FLOAT)], keepdims=0)
    g.op("Reshape", [flag, g.const([1])], name="bad")
    return _model(g, "check", [_vector("g")], [_floats("bad", [1])], "1 if g is not all finite")


def _copy() -> onnx.ModelProto:
    g = _Graph()
    g.op("Identity", ["x"], name="y")
    return _model(g, "copy", [_vector("x")], [_vector("y")], "y = x")


def _trial() -> onnx.ModelProto:
    g = _Graph()
    x_try = _clip(g, g.op("Add", ["x", g.op("Mul", ["t", "d"])]), "x_try")
    g.op("Identity", [_dot(g, "g", g.op("Sub", [x_try, "x"]))], name="dots")
    inputs = [_vector("x"), _vector("d"), _vector("g")]
    inputs += [_floats(name, []) for name in ("t", "lower", "upper")]
    return _model(
        g,
        "trial",
        inputs,
        [_vector("x_try"), _floats("dots", [1])],
        "projected trial point clip(x + t·d) and the Armijo dot g·(x_try − x)",
    )


def _lbfgs_direction(scalar: int = TensorProto.DOUBLE) -> onnx.ModelProto:
    """The two-loop recursion on gf, unrolled over the SLOTS pairs (oldest first); a pair with ρ = 0
    changes nothing, so unused slots are masked by their ρ. The scalars a, b are float64 and the
    vectors float32, as in core/optim.py's _two_loop; with scalar=FLOAT (the "-f32" variant, for
    DirectML, which has no float64 Mul or Sub) every scalar is float32 too."""
    g = _Graph()
    zero = g.const(0.0, np.float32)
    blocked = _blocked(g, "x", "g")
    q = gf = g.op("Where", [blocked, zero, "g"])
    wide = scalar == TensorProto.DOUBLE

    def rho(i: int) -> str:
        return g.op("Gather", ["rho", g.const(i)], axis=0)

    def dot(a: str, b: str) -> str:
        return g.op("ReduceSum", [g.op("Mul", [a, b])], keepdims=0)

    def times(
        scalar: str, v: str
    ) -> str:  # float64 scalar · float32 vector, as numpy's float32(a)·v
        return g.op("Mul", [g.op("Cast", [scalar], to=TensorProto.FLOAT) if wide else scalar, v])

    def rho_dot(i: int, a: str, b: str) -> str:  # ρ·(a·b) in float64, like the reference's floats
        r = rho(i)  # first: the node order (and so the shipped bytes) as before the variant
        product = g.op("Cast", [dot(a, b)], to=TensorProto.DOUBLE) if wide else dot(a, b)
        return g.op("Mul", [r, product])

    alphas = {}
    for i in reversed(range(SLOTS)):  # newest first
        alphas[i] = rho_dot(i, f"s{i}", q)
        q = g.op("Sub", [q, times(alphas[i], f"y{i}")])
    q = g.op("Mul", [q, "gamma"])  # H0 = γI
    for i in range(SLOTS):  # oldest first
        q = g.op("Add", [q, times(g.op("Sub", [alphas[i], rho_dot(i, f"y{i}", q)]), f"s{i}")])
    d = g.op("Where", [blocked, zero, g.op("Neg", [q])], name="d")
    gf_max = g.op("ReduceMax", [g.op("Abs", [gf])], keepdims=0)
    scalars = [g.op("Reshape", [v, g.const([1])]) for v in (gf_max, dot(gf, d))]
    g.op("Concat", scalars, name="dots", axis=0)
    rho_input = helper.make_tensor_value_info("rho", scalar, [SLOTS])
    inputs = [_vector("x"), _vector("g"), *_history(), rho_input]
    inputs += [_floats(name, []) for name in ("gamma", "lower", "upper")]
    return _model(
        g,
        "lbfgs-direction",
        inputs,
        [_vector("d"), _floats("dots", [2])],
        "d = −H·gf by the two-loop recursion (ρ = 0 masks a slot), max|gf| and the slope gf·d"
        + ("" if wide else "; float32 scalars"),
    )


def _lbfgs_pair() -> onnx.ModelProto:
    g = _Graph()
    s = g.op("Sub", ["x_try", "x"], name="s")
    y = g.op("Sub", ["g_try", "g"], name="y")
    g.op("Concat", [_dot(g, s, y), _dot(g, y, y)], name="dots", axis=0)
    return _model(
        g,
        "lbfgs-pair",
        [_vector(name) for name in ("x", "x_try", "g", "g_try")],
        [_vector("s"), _vector("y"), _floats("dots", [2])],
        "the new pair s = x_try − x, y = g_try − g and its curvature s·y, y·y",
    )


def _adam() -> onnx.ModelProto:
    g = _Graph()
    c = {
        name: g.op("Gather", ["coef", g.const(i)], axis=0)
        for i, name in enumerate(ADAM_COEFFICIENTS)
    }
    m = g.op(
        "Add",
        [g.op("Mul", [c["beta1"], "m"]), g.op("Mul", [c["1-beta1"], "g"])],
        name="m_new",
    )
    v_new = g.op("Mul", [g.op("Mul", [c["1-beta2"], "g"]), "g"])
    v = g.op("Add", [g.op("Mul", [c["beta2"], "v"]), v_new], name="v_new")
    m_hat = g.op("Mul", [c["lr"], g.op("Div", [m, c["1-beta1^k"]])])
    v_hat = g.op("Add", [g.op("Sqrt", [g.op("Div", [v, c["1-beta2^k"]])]), c["eps"]])
    _clip(g, g.op("Sub", ["x", g.op("Div", [m_hat, v_hat])]), "x_new")
    inputs = [_vector(name) for name in ("x", "g", "m", "v")]
    inputs += [
        _floats("coef", [len(ADAM_COEFFICIENTS)]),
        _floats("lower", []),
        _floats("upper", []),
    ]
    return _model(
        g,
        "adam",
        inputs,
        [_vector("x_new"), _vector("m_new"), _vector("v_new")],
        "one Adam step (Kingma & Ba 2015), projected onto [lower, upper]",
    )


def _temporal() -> onnx.ModelProto:
    """Ruder et al.'s temporal term added to a gradient: k = weight / D (core/frames.py); the mask c
    [1,1,H,W] broadcasts over the channels."""
    g = _Graph()
    d = g.op("Sub", ["x", "target"])
    masked = g.op("Mul", ["mask", d])
    two_k = g.op("Add", ["k", "k"])
    g.op("Add", ["g", g.op("Mul", [two_k, masked])], name="g_out")
    g.op("Mul", ["k", _dot(g, masked, d)], name="dots")
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "H", "W"])
    inputs = [_vector("x"), _vector("g"), _vector("target"), mask, _floats("k", [])]
    return _model(
        g,
        "temporal",
        inputs,
        [_vector("g_out"), _floats("dots", [1])],
        "the temporal term k·Σ c·(x − target)² and its gradient added to g (Ruder et al. 2016)",
    )


BUILDERS = {
    "check": _check,
    "copy": _copy,
    "trial": _trial,
    "lbfgs-direction": _lbfgs_direction,
    "lbfgs-direction-f32": lambda: _lbfgs_direction(TensorProto.FLOAT),
    "lbfgs-pair": _lbfgs_pair,
    "adam": _adam,
    "temporal": _temporal,
}


def build_all() -> dict[str, onnx.ModelProto]:
    """Every shipped update graph, by name (core.device_optim.SHIPPED: GRAPHS and the float32
    variants)."""
    return {name: BUILDERS[name]() for name in SHIPPED}


def write_all(out_dir: Path | str = PACKAGE_MODELS) -> list[Path]:
    """Write optim-<name>.onnx for every update graph; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_atomic(out_dir / f"optim-{name}.onnx", model.SerializeToString())
        for name, model in build_all().items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m onnxstyle.exporter.optim_build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS, help="output folder")
    for path in write_all(parser.parse_args(argv).out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
