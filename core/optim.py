"""Pixel optimisers: projected L-BFGS (default) and Adam, both keeping pixels in [lower, upper].

Budget unit: one *evaluation* of loss and gradient (one run of the grad graph) is one step. Every
optimiser here stops after exactly `max_evals` evaluations (or earlier when converged), so the engine's
progress, ETA and cancel checks count the real cost, and two optimisers can be compared at equal cost.

Bounds (why projection, not a sigmoid reparametrisation): a sigmoid's gradient vanishes at 0 and 1,
where photographs have many pixels (black shadows, blown-out sky), and it distorts the curvature that
L-BFGS estimates. Projection keeps the problem's own geometry: pixels at a bound whose gradient pushes
outwards are frozen for that iteration (the active set), the quasi-Newton direction is computed on the
free pixels, and the line search runs along the projected path clip(x + t·d) with the Armijo
condition measured on the actual (projected) displacement (Bertsekas' projected Armijo rule).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LossAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass
class OptimResult:
    x: np.ndarray  # best point seen (lowest loss), within bounds
    loss: float  # its loss
    evals: int  # evaluations spent


class _Budget:
    """Counts evaluations and remembers the best point; raises _Spent when the budget is used up."""

    def __init__(self, fun: LossAndGrad, max_evals: int):
        self.fun, self.max_evals, self.evals = fun, max_evals, 0
        self.best_x: np.ndarray | None = None
        self.best_f = np.inf

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self.evals >= self.max_evals:
            raise _Spent
        self.evals += 1
        f, g = self.fun(x)
        f = float(f)
        if f < self.best_f:
            self.best_f, self.best_x = f, x.copy()
        return f, g


class _Spent(Exception):
    pass


def lbfgs(
    fun: LossAndGrad,
    x0: np.ndarray,
    max_evals: int,
    lower: float = 0.0,
    upper: float = 1.0,
    history: int = 10,
    first_step: float = 0.05,
    c1: float = 1e-4,
    max_backtracks: int = 8,
    tol: float = 1e-10,
) -> OptimResult:
    """Minimise fun over the box [lower, upper] with projected L-BFGS and backtracking Armijo.

    first_step: largest pixel change of the very first (steepest descent) step, in [0,1] units; later
    steps start at t=1, the quasi-Newton step, which is accepted most of the time (one evaluation).
    """
    budget = _Budget(fun, max_evals)
    x = np.clip(np.asarray(x0, dtype=np.float32), lower, upper)
    pairs: deque[tuple[np.ndarray, np.ndarray, float, float]] = deque(
        maxlen=history
    )  # (s, y, 1/(y·s), y·s/y·y)
    try:
        f, g = budget(x)
        while True:
            free = ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))
            gf = np.where(free, g, 0).astype(np.float32, copy=False)
            if float(np.abs(gf).max()) <= tol:
                break
            d = _two_loop(gf, pairs) * free
            slope = float(np.vdot(gf, d))
            if not pairs or slope >= 0:  # first iteration, or curvature memory gone stale: restart
                pairs.clear()
                d = -gf * (first_step / float(np.abs(gf).max()))
            t, accepted = 1.0, False
            for _ in range(max_backtracks):
                x_new = np.clip(x + t * d, lower, upper)
                f_new, g_new = budget(x_new)
                if np.isfinite(f_new) and f_new <= f + c1 * float(np.vdot(g, x_new - x)):
                    accepted = True
                    break
                t *= 0.5
            if (
                not accepted
            ):  # no decrease along d: forget the curvature and try steepest descent next
                if not pairs:
                    break
                pairs.clear()
                continue
            s, y = (x_new - x).ravel(), (g_new - g).ravel()
            sy, yy = float(np.dot(s, y)), float(np.dot(y, y))
            if sy > 1e-10 * yy:  # keep only pairs with positive curvature (H stays SPD)
                pairs.append((s, y, 1.0 / sy, sy / yy))
            x, f, g = x_new, f_new, g_new
    except _Spent:
        pass
    return OptimResult(
        budget.best_x if budget.best_x is not None else x, budget.best_f, budget.evals
    )


def _two_loop(g: np.ndarray, pairs: deque) -> np.ndarray:
    """L-BFGS two-loop recursion: returns −H·g for the inverse-Hessian estimate H held in pairs.
    float32 with BLAS dot products (pairwise sums): at 2048 px a float64 copy of every vector would
    double the memory traffic of what is, on a GPU, a noticeable share of each step."""
    q = g.ravel().astype(np.float32)  # a copy: updated in place below
    alphas = []
    for s, y, rho, _ in reversed(pairs):
        a = rho * float(np.dot(s, q))
        q -= np.float32(a) * y
        alphas.append(a)
    if pairs:
        q *= np.float32(
            pairs[-1][3]
        )  # H0 = γI, γ = s·y / y·y of the newest pair (Nocedal & Wright 7.20)
    for (s, y, rho, _), a in zip(pairs, reversed(alphas)):
        b = rho * float(np.dot(y, q))
        q += np.float32(a - b) * s
    return (-q).reshape(g.shape)


def adam(
    fun: LossAndGrad,
    x0: np.ndarray,
    max_evals: int,
    lower: float = 0.0,
    upper: float = 1.0,
    lr: float = 0.02,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-12,
) -> OptimResult:
    """Adam (Kingma & Ba 2015) on the pixels, projected onto [lower, upper] after every step.

    lr is in pixel units: Adam's normalised step moves each pixel by about lr per step early on.
    eps is tiny because the engine's losses are normalised per element and their gradients are small.
    """
    budget = _Budget(fun, max_evals)
    x = np.clip(np.asarray(x0, dtype=np.float32), lower, upper)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for k in range(1, max_evals + 1):  # exactly the budget: _Spent is never raised here
        _, g = budget(x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step = lr * (m / (1 - beta1**k)) / (np.sqrt(v / (1 - beta2**k)) + eps)
        x = np.clip(x - step, lower, upper).astype(np.float32, copy=False)
    return OptimResult(
        budget.best_x if budget.best_x is not None else x, budget.best_f, budget.evals
    )


OPTIMISERS = {"lbfgs": lbfgs, "adam": adam}
