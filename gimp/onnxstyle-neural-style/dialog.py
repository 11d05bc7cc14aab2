"""The dialog: the procedure's widgets in a column, and beside them the Preview panel's widgets
(the preview image, the style thumbnails, the Preview button, a progress bar and a status line).

A new dialog control: its argument is registered in the entry file's `add_arguments`,
and placed here in `dialog_layout` (in the column, or in the "Advanced" expander). What the
Preview does is preview.py's; this file only draws.
"""

import os

from gi.repository import GdkPixbuf, GimpUi, GLib, GObject, Gtk
from preview import Preview
from settings import PREVIEW_SIZE

THUMB_SIZE = 96  # the style thumbnails' longest side, px
PULSE_MS = 120  # the busy bar's pulse


def dialog_layout(dialog, animation=False):
    """The procedure's widgets in a column, the advanced ones in an expander; returns the row
    that the preview column joins. On all layers (`animation`) the temporal weight takes the
    place of the output (the layers are replaced)."""
    dialog.get_scale_entry("strength", 1.0)
    dialog.get_scale_entry("style-blend", 1.0)
    dialog.fill_box("advanced-box", ["max-size", "device", "seed"])
    dialog.get_label("advanced-label", "Advanced", False, False)
    dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
    settings = dialog.fill_box(
        "settings",
        ["style-file", "style-file-2", "style-blend", "strength", "quality"]
        + ["preserve-colors", "temporal-weight" if animation else "output", "advanced"],
    )
    settings.set_size_request(360, -1)
    row = dialog.fill_box("main", ["settings"])
    row.set_orientation(Gtk.Orientation.HORIZONTAL)
    row.set_spacing(18)
    dialog.fill(["main"])
    return row


def show_dialog(procedure, config, drawables, animation=False):
    """Runs the dialog; returns its Preview (holding the warm worker) on OK, None on Cancel.
    `drawables`: the layer the preview shows (on all layers, the selected frame)."""
    GimpUi.init(procedure.get_name())
    title = "Neural Style (ONNX) on all layers" if animation else "Neural Style (ONNX)"
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    row = dialog_layout(dialog, animation)
    panel = PreviewPanel(dialog)
    if animation:
        panel.ok_text = "OK styles every layer, bottom first."
    preview = Preview(panel, config, drawables)
    row.pack_start(panel.box, False, False, 0)
    try:
        confirmed = dialog.run()
    finally:
        preview.detach()
        dialog.destroy()
    if not confirmed:
        preview.close()
        return None
    return preview


class PreviewPanel:
    """The Preview column's widgets and how they show a state: the picture, the style
    thumbnails, a busy or progress bar, and a status line with a warning sign for errors."""

    ok_text = "OK styles the whole layer."  # what the status says once a preview is ready

    def __init__(self, dialog):
        self.dialog = dialog
        self.pulsing = None  # the busy bar's timer
        self.image = Gtk.Image()
        self.image.set_size_request(PREVIEW_SIZE, PREVIEW_SIZE)
        self.image.get_accessible().set_name("Preview image")
        self.styles = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.styles.set_size_request(THUMB_SIZE, -1)
        pictures = Gtk.Box(spacing=12)
        for title, widget in (("Preview", self.image), ("Style", self.styles)):
            frame = Gtk.Frame(label=title, shadow_type=Gtk.ShadowType.ETCHED_IN)
            frame.add(widget)
            pictures.pack_start(frame, False, False, 0)
        self.button = Gtk.Button.new_with_mnemonic("_Preview")
        self.button.set_tooltip_text("Style a small copy of the layer with these values")
        buttons = Gtk.Box(spacing=12)
        buttons.pack_start(self.button, False, False, 0)
        buttons.pack_start(dialog.get_widget("auto-preview", Gtk.CheckButton), False, False, 0)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_text("")
        self.warning = Gtk.Image.new_from_icon_name("dialog-warning", Gtk.IconSize.BUTTON)
        # a fixed width: the dialog keeps its layout whatever the status says
        self.label = Gtk.Label(xalign=0.0, wrap=True, width_chars=38, max_width_chars=38)
        self.label.get_accessible().set_description("Preview status")
        status = Gtk.Box(spacing=6)
        status.pack_start(self.warning, False, False, 0)
        status.pack_start(self.label, True, True, 0)
        self.box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        for widget in (pictures, buttons, self.bar, status):
            self.box.pack_start(widget, False, False, 0)
        self.box.show_all()

    def on_preview(self, callback):
        """`callback()` when the Preview button is pressed."""
        self.button.connect("clicked", lambda _button: callback())

    def placeholder(self, width, height):
        """A plain grey area of the preview's shape, so the user sees where it will appear."""
        pixbuf = GdkPixbuf.Pixbuf.new(
            GdkPixbuf.Colorspace.RGB, False, 8, max(width, 1), max(height, 1)
        )
        pixbuf.fill(0x5A5A5AFF)
        self.image.set_from_pixbuf(pixbuf)

    def show_styles(self, paths, second_chosen):
        """Thumbnails of the style files; the share slider is live only with a second style."""
        for child in self.styles.get_children():
            child.destroy()
        for path in paths:
            try:
                pixbuf = GdkPixbuf.Pixbuf.new_from_file_at_scale(path, THUMB_SIZE, THUMB_SIZE, True)
                thumb = Gtk.Image.new_from_pixbuf(pixbuf)
                thumb.get_accessible().set_name("Style thumbnail")
            except GLib.Error:
                thumb = Gtk.Label(label=f"(can't show {os.path.basename(path)})", wrap=True)
            self.styles.pack_start(thumb, False, False, 0)
        if not self.styles.get_children():
            self.styles.pack_start(Gtk.Label(label="(none chosen)"), False, False, 0)
        self.styles.show_all()
        self.dialog.get_widget("style-blend", GObject.TYPE_NONE).set_sensitive(second_chosen)

    def show(self, data, width, height):
        """A preview's RGBA bytes, at full strength."""
        self.image.set_from_pixbuf(checkered(data, width, height))
        self.image.set_opacity(1.0)

    def dim(self):
        """The preview shown no longer matches the values."""
        self.image.set_opacity(0.4)

    def status(self, text, error=False):
        self.stop()
        self.bar.set_fraction(0.0)
        self.bar.set_text("")
        self.label.set_text(text)
        self.warning.set_opacity(1.0 if error else 0.0)  # hidden, its room kept: no layout jump

    def working(self):
        self.label.set_text("Working on the preview…")
        self.warning.set_opacity(0.0)

    def busy(self, text):
        """An indeterminate bar until the first progress line."""
        self.bar.set_text(text)
        self.warning.set_opacity(0.0)
        if self.pulsing is None:
            self.pulsing = GLib.timeout_add(PULSE_MS, self._pulse)

    def progress(self, reply):
        """A protocol.Progress on the bar."""
        self.stop()
        self.bar.set_fraction(reply.fraction)
        scale = f"scale {reply.scale}/{reply.scales}, "
        step = f"step {reply.step}/{reply.steps}"
        self.bar.set_text("Styling: " + (scale if reply.scales > 1 else "") + step)

    def idle(self):
        """No work under way, nothing to say on the bar."""
        self.stop()
        self.bar.set_text("")

    def _pulse(self):
        self.bar.pulse()
        return True

    def stop(self):
        """Stop the busy bar's pulse."""
        if self.pulsing is not None:
            GLib.source_remove(self.pulsing)
            self.pulsing = None


def checkered(data, width, height):
    """RGBA bytes as a pixbuf over GIMP-like grey checks, so transparency shows."""
    pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
        GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, True, 8, width, height, width * 4
    )
    return pixbuf.composite_color_simple(
        width, height, GdkPixbuf.InterpType.NEAREST, 255, 8, 0x999999, 0x666666
    )
