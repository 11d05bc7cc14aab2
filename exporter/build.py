"""VGG19 as two ONNX graphs, written node by node with onnx.helper (deterministic, byte-identical output).

*features*: image [1,3,H,W] RGB in [0,1] -> gram_<style layer> [C,C] (normalised by n_H*n_W) and
content_relu4_2 [1,C,h,w].

*grad*: the same forward plus the loss (DEVELOPERS.md, "The maths") and a hand-written backward to
the image, with F = activations as [C, n_H n_W] and Ĝ = F Fᵀ / (n_H n_W):

Backward (standard ops only, no training ops):
    dJ_style/dF = (Ĝ - Ĝ(S)) F / (n_C² n_H n_W)          (Ĝ symmetric)
    dJ_content/da = a - a(C)
    ReLU:    da_in = da_out · [a_out > 0]           (as Ceil(Min(a_out, 1)): exact, and fast in ORT)
    Conv:    dx = Conv(dy, W transposed in<->out, flipped in H and W), pads 1 (bias has no input grad)
    AvgPool: dx = nearest ×2 upsample of dy × 1/4 (the 1/4 is folded into the flipped kernel of the
             conv above the pool), padded with zeros to odd input sizes (floor-mode pooling drops them)
    MaxPool: dx = upsample(dy) where x equals upsample(max), else 0. Ties: every tied position gets the
             whole gradient (PyTorch gives it to the first one). After a ReLU, ties at 0 are masked
             out by the ReLU backward; ties at positive values need exactly equal floats and are
             practically absent for real images.

The preprocessing (channel order, mean, scale) is folded into conv1_1's kernel where it commutes with
zero padding: the graph subtracts the mean from the [0,1] RGB image, and conv1_1 uses
W'[o, perm[c]] = W[o, c] · scale[c]. Only the mean subtraction stays as an op.

Each kernel is stored once. Quantised sources keep uint8 indices + a 256-float codebook; the graph
dequantises with Gather, and derives the flipped/transposed backward kernels with Transpose + Slice;
ONNX Runtime constant-folds all of it when the session loads.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxstyle.core.layers import CONTENT_LAYER, POOLS, STYLE_LAYERS

from .weights import CONVS, VGGWeights

OPSET = 18
# Forward order up to relu5_1: each conv is followed by its ReLU; pools after conv1_2, 2_2, 3_4, 4_4.
SEQUENCE = (
    "conv1_1",
    "conv1_2",
    "pool1",
    "conv2_1",
    "conv2_2",
    "pool2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv3_4",
    "pool3",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv4_4",
    "pool4",
    "conv5_1",
)
CHANNELS = {f"relu{name[4:]}": c_out for name, _, c_out in CONVS}
INT64_MIN = np.iinfo(np.int64).min


class _Graph:
    """Collects nodes and initializers with deterministic names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        self._consts: dict[tuple, str] = {}

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        """Append one node; returns its output's name (`name`, or one made from the op and a counter)."""
        self._count += 1
        output = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=f"n{self._count}_{op_type}", **attrs)
        )
        return output

    def init(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(
            numpy_helper.from_array(np.array(array, order="C"), name)
        )  # keeps 0-d shapes
        return name

    def const(self, values, dtype=np.int64) -> str:
        """A small constant initializer, shared between uses of the same value."""
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", array)
        return self._consts[key]


def _kernels(
    g: _Graph, weights: VGGWeights, pooling: str, backward: bool
) -> dict[str, tuple[str, str, str | None]]:
    """Per conv: (forward kernel, bias, backward kernel or None) tensor names, all derived in-graph."""
    out = {}
    for name, _, _ in CONVS:
        w = weights.convs[name]
        if w.indices is not None:
            idx = g.op("Cast", [g.init(f"{name}_W_q", w.indices)], to=TensorProto.INT32)
            kernel = g.op(
                "Gather", [g.init(f"{name}_W_table", w.codebook), idx], name=f"{name}_W", axis=0
            )
        else:
            kernel = g.init(f"{name}_W", w.kernel.astype(np.float32))
        if name == "conv1_1":
            # Fold channel order and scale into the kernel: Σ_c W[o,c]·s[c]·(x[perm[c]] - m[c]).
            scale = np.asarray(weights.scale, np.float32).reshape(1, 3, 1, 1)
            scaled = g.op("Mul", [kernel, g.const(scale, np.float32)])
            inverse = np.argsort(weights.perm)
            kernel = g.op("Gather", [scaled, g.const(inverse)], name="conv1_1_W_rgb", axis=1)
        bias = g.init(f"{name}_b", w.bias.astype(np.float32))
        if not backward:
            out[name] = (kernel, bias, None)
            continue
        flipped = g.op(
            "Slice",
            [
                g.op("Transpose", [kernel], perm=[1, 0, 2, 3]),
                g.const([-1, -1]),
                g.const([INT64_MIN, INT64_MIN]),
                g.const([2, 3]),
                g.const([-1, -1]),
            ],
            name=f"{name}_W_back",
        )
        if pooling == "avg" and name.endswith("_1") and name != "conv1_1":
            # The avg-pool below this conv scales its gradient by 1/4: do it once, on the kernel.
            flipped = g.op("Mul", [flipped, g.const(0.25, np.float32)], name=f"{name}_W_back_pool")
        out[name] = (kernel, bias, flipped)
    return out


def _forward(g: _Graph, image: str, weights: VGGWeights, kernels, pooling: str) -> dict[str, str]:
    """Tensor names of every layer output up to relu5_1 ('image0' is the mean-subtracted image)."""
    mean_rgb = np.zeros(3, np.float32)
    for c, m in zip(weights.perm, weights.mean):
        mean_rgb[c] = m
    x = g.op("Sub", [image, g.const(mean_rgb.reshape(1, 3, 1, 1), np.float32)], name="image0")
    acts = {"image0": x}
    for layer in SEQUENCE:
        if layer.startswith("conv"):
            kernel, bias, _ = kernels[layer]
            z = g.op("Conv", [x, kernel, bias], name=layer, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            x = g.op("Relu", [z], name=f"relu{layer[4:]}")
            acts[f"relu{layer[4:]}"] = x
        else:
            op = "AveragePool" if pooling == "avg" else "MaxPool"
            x = g.op(op, [x], name=layer, kernel_shape=[2, 2], strides=[2, 2])
            acts[layer] = x
    return acts


def _gram(g: _Graph, a: str, layer: str) -> tuple[str, str, str]:
    """(Ĝ [C,C], F [C,n], n as float scalar) for activations a [1,C,h,w].

    n = n_H·n_W comes from the `layer_pixels` input (the host knows the image size): computed
    from Shape it would run on the CPU beside a GPU graph and be copied up every run."""
    f = g.op("Reshape", [a, g.const([CHANNELS[layer], -1])], name=f"F_{layer}")
    n = g.op(
        "Gather", ["layer_pixels", g.const(STYLE_LAYERS.index(layer))], name=f"n_{layer}", axis=0
    )
    gram = g.op("Div", [g.op("Gemm", [f, f], transB=1), n], name=f"gram_{layer}")
    return gram, f, n


def _graph_io(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(g: _Graph, name: str, inputs, outputs, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="onnxstyle",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = 9  # onnx 1.23 defaults to 11; ORT 1.20+ reads 9 (opset 18's IR)
    return model


def build_features(weights: VGGWeights, pooling: str = "avg") -> onnx.ModelProto:
    """The features graph: grams of the style layers and the content activations."""
    g = _Graph()
    acts = _forward(g, "image", weights, _kernels(g, weights, pooling, backward=False), pooling)
    for layer in STYLE_LAYERS:
        _gram(g, acts[layer], layer)  # named gram_<layer>: the graph outputs
    g.op("Identity", [acts[CONTENT_LAYER]], name=f"content_{CONTENT_LAYER}")
    outs = [
        _graph_io(f"gram_{layer}", [CHANNELS[layer], CHANNELS[layer]]) for layer in STYLE_LAYERS
    ]
    outs.append(_graph_io(f"content_{CONTENT_LAYER}", [1, CHANNELS[CONTENT_LAYER], "h", "w"]))
    return _model(
        g,
        f"vgg19_{pooling}_features",
        [_graph_io("image", [1, 3, "H", "W"]), _graph_io("layer_pixels", [len(STYLE_LAYERS)])],
        outs,
        f"VGG19 ({pooling} pooling) style/content features; weights: {weights.source}",
    )


def _relu_backward(g: _Graph, d: str, a: str) -> str:
    """da_in = da_out · [a > 0], with a the ReLU's output.

    a >= 0, so Ceil(Min(a, 1)) is exactly 0 where a == 0 and 1 where a > 0 (subnormals included);
    the fastest of four exact forms on ORT's CPU provider (docs/decisions/session-settings.md).
    """
    mask = g.op("Ceil", [g.op("Min", [a, g.const(1.0, np.float32)])])
    return g.op("Mul", [d, mask])


def _pool_backward(g: _Graph, d: str, x: str, pooled: str, pooling: str, pads: str) -> str:
    """Gradient w.r.t. the pool input x [1,C,H,W] from d w.r.t. its floor-mode output [1,C,H//2,W//2].

    `pads` (int64 [8], a graph input: core.layers.pool_pads) pads the upsampled gradient with
    zeros to x's size: floor-mode pooling ignores an odd last row/column. Given by the host rather
    than computed from Shape, so no shape arithmetic runs beside a GPU graph (Pad reads its pads
    on the host)."""

    def upsample(t: str) -> str:
        return g.op(
            "Resize",
            [t, "", g.const([1, 1, 2, 2], np.float32)],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )

    up = g.op("Pad", [upsample(d), pads])
    if pooling == "avg":
        return up  # the 1/4 is folded into the backward kernel of the conv above
    # Max: route the gradient to the positions equal to their window's max (-1 never equals a ReLU output).
    up_max = g.op("Pad", [upsample(pooled), pads, g.const(-1.0, np.float32)])
    return g.op("Mul", [up, g.op("Cast", [g.op("Equal", [x, up_max])], to=TensorProto.FLOAT)])


def _previous_relu(layer: str) -> str:
    """The ReLU whose output feeds this pool (relu1_2 for pool1, relu3_4 for pool3, ...)."""
    conv = SEQUENCE[SEQUENCE.index(layer) - 1]
    return f"relu{conv[4:]}"


def build_grad(weights: VGGWeights, pooling: str = "avg") -> onnx.ModelProto:
    """The feature-and-gradient graph: loss terms and d loss / d image (see the module docstring)."""
    g = _Graph()
    kernels = _kernels(g, weights, pooling, backward=True)
    acts = _forward(g, "image", weights, kernels, pooling)
    seeds, style_losses = {}, []
    for index, layer in enumerate(STYLE_LAYERS):
        c = CHANNELS[layer]
        gram, _, n = _gram(g, acts[layer], layer)
        diff = g.op("Sub", [gram, f"target_gram_{layer}"])
        j = g.op(
            "Mul",
            [g.op("ReduceSumSquare", [diff], keepdims=0), g.const(1.0 / (4 * c * c), np.float32)],
        )
        style_losses.append(g.op("Unsqueeze", [j, g.const([0])]))
        # dJ/dF for the weighted term: β λ[l] (Ĝ - Ĝ(S)) F / (n_C² n); scale the small [C,C] factor.
        lam = g.op("Gather", ["style_layer_weights", g.const(index)], axis=0)
        coef = g.op(
            "Div",
            [g.op("Mul", [g.op("Mul", ["beta", lam]), g.const(1.0 / (c * c), np.float32)]), n],
        )
        # (Ĝ - Ĝ(S))·coef applied to F is a 1x1 conv of the activations: it keeps a's [1,C,h,w]
        # shape without a Reshape to Shape(a) (shape arithmetic beside a GPU graph).
        m = g.op("Reshape", [g.op("Mul", [diff, coef]), g.const([c, c, 1, 1])])
        seeds[layer] = g.op("Conv", [acts[layer], m], kernel_shape=[1, 1])
    style = g.op("Concat", style_losses, name="style_losses", axis=0)
    diff = g.op("Sub", [acts[CONTENT_LAYER], "target_content"])
    content = g.op(
        "Mul",
        [g.op("ReduceSumSquare", [diff], keepdims=0), g.const(0.5, np.float32)],
        name="content_loss",
    )
    seeds[CONTENT_LAYER] = g.op("Mul", [diff, "alpha"])

    # Backward from relu5_1 down to the image; nothing above relu5_1 is computed.
    d = None
    for layer in reversed(SEQUENCE):
        if layer.startswith("conv"):
            relu = f"relu{layer[4:]}"
            if relu in seeds:
                d = seeds[relu] if d is None else g.op("Add", [d, seeds[relu]])
            dz = _relu_backward(g, d, acts[relu])
            d = g.op("Conv", [dz, kernels[layer][2]], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        else:
            pads = f"pads_{layer}"
            d = _pool_backward(g, d, acts[_previous_relu(layer)], acts[layer], pooling, pads)

    tv, d_tv = _total_variation(g, "image")
    d_tv = g.op("Mul", [d_tv, g.op("Mul", ["tv_weight", g.const(2.0, np.float32)])])
    g.op("Add", [d, d_tv], name="grad")
    weighted = [
        g.op("Mul", ["alpha", content]),
        g.op(
            "Mul",
            ["beta", g.op("ReduceSum", [g.op("Mul", [style, "style_layer_weights"])], keepdims=0)],
        ),
        g.op("Mul", ["tv_weight", tv]),
    ]
    g.op("Sum", weighted, name="loss")

    inputs = [_graph_io("image", [1, 3, "H", "W"])]
    inputs += [
        _graph_io(f"target_gram_{layer}", [CHANNELS[layer], CHANNELS[layer]])
        for layer in STYLE_LAYERS
    ]
    inputs.append(_graph_io("target_content", [1, CHANNELS[CONTENT_LAYER], "h", "w"]))
    inputs += [_graph_io(name, []) for name in ("alpha", "beta", "tv_weight")]
    inputs.append(_graph_io("style_layer_weights", [len(STYLE_LAYERS)]))
    inputs.append(_graph_io("layer_pixels", [len(STYLE_LAYERS)]))
    inputs += [
        helper.make_tensor_value_info(f"pads_{pool}", TensorProto.INT64, [8]) for pool in POOLS
    ]
    outputs = [
        _graph_io("loss", []),
        _graph_io("content_loss", []),
        _graph_io("style_losses", [len(STYLE_LAYERS)]),
        _graph_io("tv_loss", []),
        _graph_io("grad", [1, 3, "H", "W"]),
    ]
    return _model(
        g,
        f"vgg19_{pooling}_grad",
        inputs,
        outputs,
        f"VGG19 ({pooling} pooling) style-transfer loss and its gradient w.r.t. the image; "
        f"weights: {weights.source}",
    )


def _total_variation(g: _Graph, x: str) -> tuple[str, str]:
    """(J_tv, dJ_tv/dx / 2): squared differences of vertical and horizontal neighbours."""

    def neighbour_diff(axis: int) -> str:
        later = g.op("Slice", [x, g.const([1]), g.const([np.iinfo(np.int64).max]), g.const([axis])])
        earlier = g.op("Slice", [x, g.const([0]), g.const([-1]), g.const([axis])])
        return g.op("Sub", [later, earlier])

    dh, dw = neighbour_diff(2), neighbour_diff(3)
    tv = g.op(
        "Add",
        [g.op("ReduceSumSquare", [dh], keepdims=0), g.op("ReduceSumSquare", [dw], keepdims=0)],
        name="tv_loss",
    )
    # d/dx[i] of (x[i+1]-x[i])² is -2·diff[i]; of (x[i]-x[i-1])² is +2·diff[i-1].
    grads = [
        g.op("Pad", [dh, g.const([0, 0, 1, 0, 0, 0, 0, 0])]),
        g.op("Pad", [dh, g.const([0, 0, 0, 0, 0, 0, 1, 0])]),
        g.op("Pad", [dw, g.const([0, 0, 0, 1, 0, 0, 0, 0])]),
        g.op("Pad", [dw, g.const([0, 0, 0, 0, 0, 0, 0, 1])]),
    ]
    return tv, g.op("Sub", [g.op("Add", [grads[0], grads[2]]), g.op("Add", [grads[1], grads[3]])])
