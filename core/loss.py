"""The style-transfer loss in numpy, term by term as DEVELOPERS.md's "The maths" defines it (the
seed document's definitions): the reference the graphs and the worked examples are checked against.

Activations use the graphs' layout, [1, n_C, n_H, n_W] (or [n_C, n_H, n_W]). Sums are taken in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _channels_first(a: np.ndarray) -> np.ndarray:
    """[1,C,h,w] or [C,h,w] -> float64 [C, h·w]."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"expected one activation map [1,C,h,w], got {list(a.shape)}")
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"expected activations [1,C,h,w] or [C,h,w], got {list(a.shape)}")
    return a.reshape(a.shape[0], -1)


def gram(a: np.ndarray, normalize: bool = False) -> np.ndarray:
    """Gram matrix G = F Fᵀ of activations (F = [n_C, n_H·n_W]); divided by n_H·n_W when normalize."""
    f = _channels_first(a)
    g = f @ f.T
    return g / f.shape[1] if normalize else g


def content_cost(a_C: np.ndarray, a_G: np.ndarray) -> float:
    """J_content = 1/2 Σ (a(C) - a(G))² (no size normalisation, as in the paper)."""
    return 0.5 * float(np.sum((np.asarray(a_C, np.float64) - np.asarray(a_G, np.float64)) ** 2))


def style_layer_cost(gram_S: np.ndarray, gram_G: np.ndarray) -> float:
    """J_style for one layer from normalised Grams Ĝ [C,C]: 1/(2 n_C)² Σ (Ĝ(S) - Ĝ(G))² (the graphs' form)."""
    gram_S, gram_G = np.asarray(gram_S, np.float64), np.asarray(gram_G, np.float64)
    n_C = gram_S.shape[0]
    return float(np.sum((gram_S - gram_G) ** 2)) / (2 * n_C) ** 2


def style_cost(a_S: np.ndarray, a_G: np.ndarray) -> float:
    """J_style for one layer from same-sized activations: 1/(2 n_H n_W n_C)² Σ (G(S) - G(G))²."""
    f_S = _channels_first(a_S)
    n_C, n_HW = f_S.shape
    return float(np.sum((gram(a_S) - gram(a_G)) ** 2)) / (2 * n_HW * n_C) ** 2


def relative_gram_error(gram_T: np.ndarray, gram_G: np.ndarray) -> float:
    """‖Ĝ(G) − Ĝ(T)‖_F / ‖Ĝ(T)‖_F for one layer: how far a Gram is from its target, relatively."""
    gram_T, gram_G = np.asarray(gram_T, np.float64), np.asarray(gram_G, np.float64)
    return float(np.linalg.norm(gram_G - gram_T)) / max(float(np.linalg.norm(gram_T)), 1e-30)


def style_distance(targets: Mapping[str, np.ndarray], grams: Mapping[str, np.ndarray]) -> float:
    """The judge's measure: the mean over the targets' layers of relative_gram_error (both keyed by
    layer name). The engine steers strength by it, the judge scores results by it; how the style
    image is resized before its Grams are taken is each caller's (and said there)."""
    return float(np.mean([relative_gram_error(targets[k], grams[k]) for k in targets]))


def layer_grams(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A features graph's outputs {"gram_<layer>": Ĝ, ...} as {layer: Ĝ}."""
    return {k.removeprefix("gram_"): v for k, v in features.items() if k.startswith("gram_")}


def total_variation(image: np.ndarray) -> float:
    """J_tv: Σ squared differences of neighbouring pixels, both directions; image [H,W,3] or [1,3,H,W]."""
    x = np.asarray(image, np.float64)
    rows, cols = (0, 1) if x.ndim == 3 else (2, 3)
    return float(np.sum(np.diff(x, axis=rows) ** 2) + np.sum(np.diff(x, axis=cols) ** 2))


def total_cost(
    J_content: float,
    J_style: Sequence[float],
    alpha: float,
    beta: float,
    style_layer_weights: Sequence[float],
    J_tv: float = 0.0,
    tv_weight: float = 0.0,
) -> float:
    """J = α J_content + β Σ_l λ[l] J_style[l] + tv_weight J_tv."""
    return alpha * J_content + beta * float(np.dot(style_layer_weights, J_style)) + tv_weight * J_tv


def temporal_cost(image: np.ndarray, previous: np.ndarray, mask: np.ndarray) -> float:
    """J_temporal (Ruder et al. 2016, eq. 7): (1/D)·Σ c ⊙ (x − ω(x_prev))², D = H·W·3; image and
    the warped previous result `previous` [H,W,3], the mask c [H,W] (0: occluded or a motion edge)."""
    d = np.asarray(image, np.float64) - np.asarray(previous, np.float64)
    return float(np.sum(np.asarray(mask, np.float64)[..., None] * d * d) / d.size)
