"""The style-transfer loss in PyTorch with autograd: the reference the ONNX graphs are checked against.

    from onnxstyle.exporter.reference import ReferenceVGG
    net = ReferenceVGG.load(weights_path=None, pooling="avg")   # same weights/pooling as the graphs
    feats = net.features(image)           # image: torch float32 [1,3,H,W], RGB in [0,1]
    targets = net.targets(content_image, style_image)   # {"gram_relu1_1": .., "content": ..}
    terms = net.loss(image, targets, alpha, beta, layer_weights, tv_weight)
    terms.total.backward()                # image.grad = d loss / d image

`features(image)` returns {"gram_<style layer>": [C,C] normalised by n_H·n_W, "content_relu4_2": [1,C,h,w]}
(the features graph's outputs). `loss(...)` returns `ReferenceLoss(total, content, style [L], tv)`, the
grad graph's `loss`, `content_loss`, `style_losses`, `tv_loss`; all differentiable. The maths is
DEVELOPERS.md's and exporter/build.py's docstring; here it is written the obvious way, with explicit
preprocessing (channel order, mean, scale) instead of the graph's folded form, so the two check each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .build import CHANNELS, CONTENT_LAYER, SEQUENCE, STYLE_LAYERS
from .weights import VGGWeights, load_weights


@dataclass
class ReferenceLoss:
    total: torch.Tensor  # [] α·content + β·Σ λ·style + tv_weight·tv
    content: torch.Tensor  # [] J_content (unweighted)
    style: torch.Tensor  # [L] J_style per layer (unweighted), STYLE_LAYERS order
    tv: torch.Tensor  # [] J_tv (unweighted)


def gram(a: torch.Tensor) -> torch.Tensor:
    """Ĝ = F Fᵀ / (n_H n_W) for activations [1,C,h,w]."""
    _, c, h, w = a.shape
    f = a.reshape(c, h * w)
    return f @ f.t() / (h * w)


class ReferenceVGG(torch.nn.Module):
    """VGG19 up to relu5_1 (frozen) and the style-transfer loss, differentiable w.r.t. the image."""

    def __init__(self, weights: VGGWeights, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', not {pooling!r}")
        self.pooling = pooling
        self.perm = list(weights.perm)
        self.register_buffer(
            "mean", torch.tensor(weights.mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        )
        self.register_buffer(
            "scale", torch.tensor(weights.scale, dtype=torch.float32).reshape(1, 3, 1, 1)
        )
        for name, conv in weights.convs.items():
            self.register_buffer(f"{name}_W", torch.from_numpy(conv.dense().copy()))
            self.register_buffer(f"{name}_b", torch.from_numpy(conv.bias.copy()))

    @classmethod
    def load(cls, weights_path: Path | str | None = None, pooling: str = "avg") -> ReferenceVGG:
        return cls(load_weights(weights_path), pooling).eval()

    def activations(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """ReLU outputs up to relu5_1 for an RGB [0,1] image [1,3,H,W]."""
        x = (image[:, self.perm] - self.mean) * self.scale
        acts = {}
        for layer in SEQUENCE:
            if layer.startswith("conv"):
                x = F.relu(
                    F.conv2d(x, getattr(self, f"{layer}_W"), getattr(self, f"{layer}_b"), padding=1)
                )
                acts[f"relu{layer[4:]}"] = x
            else:
                pool = F.avg_pool2d if self.pooling == "avg" else F.max_pool2d
                x = pool(x, 2, 2)
        return acts

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The features graph's outputs: normalised grams of the style layers and relu4_2."""
        acts = self.activations(image)
        out = {f"gram_{layer}": gram(acts[layer]) for layer in STYLE_LAYERS}
        out[f"content_{CONTENT_LAYER}"] = acts[CONTENT_LAYER]
        return out

    def loss(
        self,
        image: torch.Tensor,
        targets: dict[str, torch.Tensor],
        alpha: float,
        beta: float,
        layer_weights: Sequence[float],
        tv_weight: float = 0.0,
    ) -> ReferenceLoss:
        """The grad graph's loss; `targets` holds gram_<layer> (style) and content_relu4_2 (content)."""
        acts = self.activations(image)
        content = 0.5 * ((acts[CONTENT_LAYER] - targets[f"content_{CONTENT_LAYER}"]) ** 2).sum()
        style = torch.stack(
            [
                ((gram(acts[layer]) - targets[f"gram_{layer}"]) ** 2).sum()
                / (2 * CHANNELS[layer]) ** 2
                for layer in STYLE_LAYERS
            ]
        )
        tv = ((image[:, :, 1:, :] - image[:, :, :-1, :]) ** 2).sum() + (
            (image[:, :, :, 1:] - image[:, :, :, :-1]) ** 2
        ).sum()
        lam = torch.as_tensor(layer_weights, dtype=style.dtype)
        total = alpha * content + beta * (lam * style).sum() + tv_weight * tv
        return ReferenceLoss(total=total, content=content, style=style, tv=tv)

    def targets(
        self, content_image: torch.Tensor, style_image: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Style grams from style_image and relu4_2 from content_image, detached."""
        with torch.no_grad():
            out = {k: v for k, v in self.features(style_image).items() if k.startswith("gram_")}
            out[f"content_{CONTENT_LAYER}"] = self.activations(content_image)[CONTENT_LAYER]
        return out
