"""The VGG19 layers the loss reads and the smallest image the graphs take, written once.

The exporter builds the graphs from these and records them in each model's manifest; the engine and
`StyleGraph` read them from here (and check a manifest against them).
"""

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
# How much smaller than the image each layer's maps are: the 2x2 floor-mode pools before it (n_H = H // k).
DOWNSAMPLING = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8, "relu4_2": 8, "relu5_1": 16}
MIN_SIDE = 16  # smallest image side: relu5_1, after four 2x2 pools, keeps at least one pixel
MANIFEST_FORMAT = 1  # vgg19-<pooling>.json's "format"; core refuses others with one line
