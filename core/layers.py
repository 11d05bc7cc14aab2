"""The VGG19 layers the loss reads and the smallest image the graphs take, written once.

The exporter builds the graphs from these and records them in each model's manifest; the engine and
`StyleGraph` read them from here (and check a manifest against them).
"""

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
# How much smaller than the image each layer's maps are: the 2x2 floor-mode pools before it (n_H = H // k).
DOWNSAMPLING = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8, "relu4_2": 8, "relu5_1": 16}
MIN_SIDE = 16  # smallest image side: relu5_1, after four 2x2 pools, keeps at least one pixel
# vgg19-<pooling>.json's "format"; core refuses others with one line. 2: the graphs take the per-size
# inputs layer_pixels and pads_<pool> (issue 18); format-1 graphs lack them.
MANIFEST_FORMAT = 2
# The 2x2 floor-mode pools, in forward order; pool p takes maps of side H // 2**(p-1).
POOLS = ("pool1", "pool2", "pool3", "pool4")


def layer_pixels(height: int, width: int) -> list[int]:
    """n_H·n_W of each style layer (STYLE_LAYERS order) for an image of height x width: the
    graphs' `layer_pixels` input (the Gram's normaliser)."""
    return [(height // DOWNSAMPLING[k]) * (width // DOWNSAMPLING[k]) for k in STYLE_LAYERS]


def pool_pads(height: int, width: int) -> dict[str, list[int]]:
    """Per pool, the ONNX Pad `pads` [8] (NCHW begins, then ends) that grows the ×2-upsampled
    gradient back to the pool's input size: floor mode drops an odd last row/column, whose
    gradient is zero. The grad graph's `pads_<pool>` inputs."""
    pads = {}
    for index, pool in enumerate(POOLS):
        h, w = height >> index, width >> index
        pads[pool] = [0, 0, 0, 0, 0, 0, h % 2, w % 2]
    return pads
