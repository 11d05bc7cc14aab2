"""Optical flow between content frames, the warp it gives, and where it can be trusted (Ruder,
Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016, §3.2).

The flow is OpenCV's DIS (Kroeger et al. 2016): fast on a CPU, and good enough for a mask that
only has to say where the previous result may be carried over. It is computed on the *content*
frames, forwards and backwards; the stylised frames are never measured.

Conventions: images are float32 [H,W,3] in [0,1]; a flow is float32 [H,W,2] of (dx, dy) offsets in
pixels; `Flow.backward[p]` points from pixel p of frame t to where it was in frame t−1, so
`warp(previous, flow)` lays frame t−1's pixels over frame t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StyleError


class FlowError(StyleError):
    """The flow could not be computed (the frames then start unwarped)."""


@dataclass(frozen=True)
class Flow:
    backward: np.ndarray  # [H,W,2]: frame t → t−1
    mask: np.ndarray  # [H,W] float32, 1 where the warp can be trusted, 0 where not (c in the paper)


def _cv2():
    try:
        import cv2  # noqa: PLC0415  (optional dependency: the video extra)
    except ImportError as e:
        raise FlowError(
            "frames need OpenCV for the optical flow: pip install 'onnxstyle[video]'"
        ) from e
    return cv2


def check_opencv() -> None:
    """A FlowError (one line: what to install) unless OpenCV can be imported; checked before the
    first frame, so that a missing OpenCV is not taken for a flow that failed."""
    _cv2()


def _gray8(image: np.ndarray) -> np.ndarray:
    """DIS works on 8-bit grey images (Rec. 601 luma, as OpenCV's own conversion)."""
    luma = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    return np.ascontiguousarray(np.clip(luma * 255 + 0.5, 0, 255).astype(np.uint8))


def dis_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The flow f with source(p) ≈ target(p + f(p)), by DIS at OpenCV's "medium" preset (its
    variational refinement smooths the field, which the motion-boundary test relies on)."""
    cv2 = _cv2()
    # (OpenCV's bundled type stubs lack the DIS factory)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # pyright: ignore[reportAttributeAccessIssue]
    try:
        flow = dis.calc(_gray8(source), _gray8(target), None)
    except cv2.error as e:
        raise FlowError(f"optical flow failed: {str(e).strip().splitlines()[-1]}") from e
    if flow is None or flow.shape[:2] != source.shape[:2] or not np.isfinite(flow).all():
        raise FlowError("optical flow failed: DIS gave no finite flow")
    return flow.astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled at p + flow(p) (bicubic; outside the frame: the nearest edge pixel — the mask
    sets those pixels' weight to 0). Bicubic, not bilinear: each frame starts from a warped result,
    and bilinear's blur, compounded frame after frame, cost the style (the worst frame's style error
    1.14x the independent frame's against 1.08x: docs/decisions/temporal-weight.md). Values may
    overshoot [0, 1] slightly; the engine clips its start image."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        interpolation=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )


def consistency_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s c: 0 where a pixel of frame t was hidden in frame t−1 (the forward flow,
    warped to frame t, does not undo the backward one), on motion boundaries (a steep backward
    flow), or where it came from outside the frame; 1 elsewhere. Their thresholds, in pixels."""
    h, w = backward.shape[:2]
    forward_at = warp(forward, backward)  # w̃: the forward flow where each pixel came from
    sum_sq = np.sum((forward_at + backward) ** 2, axis=2)
    norms = np.sum(forward_at**2, axis=2) + np.sum(backward**2, axis=2)
    disoccluded = sum_sq > 0.01 * norms + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    steep = du_x**2 + du_y**2 + dv_x**2 + dv_y**2
    boundary = steep > 0.01 * np.sum(backward**2, axis=2) + 0.002
    grid_x, grid_y = np.meshgrid(np.arange(w), np.arange(h))
    x, y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(disoccluded | boundary | outside)).astype(np.float32)


def optical_flow(previous: np.ndarray, current: np.ndarray) -> Flow:
    """The flow from content frame `current` back to `previous`, and its consistency mask."""
    backward = dis_flow(current, previous)
    forward = dis_flow(previous, current)
    return Flow(backward=backward, mask=consistency_mask(backward, forward))


def frame_change(current: np.ndarray, previous: np.ndarray, flow: Flow) -> float:
    """mean |current − ω(previous)| over the pixels the mask keeps (and the channels): how much a
    frame changes where the motion is known."""
    kept = flow.mask > 0
    if not kept.any():
        return 0.0
    return float(np.abs(current - warp(previous, flow.backward))[kept].mean())


def flicker(results: list[np.ndarray], contents: list[np.ndarray]) -> float:
    """The issue's flicker number: the mean over frame pairs of frame_change on the results,
    divided by the same for the content frames (the flow from the contents). 1 = the results
    change as much as the video itself; independent frames are far above."""
    styled = content = 0.0
    for t in range(1, len(contents)):
        flow = optical_flow(contents[t - 1], contents[t])
        styled += frame_change(results[t], results[t - 1], flow)
        content += frame_change(contents[t], contents[t - 1], flow)
    return styled / max(content, 1e-12)
