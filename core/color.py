"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2017, "Preserving color in neural
artistic style transfer"): luminance-only transfer and colour histogram (mean + covariance) matching.

Images are float32 [H,W,3] RGB in [0,1].
"""

from __future__ import annotations

import numpy as np

# NTSC YIQ (the paper's choice): Y carries luminance, I and Q the chroma.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    np.float64,
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return (yiq.astype(np.float64) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of YIQ, [H,W]."""
    return rgb_to_yiq(rgb)[..., 0]


def gray3(y: np.ndarray) -> np.ndarray:
    """A luminance plane as a 3-channel image (R=G=B=Y): what the network sees in luminance mode."""
    return np.repeat(np.clip(y, 0, 1)[..., None], 3, axis=2).astype(np.float32)


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """Shift and scale the style's luminance to the content's mean and std (paper, eq. 1), so the
    transfer changes texture, not overall brightness or contrast."""
    s_mean, s_std = float(style_y.mean()), float(style_y.std())
    c_mean, c_std = float(content_y.mean()), float(content_y.std())
    return ((style_y - s_mean) * (c_std / max(s_std, 1e-6)) + c_mean).astype(np.float32)


def recombine(result_y: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """The stylised luminance with the content's I and Q (same size), back to RGB in [0,1]."""
    yiq = rgb_to_yiq(content_rgb)
    yiq[..., 0] = result_y
    return np.clip(yiq_to_rgb(yiq), 0, 1)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric (inverse) square root of a 3x3 covariance, regularised against flat images."""
    w, v = np.linalg.eigh(cov + 1e-5 * np.eye(3))
    w = np.maximum(w, 1e-8)
    return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T


def match_color_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Transform the style's colours so their mean and covariance equal the content's (paper §2.2):
    x' = A(x − μ_s) + μ_c with A = Σ_c^½ Σ_s^−½ (the symmetric "Image Analogies" form, which keeps
    hues from rotating as Cholesky can). The style then carries only texture; the result keeps the
    content's palette."""
    s = style.reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = s.mean(0), c.mean(0)
    a = _sqrtm(np.cov(c, rowvar=False)) @ _sqrtm(np.cov(s, rowvar=False), inverse=True)
    out = (s - mu_s) @ a.T + mu_c
    return np.clip(out, 0, 1).reshape(style.shape).astype(np.float32)
