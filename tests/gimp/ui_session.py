# python-fu-eval script run by GIMP 3's GUI for tests/test_gimp_ui.py (tests/gimp/ui_driver.py starts
# GIMP with it). It opens the dialog of the plug-in once per case, each time on a fresh image in
# its own window, as a user's menu click would (RunMode.INTERACTIVE), and waits: the driver works
# the dialog. After each dialog it appends one JSON line to $ONNXSTYLE_E2E_OUT/session.jsonl: the
# procedure's status, its error and every layer (name, size, a raw "R'G'B'A u8" dump). Then GIMP quits.
import os
import sys
import time
import traceback

sys.path.insert(0, os.environ["ONNXSTYLE_E2E_SCRIPTS"])  # gimp-batch.sh, gimp-gui.sh
import layer_dump  # noqa: E402  (tests/gimp/layer_dump.py)
from gi.repository import Gimp, Gio

PROC = "plug-in-onnxstyle-neural-style"
PROC_LAYERS = "plug-in-onnxstyle-neural-style-layers"
OUT = os.environ["ONNXSTYLE_E2E_OUT"]
CASES = os.environ["ONNXSTYLE_E2E_CASES"].split(",")


def report(**fields):
    layer_dump.append_line(os.path.join(OUT, "session.jsonl"), **fields)


def dump_layers(image, case):
    return layer_dump.dump_layers(image, case, OUT)


def dialog(case):
    image = Gimp.file_load(
        Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.environ["ONNXSTYLE_E2E_CONTENT"])
    )
    Gimp.Display.new(image)
    Gimp.displays_flush()
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers())
    # the first dialog's values (later dialogs show what GIMP remembered from the last OK)
    config.set_property("style-file", Gio.File.new_for_path(os.environ["ONNXSTYLE_E2E_STYLE"]))
    config.set_property("quality", "draft")
    config.set_property("max-size", int(os.environ["ONNXSTYLE_E2E_MAX_SIZE"]))
    result = proc.run(config)
    status = result.index(0)
    error = Gimp.get_pdb().get_last_error() if status != Gimp.PDBStatusType.SUCCESS else ""
    report(case=case, status=status.value_nick, error=error, layers=dump_layers(image, case))


def layers_dialog(case):
    """On all layers: 4 frames (frame 1 the bottom layer), the preview on the selected frame 3.
    After the run, once the driver has pressed Edit → Undo once, the layers are dumped again."""
    frames = os.environ["ONNXSTYLE_E2E_FRAMES"].split(":")
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(frames[0]))
    for path in frames[1:]:
        layer = Gimp.file_load_layer(
            Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path)
        )
        image.insert_layer(layer, None, 0)
    Gimp.Display.new(image)
    Gimp.displays_flush()
    proc = Gimp.get_pdb().lookup_procedure(PROC_LAYERS)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers()[1:2])
    config.set_property("style-file", Gio.File.new_for_path(os.environ["ONNXSTYLE_E2E_STYLE"]))
    config.set_property("quality", "draft")
    result = proc.run(config)
    status = result.index(0)
    error = Gimp.get_pdb().get_last_error() if status != Gimp.PDBStatusType.SUCCESS else ""
    report(case=case, status=status.value_nick, error=error, layers=dump_layers(image, case))
    flag = os.path.join(OUT, "undone")
    deadline = time.monotonic() + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.1)
    report(case=f"{case}-undone", layers=dump_layers(image, f"{case}-undone"))


for name in CASES:
    try:
        layers_dialog(name) if name == "layers-ok" else dialog(name)
    except Exception:
        report(case=name, status="exception", error=traceback.format_exc(), layers=[])

quit_ = Gimp.get_pdb().lookup_procedure("gimp-quit")
quit_config = quit_.create_config()
quit_config.set_property("force", True)
quit_.run(quit_config)
