# python-fu-eval script run by tests/test_gimp_e2e.py inside headless GIMP 3 (GIMP's Python).
# Parameters come from the environment: ONNXSTYLE_E2E_OUT (a folder for the report and the
# pixel dumps), ONNXSTYLE_E2E_CONTENT (an RGBA PNG), ONNXSTYLE_E2E_STYLE (a style image),
# ONNXSTYLE_E2E_BAD_STYLE (a corrupt one). It writes report.jsonl: one JSON line per case,
# with each layer's name, offsets, size and a raw "R'G'B'A u8" dump of its pixels.
import json
import os
import sys
import traceback

sys.path.insert(0, os.environ["ONNXSTYLE_E2E_SCRIPTS"])  # gimp-batch.sh, gimp-gui.sh
import layer_dump  # noqa: E402  (tests/gimp/layer_dump.py)
from gi.repository import Gimp, Gio

PROC = "plug-in-onnxstyle-neural-style"
OUT = os.environ["ONNXSTYLE_E2E_OUT"]
CONTENT = os.environ["ONNXSTYLE_E2E_CONTENT"]
STYLE = os.environ["ONNXSTYLE_E2E_STYLE"]
BAD_STYLE = os.environ["ONNXSTYLE_E2E_BAD_STYLE"]
CANVAS_PAD = 4  # the layer sits at offset (4, 4) of a larger canvas: offsets must be kept
SELECTION = (20, 16, 40, 32)  # x, y, w, h in image coordinates


def report(case, **fields):
    layer_dump.append_line(os.path.join(OUT, "report.jsonl"), case=case, **fields)


def dump_layers(image, case):
    return layer_dump.dump_layers(image, case, OUT)


def load():
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(CONTENT))
    image.resize(
        image.get_width() + 2 * CANVAS_PAD,
        image.get_height() + 2 * CANVAS_PAD,
        CANVAS_PAD,
        CANVAS_PAD,
    )
    return image


def call(image, drawables, style, **props):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    if proc is None:
        raise RuntimeError(f"procedure {PROC} is not registered")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    config.set_property("style-file", Gio.File.new_for_path(style))
    config.set_property("quality", "draft")
    for name, value in props.items():
        config.set_property(name, value)
    result = proc.run(config)
    status = result.index(0)
    error = Gimp.get_pdb().get_last_error() if status != Gimp.PDBStatusType.SUCCESS else ""
    return status.value_nick, error


def case(name, style, drawables_of=None, selection=SELECTION, feather=0.0, prepare=None, **props):
    try:
        image = load()
        if prepare:
            prepare(image)
        x, y, w, h = selection
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
        if feather:
            Gimp.Selection.feather(image, feather)
        layers = image.get_layers()
        drawables = drawables_of(image, layers) if drawables_of else [layers[0]]
        status, error = call(image, drawables, style, **props)
        report(
            name,
            status=status,
            error=error,
            selection=list(selection),
            pad=CANVAS_PAD,
            layers=dump_layers(image, name),
        )
        image.delete()
    except Exception:
        report(name, status="exception", error=traceback.format_exc(), layers=[])


def two_layers(image, layers):
    extra = layers[0].copy()
    image.insert_layer(extra, None, 0)
    return [layers[0], extra]


def gray_float(image):
    # a grey, 32-bit linear-light image: the plug-in must hand the worker sRGB-encoded floats
    image.convert_grayscale()
    image.convert_precision(Gimp.Precision.FLOAT_LINEAR)


case("new-layer", STYLE, seed=3)
case("replace", STYLE, output="replace", feather=8.0)
case("corrupt-style", BAD_STYLE)
case("two-layers", STYLE, drawables_of=two_layers)
case("gray-float", STYLE, prepare=gray_float)

# a broken setup: the recorded worker Python is gone, then it lacks onnxstyle
RECORD = os.path.join(
    os.environ["GIMP3_DIRECTORY"], "plug-ins", "onnxstyle-neural-style", "onnxstyle-worker.json"
)
with open(RECORD) as f:
    saved = f.read()
try:
    with open(RECORD, "w") as f:
        json.dump({"python": "/nonexistent/bin/python3"}, f)
    case("worker-python-gone", STYLE)
    with open(RECORD, "w") as f:
        json.dump({"python": os.environ["ONNXSTYLE_E2E_BARE_PYTHON"]}, f)
    case("worker-without-onnxstyle", STYLE)
    # the worker on "another machine": behind ssh (ONNXSTYLE_E2E_SSH, a file holding the worker
    # command as JSON), and the same command to a port where nothing listens (..._SSH_REFUSED)
    for name, variable in (("ssh-new-layer", "ONNXSTYLE_E2E_SSH"),
                           ("ssh-refused", "ONNXSTYLE_E2E_SSH_REFUSED")):  # fmt: skip
        if os.environ.get(variable):
            with open(os.environ[variable]) as f:
                command = json.load(f)
            with open(RECORD, "w") as f:
                json.dump({"command": command}, f)
            case(name, STYLE, seed=3)
finally:
    with open(RECORD, "w") as f:
        f.write(saved)
