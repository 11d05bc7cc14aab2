"""core.loss: the seed document's worked examples, exactly, and the two forms of the style cost."""

import numpy as np
import pytest

from onnxstyle.core.loss import (
    content_cost,
    gram,
    style_cost,
    style_layer_cost,
    total_cost,
    total_variation,
)


def test_gram_worked_example():
    # 3 channels of a 2x2 activation map, layout [1, n_C, n_H, n_W].
    a = np.array([[2, 1, 1, 0], [1, 2, 0, 1], [1, 0, 1, 2]], np.float32).reshape(1, 3, 2, 2)
    assert gram(a).tolist() == [[6, 4, 3], [4, 6, 3], [3, 3, 6]]
    assert gram(a[0]).tolist() == [[6, 4, 3], [4, 6, 3], [3, 3, 6]]
    assert gram(a, normalize=True).tolist() == [
        [1.5, 1.0, 0.75],
        [1.0, 1.5, 0.75],
        [0.75, 0.75, 1.5],
    ]


def test_content_worked_example():
    # A 2x3 single-channel map; the differences' squares sum to 0.09.
    a_C = np.array([[0.5, 0.2, 0.0], [0.3, 0.9, 0.1]]).reshape(1, 1, 2, 3)
    a_G = np.array([[0.4, 0.4, 0.0], [0.1, 0.9, 0.1]]).reshape(1, 1, 2, 3)
    assert content_cost(a_C, a_G) == pytest.approx(0.045, abs=1e-15)


def test_style_cost_matches_the_formula():
    rng = np.random.default_rng(0)
    a_S, a_G = rng.random((1, 4, 3, 5)), rng.random((1, 4, 3, 5))
    n_C, n_H, n_W = 4, 3, 5
    expected = 0.0
    for k in range(n_C):
        for k2 in range(n_C):
            g_S = sum(a_S[0, k, i, j] * a_S[0, k2, i, j] for i in range(n_H) for j in range(n_W))
            g_G = sum(a_G[0, k, i, j] * a_G[0, k2, i, j] for i in range(n_H) for j in range(n_W))
            expected += (g_S - g_G) ** 2
    expected /= (2 * n_H * n_W * n_C) ** 2
    assert style_cost(a_S, a_G) == pytest.approx(expected, rel=1e-12)
    # The graphs' form, from Grams normalised by n_H·n_W, is the same number.
    assert style_layer_cost(gram(a_S, True), gram(a_G, True)) == pytest.approx(expected, rel=1e-12)


def test_total_variation_and_total_cost():
    x = np.zeros((3, 3, 3), np.float32)  # [H,W,3]
    x[1, 1, 0] = 1.0  # one bright pixel: 2 vertical + 2 horizontal unit differences, one channel
    assert total_variation(x) == 4.0
    assert total_variation(x.transpose(2, 0, 1)[None]) == 4.0
    assert (
        total_cost(
            2.0,
            [1.0, 3.0],
            alpha=10,
            beta=100,
            style_layer_weights=[0.5, 0.25],
            J_tv=4.0,
            tv_weight=0.5,
        )
        == 10 * 2 + 100 * (0.5 + 0.75) + 2
    )
