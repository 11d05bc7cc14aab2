"""The pixel optimisers of core/optim.py with their state on the device: image, gradient, direction,
L-BFGS pairs and Adam moments are OrtValues where the grad graph runs, and the update maths is small
ONNX graphs (exporter/optim_build.py, shipped as core/models/optim-*.onnx) chained through IOBinding.
Per evaluation only scalars cross to the host: the loss, dot products, max|gf|, the NaN check.

L-BFGS is vector-free (Chen, Wang & Zhou 2014): the pairs stay on the device, the graphs give B·gf
(B = [S; Y]) and each new pair's row of B·Bᵀ, the two-loop recursion runs on those (2m)² numbers on
the host, and the direction is one combination d = (c₀·gf + Bᵀc)·free. That is the two-loop
recursion exactly, so the iterates are core/optim.py's up to float32 rounding (tests compare them).
A graph can't write a buffer it reads in the same run: x/g and their trial copies swap roles, and
the m pairs live in m + 1 buffers, the spare taking each new pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np

from .graph import PACKAGE_MODELS
from .optim import OptimResult, _Spent
from .runtime import PLACES, download, empty, make_session, upload

SLOTS = 10  # L-BFGS pairs the graphs take (the engine's history); unused ones get coefficient 0
GRAPHS = ("check", "copy", "trial", "lbfgs-dots", "lbfgs-direction", "lbfgs-pair", "adam")
ADAM_COEFFICIENTS = ("beta1", "1-beta1", "beta2", "1-beta2", "1-beta1^k", "1-beta2^k", "lr", "eps")

DeviceLoss = Callable[..., float]
"""fun(x, g) -> loss at x, with its gradient written into g (x, g: OrtValues of x0's shape)."""


class UpdateGraphs:
    """The update graphs' sessions on one device, the vectors they work on, and their runs."""

    def __init__(self, device: str) -> None:
        self.place = PLACES[device]
        self._sessions = {
            name: make_session(PACKAGE_MODELS / f"optim-{name}.onnx", device) for name in GRAPHS
        }
        self._bindings = {name: session.io_binding() for name, session in self._sessions.items()}
        self._small: dict[tuple[str, str], object] = {}  # (graph, name) -> scalar/coef OrtValue
        for name, session in self._sessions.items():  # each graph's scalar output, bound once
            for out in session.get_outputs():
                if out.name in ("dots", "bad"):
                    self._small[name, out.name] = empty(out.shape, self.place)
                    self._bindings[name].bind_ortvalue_output(out.name, self._small[name, out.name])

    def vector(self, shape: tuple[int, ...], fill: np.ndarray | None = None):
        """A float32 vector on the device, uninitialised or uploaded from `fill`."""
        value = empty(shape, self.place)
        if fill is not None:
            upload(fill, into=value)
        return value

    def run(self, name: str, inputs: dict, outputs: dict | None = None) -> np.ndarray | None:
        """One run: inputs are OrtValues, or host numbers (uploaded into fixed small buffers);
        `outputs` binds the vector outputs to OrtValues; the scalar output, if any, comes back
        (as float64, for the host's arithmetic)."""
        binding = self._bindings[name]
        for key, value in inputs.items():
            if isinstance(value, (float, np.generic, np.ndarray)):
                value = self._small_input(name, key, np.asarray(value, np.float32))
            binding.bind_ortvalue_input(key, value)
        for key, value in (outputs or {}).items():
            binding.bind_ortvalue_output(key, value)
        self._sessions[name].run_with_iobinding(binding)
        scalars = self._small.get((name, "dots"), self._small.get((name, "bad")))
        return None if scalars is None else download(scalars).astype(np.float64)

    def _small_input(self, name: str, key: str, value: np.ndarray):
        if (name, key) not in self._small:
            self._small[name, key] = empty(value.shape, self.place)
        upload(value, into=self._small[name, key])
        return self._small[name, key]

    def finite(self, g) -> bool:
        """Whether every element of g is a finite number (the engine's NaN guard)."""
        return self.run("check", {"g": g})[0] == 0


@cache
def update_graphs(device: str) -> UpdateGraphs:
    """The update graphs for a concrete device (cpu/cuda/directml), loaded once per process."""
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
    """The L-BFGS memory as the host sees it: which of the m + 1 buffers hold pairs (oldest first),
    ρ = 1/(y·s) and γ = s·y/y·y per buffer, and the dot products y_a·s_b and y_a·y_b between them."""

    def __init__(self, history: int) -> None:
        self.history, self.held = history, []
        n = history + 1
        self.rho, self.gamma = np.zeros(n), np.zeros(n)
        self.ys, self.yy = np.zeros((n, n)), np.zeros((n, n))

    def __bool__(self) -> bool:
        return bool(self.held)

    def clear(self) -> None:
        self.held = []

    def spare(self) -> int:
        return next(b for b in range(self.history + 1) if b not in self.held)

    def slots(self, s: list, y: list, filler) -> dict:
        """The graphs' s_i, y_i inputs: held pairs oldest first, then `filler` (coefficient 0)."""
        inputs = {}
        for i in range(SLOTS):
            b = self.held[i] if i < len(self.held) else None
            inputs[f"s{i}"] = filler if b is None else s[b]
            inputs[f"y{i}"] = filler if b is None else y[b]
        return inputs

    def add(self, b: int, dots: np.ndarray) -> None:
        """Keep the pair just written to buffer b if its curvature is positive (H stays SPD);
        dots = [s·y, y·y, y·s_i…, y·y_i…] against the held pairs (lbfgs-pair graph)."""
        sy, yy = dots[0], dots[1]
        if not sy > 1e-10 * yy:
            return
        for i, a in enumerate(self.held):
            self.ys[b, a] = dots[2 + i]
            self.yy[b, a] = self.yy[a, b] = dots[2 + SLOTS + i]
        self.ys[b, b], self.yy[b, b] = sy, yy
        self.rho[b], self.gamma[b] = 1.0 / sy, sy / yy
        if len(self.held) == self.history:
            self.held.pop(0)
        self.held.append(b)

    def direction(self, dots: np.ndarray) -> tuple[np.ndarray, float]:
        """The two-loop recursion on coefficients over [gf, s_i, y_i]: returns the coefficients of
        d = −H·gf (the lbfgs-direction graph's `coef`) and the slope gf·d. dots = [gf·gf, s_i·gf…,
        y_i·gf…] (lbfgs-dots graph)."""
        h, k = self.held, len(self.held)
        sg, yg = dots[1 : 1 + k], dots[1 + SLOTS : 1 + SLOTS + k]
        ys, yy, rho = self.ys[np.ix_(h, h)], self.yy[np.ix_(h, h)], self.rho[h]
        c0, cs, cy, alphas = 1.0, np.zeros(k), np.zeros(k), np.zeros(k)
        for j in reversed(range(k)):  # q = gf − Σ a·y so far: s_j·q needs y_p·s_j of newer p
            alphas[j] = rho[j] * (c0 * sg[j] + cy[j + 1 :] @ ys[j + 1 :, j])
            cy[j] -= alphas[j]
        if k:  # H0 = γI of the newest pair (Nocedal & Wright 7.20)
            c0, cy = c0 * self.gamma[h[-1]], cy * self.gamma[h[-1]]
        for j in range(k):  # q gains s terms oldest first: y_j·q needs y_j·s_p of older p
            b = rho[j] * (c0 * yg[j] + cy @ yy[j] + cs[:j] @ ys[j, :j])
            cs[j] += alphas[j] - b
        coef = np.zeros(2 * SLOTS + 1)
        coef[0], coef[1 : 1 + k], coef[1 + SLOTS : 1 + SLOTS + k] = -c0, -cs, -cy
        return coef, float(coef[0] * dots[0] + coef[1:] @ dots[1:])


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
            slots = pairs.slots(s, y, filler=x)
            dots = graphs.run("lbfgs-dots", {"x": x, "g": g, **slots, **bounds})
            if dots[0] <= tol:  # max|gf|: no free pixel left to move
                break
            coef, slope = pairs.direction(dots[1:])
            if not pairs or slope >= 0:  # first iteration, or curvature memory gone stale: restart
                pairs.clear()
                coef = np.zeros(2 * SLOTS + 1)
                coef[0] = -first_step / dots[0]
            graphs.run(
                "lbfgs-direction", {"x": x, "g": g, **slots, "coef": coef, **bounds}, {"d": d}
            )
            t, accepted = 1.0, False
            for _ in range(max_backtracks):
                budget.check()
                trial = {"x": x, "d": d, "g": g, "t": np.float32(t), **bounds}
                (armijo,) = graphs.run("trial", trial, {"x_try": x_try})  # g·(x_try − x)
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
            new = {"x": x, "x_try": x_try, "g": g, "g_try": g_try, **slots}
            pairs.add(b, graphs.run("lbfgs-pair", new, {"s": s[b], "y": y[b]}))
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
