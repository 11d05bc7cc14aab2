"""The pixel optimisers on problems with known answers (no ONNX needed)."""

import numpy as np

from onnxstyle.core.optim import adam, lbfgs


def box_quadratic(target: np.ndarray, scales: np.ndarray):
    """f = ½ Σ s·(x − t)², an ill-conditioned bowl whose minimum over [0,1] is clip(t, 0, 1)."""

    def fun(x):
        r = x - target
        return float(0.5 * np.sum(scales * r * r)), (scales * r).astype(np.float32)

    return fun


def test_lbfgs_finds_the_box_constrained_minimum():
    rng = np.random.default_rng(0)
    target = rng.uniform(-0.5, 1.5, (8, 8, 3)).astype(np.float32)  # many optima lie outside the box
    scales = rng.uniform(0.1, 100, target.shape).astype(np.float32)
    res = lbfgs(box_quadratic(target, scales), np.full_like(target, 0.5), max_evals=200)
    best = np.clip(target, 0, 1)
    f_best = box_quadratic(target, scales)(best)[0]
    assert res.loss - f_best < 1e-6 * f_best  # at float32 resolution of the loss
    assert np.abs(res.x - best).max() < 1e-2  # the flattest directions (s = 0.1) converge last
    assert res.x.min() >= 0 and res.x.max() <= 1


def test_lbfgs_on_rosenbrock_in_a_box():
    def rosen(x):
        a, b = float(x[0]), float(x[1])
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], np.float32)
        return f, g

    res = lbfgs(
        rosen, np.array([0.1, 0.9], np.float32), max_evals=300, lower=0, upper=2, first_step=0.1
    )
    assert res.loss < 1e-4


def test_budget_is_exact_and_best_point_is_returned():
    calls = []
    fun = box_quadratic(np.full((4, 4, 3), 2.0, np.float32), np.ones((4, 4, 3), np.float32))

    def counted(x):
        calls.append(1)
        return fun(x)

    res = lbfgs(counted, np.zeros((4, 4, 3), np.float32), max_evals=7)
    assert len(calls) == res.evals <= 7
    assert res.loss == fun(res.x)[0]


def test_adam_reaches_the_minimum_and_stays_in_bounds():
    rng = np.random.default_rng(1)
    target = rng.uniform(-0.5, 1.5, (8, 8, 3)).astype(np.float32)
    res = adam(
        box_quadratic(target, np.ones_like(target)),
        np.full_like(target, 0.5),
        max_evals=300,
        lr=0.05,
    )
    assert res.evals == 300
    assert np.abs(res.x - np.clip(target, 0, 1)).max() < 0.02
