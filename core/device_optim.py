"""The pixel optimisers of core/optim.py with their state on the device: image, gradient, direction,
L-BFGS pairs and Adam moments are OrtValues where the grad graph runs, and the update maths is small
ONNX graphs (exporter/optim_build.py, shipped as core/models/optim-*.onnx) chained through IOBinding.
Per evaluation only scalars cross to the host: the loss, dot products, max|gf|, the NaN check.

L-BFGS: the two-loop recursion is one graph, unrolled over the SLOTS pairs (a pair with ρ = 0 is a
no-op), so the iterates are core/optim.py's up to float32 rounding (tests compare them). The host
keeps only which buffers hold pairs and their ρ, γ. (Vector-free L-BFGS, Chen et al. 2014, needs
the same two-loop on the host but 6m vector passes per step against the graph's 4m.) A graph can't
write a buffer it reads in the same run: x/g and their trial copies swap roles, and the m pairs live
in m + 1 buffers, the spare taking each new pair.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import DTypeLike

from .graph import PACKAGE_MODELS
from .optim import OptimResult, _Spent
from .runtime import PLACES, download, empty, make_session, upload

SLOTS = 10  # L-BFGS pairs the graphs take (the engine's history); unused ones get coefficient 0
GRAPHS = ("check", "copy", "trial", "lbfgs-direction", "lbfgs-pair", "adam", "temporal")
# Graphs with a float32-scalar variant "<name>-f32", for devices without float64 arithmetic:
# DirectML registers no float64 Mul or Sub, so the float64 recursion's 30 scalar nodes would run
# on the CPU, each a copy down and up (docs/decisions/ort-review.md); WebGPU has no float64 at all
# (docs/decisions/webgpu-ep.md).
FLOAT32_VARIANTS = ("lbfgs-direction",)
FLOAT32_DEVICES = frozenset({"directml", "webgpu"})
SHIPPED = GRAPHS + tuple(f"{name}-f32" for name in FLOAT32_VARIANTS)  # optim-<name>.onnx files
ADAM_COEFFICIENTS = ("beta1", "1-beta1", "beta2", "1-beta2", "1-beta1^k", "1-beta2^k", "lr", "eps")

DeviceLoss = Callable[..., float]
"""fun(x, g) -> loss at x, with its gradient written into g (x, g: OrtValues of x0's shape)."""


class UpdateGraphs:
    """The update graphs' sessions on one device, the vectors they work on, and their runs."""

    def __init__(self, device: str, float32_scalars: bool | None = None) -> None:
        self.place = PLACES[device]
        if float32_scalars is None:
            float32_scalars = device in FLOAT32_DEVICES
        self.rho_dtype = np.dtype(np.float32 if float32_scalars else np.float64)
        # CPU: one thread each; these runs are short and memory-bound, and a second thread only
        # adds hand-offs (docs/decisions/device-optimiser.md: 21 dot products ran 2.4x faster on one thread)
        threads = 1 if device == "cpu" else None
        variant = "-f32" if float32_scalars else ""
        self._sessions = {
            name: make_session(
                PACKAGE_MODELS / f"optim-{name}{variant if name in FLOAT32_VARIANTS else ''}.onnx",
                device,
                threads,
            )
            for name in GRAPHS
        }
        self._bindings = {name: session.io_binding() for name, session in self._sessions.items()}
        self._scalars = {}  # graph -> its scalar output's OrtValue, bound once
        for name, session in self._sessions.items():
            for out in session.get_outputs():
                if out.name in ("dots", "bad"):
                    self._scalars[name] = empty(out.shape, self.place)
                    self._bindings[name].bind_ortvalue_output(out.name, self._scalars[name])
        self._small: dict[tuple[str, str], tuple] = {}  # (graph, input) -> (OrtValue, host value)

    def vector(self, shape: tuple[int, ...], fill: np.ndarray | None = None):
        """A float32 vector on the device, uninitialised or uploaded from `fill`."""
        value = empty(shape, self.place)
        if fill is not None:
            upload(fill, into=value)
        return value

    def run(self, name: str, inputs: dict, outputs: dict | None = None) -> np.ndarray | None:
        """One run: inputs are OrtValues, or host numbers (uploaded into fixed small buffers when
        they change); `outputs` binds the vector outputs to OrtValues; the scalar output, if any,
        comes back (as float64, for the host's arithmetic)."""
        binding = self._bindings[name]
        for key, value in inputs.items():
            if isinstance(value, float):
                value = np.float32(value)
            if isinstance(value, (np.generic, np.ndarray)):
                value = self._small_input(name, key, np.asarray(value))
            binding.bind_ortvalue_input(key, value)
        for key, value in (outputs or {}).items():
            binding.bind_ortvalue_output(key, value)
        self._sessions[name].run_with_iobinding(binding)
        return download(self._scalars[name]).astype(np.float64) if name in self._scalars else None

    def scalars(self, name: str, inputs: dict, outputs: dict | None = None) -> np.ndarray:
        """run() of a graph that has a scalar output ("dots" or "bad"): that output."""
        values = self.run(name, inputs, outputs)
        assert values is not None, f"the {name} graph has no scalar output"
        return values

    def _small_input(self, name: str, key: str, value: np.ndarray):
        ortvalue, last = self._small.get((name, key), (None, None))
        if ortvalue is None:
            ortvalue = empty(value.shape, self.place, value.dtype)
        if last is None or not np.array_equal(last, value):
            upload(value, into=ortvalue)
            self._small[name, key] = (ortvalue, value.copy())
        return ortvalue

    def finite(self, g) -> bool:
        """Whether every element of g is a finite number (the engine's NaN guard)."""
        return self.scalars("check", {"g": g})[0] == 0


@cache
def update_graphs(device: str) -> UpdateGraphs:
    """The update graphs for a concrete device (cpu/cuda/directml), loaded once per process
    (DirectML gets the float32-scalar variants)."""
    return UpdateGraphs(device)


class _Budget:
    """Counts evaluations and keeps a copy of the best point on the device (core/optim.py's _Budget)."""

    def __init__(self, fun: DeviceLoss, max_evals: int, graphs: UpdateGraphs, shape) -> None:
        self.fun, self.max_evals, self.graphs, self.evals = fun, max_evals, graphs, 0
        self.best, self.best_f = graphs.vector(shape), math.inf

    def check(self) -> None:
        if self.evals >= self.max_evals:
            raise _Spent

    def __call__(self, x, g) -> float:
        self.check()
        self.evals += 1
        f = float(self.fun(x, g))
        if f < self.best_f:
            self.best_f = f
            self.graphs.run("copy", {"x": x}, {"y": self.best})
        return f

    def result(self, x) -> OptimResult:
        best = self.best if self.best_f < math.inf else x
        return OptimResult(download(best), self.best_f, self.evals)


class _Pairs:
    """The L-BFGS memory: which of the m + 1 buffer pairs hold (s, y) pairs, oldest first, with
    ρ = 1/(y·s) and γ = s·y/y·y of each; the spare buffer takes the next pair."""

    def __init__(self, history: int) -> None:
        self.history = history
        self.held: deque[tuple[int, float, float]] = deque()  # (buffer, ρ, γ)

    def __bool__(self) -> bool:
        return bool(self.held)

    def clear(self) -> None:
        self.held.clear()

    def spare(self) -> int:
        used = {b for b, _, _ in self.held}
        return next(b for b in range(self.history + 1) if b not in used)

    def add(self, b: int, sy: float, yy: float) -> None:
        """Keep the pair just written to buffer b if its curvature is positive (H stays SPD)."""
        if sy > 1e-10 * yy:
            if len(self.held) == self.history:
                self.held.popleft()
            self.held.append((b, 1.0 / sy, sy / yy))

    def inputs(
        self,
        s: list,
        y: list,
        filler,
        restart_gamma: float | None = None,
        rho_dtype: DTypeLike = np.float64,
    ) -> dict:
        """The direction graph's history: held pairs oldest first, then `filler` with ρ = 0 (no
        effect). With restart_gamma, no pair at all: d = −restart_gamma·gf, steepest descent.
        ρ is float64 like the reference's Python floats (float32 for the "-f32" graph)."""
        held = [] if restart_gamma is not None else list(self.held)
        rho = np.zeros(SLOTS, rho_dtype)
        inputs = {}
        for i in range(SLOTS):
            b = held[i][0] if i < len(held) else None
            inputs[f"s{i}"], inputs[f"y{i}"] = (filler, filler) if b is None else (s[b], y[b])
            rho[i] = held[i][1] if i < len(held) else 0.0
        gamma = restart_gamma if restart_gamma is not None else (held[-1][2] if held else 1.0)
        return {**inputs, "rho": rho, "gamma": np.float32(gamma)}


def lbfgs(
    fun: DeviceLoss,
    x0: np.ndarray,
    max_evals: int,
    graphs: UpdateGraphs,
    lower: float = 0.0,
    upper: float = 1.0,
    history: int = 10,
    first_step: float = 0.05,
    c1: float = 1e-4,
    max_backtracks: int = 8,
    tol: float = 1e-10,
) -> OptimResult:
    """core/optim.py's projected L-BFGS (same arguments and iterates) with its state on the device."""
    if not 1 <= history <= SLOTS:
        raise ValueError(f"history must be 1 to {SLOTS} (the update graphs' slots), not {history}")
    x0 = np.clip(np.asarray(x0, dtype=np.float32), lower, upper)
    x, g, x_try, g_try, d = (graphs.vector(x0.shape) for _ in range(5))
    upload(x0, into=x)
    s = [graphs.vector(x0.shape) for _ in range(history + 1)]
    y = [graphs.vector(x0.shape) for _ in range(history + 1)]
    pairs, budget = _Pairs(history), _Budget(fun, max_evals, graphs, x0.shape)
    bounds = {"lower": np.float32(lower), "upper": np.float32(upper)}
    try:
        f = budget(x, g)
        while True:
            here = {"x": x, "g": g, **bounds}
            memory = pairs.inputs(s, y, x, rho_dtype=graphs.rho_dtype)
            gf_max, slope = graphs.scalars("lbfgs-direction", {**here, **memory}, {"d": d})
            if gf_max <= tol:  # no free pixel left to move
                break
            if not pairs or slope >= 0:  # first iteration, or curvature memory gone stale: restart
                pairs.clear()
                gamma = first_step / gf_max
                steepest = pairs.inputs(s, y, x, restart_gamma=gamma, rho_dtype=graphs.rho_dtype)
                graphs.run("lbfgs-direction", {**here, **steepest}, {"d": d})
            t, accepted = 1.0, False
            for _ in range(max_backtracks):
                budget.check()
                trial = {"d": d, "t": np.float32(t), **here}
                (armijo,) = graphs.scalars("trial", trial, {"x_try": x_try})  # g·(x_try − x)
                f_new = budget(x_try, g_try)
                if math.isfinite(f_new) and f_new <= f + c1 * armijo:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:  # no decrease along d: forget the curvature and try steepest descent
                if not pairs:
                    break
                pairs.clear()
                continue
            b = pairs.spare()
            new = {"x": x, "x_try": x_try, "g": g, "g_try": g_try}
            pairs.add(b, *graphs.scalars("lbfgs-pair", new, {"s": s[b], "y": y[b]}))
            x, x_try, g, g_try, f = x_try, x, g_try, g, f_new
    except _Spent:
        pass
    return budget.result(x)


def adam(
    fun: DeviceLoss,
    x0: np.ndarray,
    max_evals: int,
    graphs: UpdateGraphs,
    lower: float = 0.0,
    upper: float = 1.0,
    lr: float = 0.02,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-12,
) -> OptimResult:
    """core/optim.py's projected Adam (same arguments and iterates) with its state on the device."""
    x0 = np.clip(np.asarray(x0, dtype=np.float32), lower, upper)
    zeros = np.zeros_like(x0)
    x, g, x_new = graphs.vector(x0.shape, x0), graphs.vector(x0.shape), graphs.vector(x0.shape)
    m, v, m_new, v_new = (graphs.vector(x0.shape, zeros) for _ in range(4))
    budget = _Budget(fun, max_evals, graphs, x0.shape)
    bounds = {"lower": np.float32(lower), "upper": np.float32(upper)}
    for k in range(1, max_evals + 1):
        budget(x, g)
        if k == max_evals:  # the step after the last evaluation would never be evaluated
            break
        values = {
            "beta1": beta1,
            "1-beta1": 1 - beta1,
            "beta2": beta2,
            "1-beta2": 1 - beta2,
            "1-beta1^k": 1 - beta1**k,
            "1-beta2^k": 1 - beta2**k,
            "lr": lr,
            "eps": eps,
        }
        coef = np.array([values[name] for name in ADAM_COEFFICIENTS], np.float32)
        step = {"x": x, "g": g, "m": m, "v": v, "coef": coef, **bounds}
        graphs.run("adam", step, {"x_new": x_new, "m_new": m_new, "v_new": v_new})
        x, x_new, m, m_new, v, v_new = x_new, x, m_new, m, v_new, v
    return budget.result(x)


OPTIMISERS = {"lbfgs": lbfgs, "adam": adam}
