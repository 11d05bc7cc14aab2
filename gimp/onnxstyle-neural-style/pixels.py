"""The layer's pixels: which layer and which part of it (the selection's bounds), reading them
as bytes in the protocol's formats, a small copy for the preview, and writing the result back
through the selection mask in one undo group.

A new pixel operation (another format, another way to read or write the layer) goes here; the
entry file's `stylize` calls these in order: read, run the worker, write only on success.
"""

from errors import PluginError
from gi.repository import Gegl, Gimp


def babl_format(image):
    """sRGB-encoded ("R'G'B'"), never linear; bytes for 8-bit images, float otherwise."""
    precision = image.get_precision()
    if precision in (
        Gimp.Precision.U8_LINEAR,
        Gimp.Precision.U8_NON_LINEAR,
        Gimp.Precision.U8_PERCEPTUAL,
    ):
        return "R'G'B'A u8", "rgba8"
    return "R'G'B'A float", "rgbaf32"


BYTES_PER_PIXEL = {"rgba8": 4, "rgbaf32": 16}  # the formats babl_format gives


def selected_layer(drawables):
    """The one layer the filter paints on, or a PluginError saying what to select."""
    if len(drawables) != 1:
        raise PluginError(
            f"Neural Style works on one layer: select exactly one layer ({len(drawables)} are selected)."
        )
    layer = drawables[0]
    if not isinstance(layer, Gimp.Layer) or layer.is_layer_mask():
        raise PluginError("Neural Style works on a layer: select a layer, not a mask or channel.")
    if layer.is_group_layer():
        raise PluginError("Neural Style can't paint on a layer group: select a layer inside it.")
    return layer


def selection_bounds(layer):
    """The selection's bounds within the layer (x, y, width, height in layer coordinates)."""
    inside, x, y, width, height = layer.mask_intersect()
    if not inside or width < 1 or height < 1:
        raise PluginError("The selection does not overlap the layer.")
    return x, y, width, height


def save_region(layer, rect, gegl_format, path):
    """The layer's pixels in `rect` (a Gegl.Rectangle), as `gegl_format`, into the file `path`."""
    pixels = layer.get_buffer().get(rect, 1.0, gegl_format, Gegl.AbyssPolicy.NONE)
    with open(path, "wb") as f:
        f.write(bytes(pixels))


def write_result(image, layer, rect, gegl_format, data, output):
    """One undo group; the shadow merge blends through the (feathered) selection mask."""
    image.undo_group_start()
    try:
        target = layer
        if output == "new-layer":
            target = layer.copy()  # same size, offsets, type and alpha as the source
            target.set_name(f"{layer.get_name()} (neural style)")
            image.insert_layer(target, layer.get_parent(), image.get_item_position(layer))
        paint(target, rect, gegl_format, data)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def write_layers(image, layers, rect, gegl_format, pixel_files):
    """Each layer's result (the raw pixel file beside it) painted over it, all in one undo group:
    one Undo gives every layer back."""
    image.undo_group_start()
    try:
        for layer, path in zip(layers, pixel_files):
            with open(path, "rb") as f:
                paint(layer, rect, gegl_format, f.read())
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def paint(layer, rect, gegl_format, data):
    """Pixels onto `rect` of the layer through its shadow buffer (an undo step of its own)."""
    shadow = layer.get_shadow_buffer()
    shadow.set(rect, gegl_format, data)
    shadow.flush()
    layer.merge_shadow(True)
    layer.update(rect.x, rect.y, rect.width, rect.height)


def preview_pixels(layer, region, size):
    """A copy of the region scaled by GIMP to at most `size` px: (RGBA bytes, width, height)."""
    x, y, width, height = region
    scale = min(1.0, size / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    data, w, h, bpp = layer.get_sub_thumbnail_data(x, y, width, height, w, h)
    data = bytes(data.get_data())
    if bpp not in (1, 2, 3, 4) or len(data) != w * h * bpp:
        raise PluginError(f"GIMP gave an unexpected preview copy ({w}x{h}, {bpp} bytes a pixel).")
    return to_rgba(data, w * h, bpp), w, h


def to_rgba(data, pixels, bpp):
    """8-bit grey, grey+alpha, RGB or RGBA pixels as RGBA (slices: no per-pixel Python)."""
    out = bytearray(b"\xff" * (4 * pixels))
    for c in range(3):
        out[c::4] = data[(0 if bpp < 3 else c) :: bpp]
    if bpp in (2, 4):
        out[3::4] = data[bpp - 1 :: bpp]
    return bytes(out)
