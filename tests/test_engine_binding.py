"""The IOBinding path of StyleGraph (used on CUDA) gives the plain run's numbers. ONNX Runtime's CPU
device stands in for the GPU here: the same binding calls, real sessions, real graphs."""

import numpy as np

from onnxstyle.core.graph import LossWeights, StyleGraph, Targets


def test_bound_run_equals_plain_run_and_rebinds_new_targets():
    rng = np.random.default_rng(0)
    content, style, image = (rng.uniform(0, 1, (40, 48, 3)).astype(np.float32) for _ in range(3))
    plain, bound = StyleGraph.load("avg", "cpu"), StyleGraph.load("avg", "cpu")
    bound._bind_device = ("cpu", 0)  # what a CUDA session sets to ("cuda", 0)
    weights = LossWeights(alpha=1e-3, beta=1e-5, style_layer_weights=(1, 1, 1, 1, 1), tv_weight=1.0)
    for source in (
        content,
        style,
    ):  # second round: new targets must be rebound, not the old ones reused
        targets = Targets.from_features(content=plain.features(source), style=plain.features(style))
        for step in range(2):
            x = np.clip(image + 0.01 * step, 0, 1)
            (t1, g1), (t2, g2) = (
                plain.loss_and_grad(x, targets, weights),
                bound.loss_and_grad(x, targets, weights),
            )
            assert t1.total == t2.total and np.array_equal(g1, g2)
            assert np.array_equal(t1.style, t2.style)
    assert bound._binding is not None


def test_bound_outputs_are_not_overwritten_by_the_next_step():
    """The optimiser keeps the previous gradient (L-BFGS's y = g_new − g): it must stay as it was."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (40, 48, 3)).astype(np.float32)
    graph = StyleGraph.load("avg", "cpu")
    graph._bind_device = ("cpu", 0)
    targets = Targets.from_features(content=graph.features(x), style=graph.features(x[::-1].copy()))
    weights = LossWeights(alpha=1e-3, beta=1e-5, style_layer_weights=(1, 1, 1, 1, 1), tv_weight=1.0)
    _, first = graph.loss_and_grad(x, targets, weights)
    kept = first.copy()
    _, second = graph.loss_and_grad(np.clip(x + 0.1, 0, 1), targets, weights)
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
