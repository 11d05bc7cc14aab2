# Shared by the scripts that run inside GIMP 3 (GIMP's Python): e2e_batch.py, e2e_layers.py and
# ui_session.py find it through $ONNXSTYLE_E2E_SCRIPTS, which gimp-batch.sh and gimp-gui.sh set
# (the scripts come on stdin or through exec, without a __file__ of their own).
import json
import os

from gi.repository import Gegl


def append_line(path, **fields):
    """One JSON line appended to the report at `path`."""
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


def dump_layers(image, case, out):
    """Every layer of `image`, top first, as GIMP lists them: its name, offsets, size, alpha and
    a raw "R'G'B'A u8" dump of its pixels in `out` (the tests compare those byte for byte)."""
    layers = []
    for i, layer in enumerate(image.get_layers()):
        _, ox, oy = layer.get_offsets()
        w, h = layer.get_width(), layer.get_height()
        data = layer.get_buffer().get(
            Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE
        )
        path = os.path.join(out, f"{case}-layer{i}.raw")
        with open(path, "wb") as f:
            f.write(bytes(data))
        layers.append(
            {
                "name": layer.get_name(),
                "offsets": [ox, oy],
                "size": [w, h],
                "raw": path,
                "has_alpha": layer.has_alpha(),
            }
        )
    return layers
