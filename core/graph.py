"""The VGG19 graphs as a Python API: style/content features, and the loss with its gradient.

    graph = StyleGraph.load(pooling="avg", device="cpu")
    style = graph.features(style_image)            # {"gram_relu1_1": [C,C], ..., "content_relu4_2": [1,C,h,w]}
    content = graph.features(content_image)
    targets = Targets.from_features(content=content, style=style)
    weights = LossWeights(alpha=1.0, beta=1e4, style_layer_weights=[0.2] * 5, tv_weight=0.0)
    terms, grad = graph.loss_and_grad(image, targets, weights)   # image same size as content_image

Images are float32 RGB in [0,1], either [H,W,3] or [1,3,H,W] (the graphs' layout; no copy then);
the gradient comes back in the layout the image came in. The loss is DEVELOPERS.md's ("The maths",
and the graphs' contract). Never imports torch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageError, ModelError
from .layers import (
    CONTENT_LAYER,
    DOWNSAMPLING,
    MANIFEST_FORMAT,
    POOLS,
    STYLE_LAYERS,
    layer_pixels,
    pool_pads,
)
from .runtime import PLACES, PROVIDERS, device_loop, download, make_session, to_device

PACKAGE_MODELS = Path(__file__).parent / "models"


def user_model_dir() -> Path:
    """Where `onnxstyle export` writes models: $ONNXSTYLE_MODEL_DIR, else the platform's user data folder."""
    env = os.environ.get("ONNXSTYLE_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "onnxstyle" / "models"
    return Path.home() / ".local" / "share" / "onnxstyle" / "models"


@dataclass(frozen=True)
class Manifest:
    """vgg19-<pooling>.json: what the two graphs compute and where they are."""

    pooling: str
    opset: int
    weights: str
    style_layers: tuple[str, ...]
    content_layer: str
    channels: dict[str, int]
    min_size: int
    features_path: Path
    grad_path: Path

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            _check_format(path, info)
            manifest = cls(
                pooling=info["pooling"],
                opset=int(info["opset"]),
                weights=info["weights"],
                style_layers=tuple(info["style_layers"]),
                content_layer=info["content_layer"],
                channels={k: int(v) for k, v in info["channels"].items()},
                min_size=int(info["min_size"]),
                features_path=path.parent / info["files"]["features"],
                grad_path=path.parent / info["files"]["grad"],
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(
                f"{path}: not a valid onnxstyle model manifest ({type(exc).__name__}: {exc})"
            ) from None
        if (manifest.style_layers, manifest.content_layer) != (STYLE_LAYERS, CONTENT_LAYER):
            raise ModelError(
                f"{path}: the model's loss layers ({', '.join(manifest.style_layers)}; "
                f"{manifest.content_layer}) are not the ones this onnxstyle uses: re-export it with "
                "'onnxstyle export'"
            )
        return manifest


def _check_format(path: Path, info: dict) -> None:
    """A manifest of another format would be misread field by field: refuse it by name."""
    found = info.get("format")
    if found != MANIFEST_FORMAT:
        raise ModelError(
            f"{path}: model manifest format {found!r}, but this onnxstyle reads format "
            f"{MANIFEST_FORMAT}: re-export the models with 'onnxstyle export' (or use the onnxstyle "
            "that wrote them)"
        )


def find_manifest(pooling: str = "avg", model_dir: Path | str | None = None) -> Path:
    """The first vgg19-<pooling>.json in model_dir, the user model dir, then the package's models."""
    if pooling not in ("avg", "max"):
        raise ModelError(f"unknown pooling {pooling!r}: use 'avg' or 'max'")
    folders = [Path(model_dir)] if model_dir is not None else []
    folders += [user_model_dir(), PACKAGE_MODELS]
    for folder in folders:
        path = folder / f"vgg19-{pooling}.json"
        if path.is_file():
            return path
    hint = (
        f"; make it with: onnxstyle export --pooling {pooling}"
        if pooling == "max"
        else " (broken install?)"
    )
    raise ModelError(
        f"no VGG19 {pooling}-pooling model in {', '.join(str(f) for f in folders)}{hint}"
    )


@dataclass(frozen=True)
class Targets:
    """What the generated image is pulled towards: normalised style grams per layer, content relu4_2."""

    grams: dict[str, np.ndarray]  # style layer -> [C,C] float32
    content: np.ndarray  # [1,C,h,w] float32, from a content image of the optimised image's size

    @classmethod
    def from_features(cls, content: dict[str, np.ndarray], style: dict[str, np.ndarray]) -> Targets:
        """From two `StyleGraph.features` results (content image's, style image's)."""
        grams = {
            key.removeprefix("gram_"): value
            for key, value in style.items()
            if key.startswith("gram_")
        }
        (content_key,) = [key for key in content if key.startswith("content_")]
        return cls(grams=grams, content=content[content_key])


@dataclass(frozen=True)
class LossWeights:
    """α (content), β (style), λ per style layer (manifest order), and the total-variation weight."""

    alpha: float
    beta: float
    style_layer_weights: Sequence[float]
    tv_weight: float = 0.0


@dataclass(frozen=True)
class LossTerms:
    """The grad graph's outputs as numbers: total = α·content + β·Σ λ·style + tv_weight·tv."""

    total: float
    content: float  # J_content, unweighted
    style: np.ndarray  # [L] J_style per layer, unweighted
    tv: float  # J_tv, unweighted


def as_nchw(image: np.ndarray) -> np.ndarray:
    """[H,W,3] or [1,3,H,W] float image -> contiguous float32 [1,3,H,W] (no copy when already so)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = image.transpose(2, 0, 1)[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ImageError(
            f"expected an RGB image [H,W,3] or [1,3,H,W], got shape {list(image.shape)}"
        )
    return np.ascontiguousarray(image, dtype=np.float32)


class StyleGraph:
    """The two ONNX Runtime sessions for one pooling and device; create once, call every step."""

    def __init__(self, manifest: Manifest, device: str = "cpu") -> None:
        self.manifest = manifest
        self.device = device
        self.style_layers = manifest.style_layers
        self.channels = manifest.channels
        self._features = make_session(manifest.features_path, device)
        self._grad = make_session(manifest.grad_path, device)
        self._feature_names = [o.name for o in self._features.get_outputs()]
        self._loss_names = ["loss", "content_loss", "style_losses", "tv_loss", "grad"]
        self._feed: dict[str, np.ndarray] = {}
        self._feed_for: tuple = (None, None)  # the (targets, weights) self._feed was built from
        self._feed_size: tuple[int, int] | None = None  # and the image size (height, width)
        self._binding = None  # GPU, host optimiser: an IOBinding with the constants on the device
        self._loop_binding = None  # the device loop's IOBinding (image and gradient on the device)
        self._device_feed: dict = {}  # the constants' OrtValues (bindings don't keep them alive)
        provider = self._grad.get_providers()[0]
        self.concrete_device = next(d for d, p in PROVIDERS.items() if p == provider)
        self.place = PLACES[self.concrete_device]  # where loss_on_device's OrtValues live
        self.device_loop = device_loop(self.concrete_device)
        # WebGPU: bound like CUDA where this onnxruntime allocates values there (the same probe as
        # the device loop's); else plain runs, which send every constant each evaluation
        webgpu_values = self.concrete_device == "webgpu" and self.device_loop
        self._bind_device = _ORT_DEVICE.get(provider) or (self.place if webgpu_values else None)
        """Whether the engine runs the optimiser on the device (core/device_optim.py)."""

    @classmethod
    def load(
        cls, pooling: str = "avg", device: str = "cpu", model_dir: Path | str | None = None
    ) -> StyleGraph:
        return cls(Manifest.read(find_manifest(pooling, model_dir)), device)

    def _check_size(self, height: int, width: int) -> None:
        if min(height, width) < self.manifest.min_size:
            raise ImageError(
                f"image is {width}x{height} px; style transfer needs at least "
                f"{self.manifest.min_size} px on each side"
            )

    def features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """{"gram_<style layer>": [C,C] normalised by n_H·n_W, "content_relu4_2": [1,C,h,w]}."""
        image = as_nchw(image)
        self._check_size(*image.shape[2:])
        feed = {"image": image, "layer_pixels": size_feed(*image.shape[2:])["layer_pixels"]}
        return dict(zip(self._feature_names, self._features.run(self._feature_names, feed)))

    def loss_and_grad(
        self, image: np.ndarray, targets: Targets, weights: LossWeights
    ) -> tuple[LossTerms, np.ndarray]:
        """Loss terms and d loss / d image (same layout as `image`) for one optimisation step."""
        hwc = np.ndim(image) == 3
        x = as_nchw(image)
        self._use(targets, weights, *x.shape[2:])
        self._feed["image"] = x
        if (
            self._bind_device is None
        ):  # CPU: a plain run; inputs are read in place, nothing is copied
            total, content, style, tv, grad = self._grad.run(self._loss_names, self._feed)
        else:
            total, content, style, tv, grad = self._run_bound(x, self._bind_device)
        terms = LossTerms(total=float(total), content=float(content), style=style, tv=float(tv))
        return terms, (grad[0].transpose(1, 2, 0) if hwc else grad)

    def loss_on_device(self, x, g, targets: Targets, weights: LossWeights) -> float:
        """The device loop's evaluation: the total loss at x, d loss / d x written into g (x and g
        OrtValues [1,3,H,W] at `place`). The constants go up once per (targets, weights);
        per call only the loss comes back."""
        self._use(targets, weights, *x.shape()[2:])
        binding = self._loop_binding
        if binding is None:
            binding = self._loop_binding = self._grad.io_binding()
            for name, value in self._constants_on(self.place).items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_output("loss", *self.place)  # first: get_outputs()[0]
        binding.bind_ortvalue_input("image", x)
        binding.bind_ortvalue_output("grad", g)
        self._grad.run_with_iobinding(binding)
        return float(download(binding.get_outputs()[0]).reshape(()))  # [] or [1] (see _run_bound)

    def _use(self, targets: Targets, weights: LossWeights, height: int, width: int) -> None:
        """Build the constant inputs once per (targets, weights, image size), not per step; check
        the size."""
        self._check_size(height, width)
        key = (targets, weights, (height, width))
        if any(a is not b for a, b in zip(self._feed_for, key[:2])) or self._feed_size != key[2]:
            self._feed = {**self._constant_feed(targets, weights), **size_feed(height, width)}
            self._feed_for, self._feed_size = key[:2], key[2]
            self._binding = self._loop_binding = None  # bind the new constants on first use
            self._device_feed = {}
        layer = self.manifest.content_layer
        expected = _layer_shape(height, width, self.channels[layer], DOWNSAMPLING[layer])
        if self._feed["target_content"].shape != expected:
            raise ValueError(
                f"content target has shape {list(self._feed['target_content'].shape)}, but a "
                f"{width}x{height} image needs {list(expected)}: take it from a content "
                f"image of the same size"
            )

    def _constants_on(self, place: tuple[str, int]) -> dict:
        """The constant inputs as OrtValues: one upload per (targets, weights, size). Those a GPU
        kernel reads on the host (HOST_INPUTS: Pad's pads) stay in CPU memory, where ORT reads
        them without a copy (docs/decisions/ort-review.md)."""
        if not self._device_feed:
            self._device_feed = {
                name: to_device(value, PLACES["cpu"] if name in HOST_INPUTS else place)
                for name, value in self._feed.items()
                if name != "image"
            }
        return self._device_feed

    def _run_bound(self, x: np.ndarray, device: tuple[str, int]) -> list[np.ndarray]:
        """One grad-graph run on the GPU with IOBinding, the optimiser on the host.

        What stays where: the targets (Grams, content relu4_2 — at 2048 px the content target alone is
        128 MB) and the scalars are copied to the device once per (targets, weights) pair and stay
        bound there for every step; per step only the image goes up and the loss terms and the
        gradient come down (the optimiser runs on the host in numpy). All activations stay on the
        device inside the run. `device`: self._bind_device, where the constants are bound."""
        if self._binding is None:
            self._binding = self._grad.io_binding()
            for name, value in self._constants_on(device).items():
                self._binding.bind_ortvalue_input(name, value)
            for name in self._loss_names:
                self._binding.bind_output(name, "cpu")
        self._binding.bind_cpu_input("image", x)  # host -> device copy of this step's image
        self._grad.run_with_iobinding(self._binding)
        # .numpy() of a bound output is a view of a buffer ORT reuses on the next run: copy, or the
        # optimiser's previous gradient silently becomes the new one (L-BFGS then sees y = 0)
        total, content, style, tv, grad = (
            value.numpy().copy() for value in self._binding.get_outputs()
        )
        # bound outputs can come back as [1] where a plain run gives [] (seen with ORT 1.32 on "loss")
        return [total.reshape(()), content.reshape(()), style, tv.reshape(()), grad]

    def _constant_feed(self, targets: Targets, weights: LossWeights) -> dict[str, np.ndarray]:
        lam = np.asarray(weights.style_layer_weights, dtype=np.float32)
        if lam.shape != (len(self.style_layers),):
            raise ValueError(
                f"style_layer_weights needs {len(self.style_layers)} values "
                f"({', '.join(self.style_layers)}), got {lam.size}"
            )
        feed = {
            "target_content": np.ascontiguousarray(targets.content, dtype=np.float32),
            "alpha": np.array(weights.alpha, np.float32),
            "beta": np.array(weights.beta, np.float32),
            "tv_weight": np.array(weights.tv_weight, np.float32),
            "style_layer_weights": lam,
        }
        for layer in self.style_layers:
            c = self.channels[layer]
            gram = np.ascontiguousarray(targets.grams[layer], dtype=np.float32)
            if gram.shape != (c, c):
                raise ValueError(
                    f"target gram for {layer} has shape {list(gram.shape)}, expected [{c}, {c}]"
                )
            feed[f"target_gram_{layer}"] = gram
        return feed

    def evaluate(
        self,
        content: np.ndarray,
        style: np.ndarray,
        current: np.ndarray,
        alpha: float,
        beta: float,
        layer_weights: Sequence[float],
        tv_weight: float = 0.0,
    ) -> tuple[LossTerms, np.ndarray]:
        """One-shot loss and gradient at `current` (same size as `content`; `style` any size)."""
        targets = Targets.from_features(content=self.features(content), style=self.features(style))
        return self.loss_and_grad(
            current, targets, LossWeights(alpha, beta, layer_weights, tv_weight)
        )


def size_feed(height: int, width: int) -> dict[str, np.ndarray]:
    """The graphs' per-size inputs for an image of height x width (core/layers.py's arithmetic):
    `layer_pixels` float32 [L] (n_H·n_W per style layer; features and grad graphs) and
    `pads_<pool>` int64 [8] (grad graph). Computed once per size and bound once: the graphs do no
    shape arithmetic of their own (docs/decisions/ort-review.md)."""
    feed: dict[str, np.ndarray] = {
        "layer_pixels": np.array(layer_pixels(height, width), np.float32)
    }
    for pool, pads in pool_pads(height, width).items():
        feed[f"pads_{pool}"] = np.array(pads, np.int64)
    return feed


# Inputs that kernels read on the host (CUDA's Pad: InputMemoryType(OrtMemTypeCPUInput, 1)): bound
# in CPU memory; bound on the GPU, ORT would copy them down before every run.
HOST_INPUTS = frozenset(f"pads_{pool}" for pool in POOLS)

# Providers whose sessions get IOBinding (device name, id for OrtValue). DirectML is left on plain runs:
# ORT's Python OrtValue allocation on "dml" devices is not available in every release we support.
_ORT_DEVICE = {"CUDAExecutionProvider": ("cuda", 0)}


def _layer_shape(
    height: int, width: int, channels: int, downsampling: int
) -> tuple[int, int, int, int]:
    """A layer's activation shape [1,C,h,w] for an image of height x width."""
    return (1, channels, height // downsampling, width // downsampling)
