# python-fu-eval script run by tests/test_gimp_layers.py inside headless GIMP 3 (GIMP's Python):
# "Neural Style (ONNX) on all layers" on a 4-layer animation. Parameters from the environment:
# ONNXSTYLE_E2E_OUT (the report and pixel dumps), ONNXSTYLE_E2E_FRAMES (the frames' PNGs, frame 1
# first, joined by ":"), ONNXSTYLE_E2E_STYLE, ONNXSTYLE_E2E_RUN (a mark in the worker's
# environment, to find this run's processes). report.jsonl: one JSON line per case, with each
# layer's name and a raw "R'G'B'A u8" dump of its pixels (top layer first, as GIMP lists them).
import glob
import os
import signal
import sys
import threading
import time
import traceback

sys.path.insert(0, os.environ["ONNXSTYLE_E2E_SCRIPTS"])  # gimp-batch.sh, gimp-gui.sh
import layer_dump  # noqa: E402  (tests/gimp/layer_dump.py)
from gi.repository import Gimp, Gio

PROC = "plug-in-onnxstyle-neural-style-layers"
OUT = os.environ["ONNXSTYLE_E2E_OUT"]
FRAMES = os.environ["ONNXSTYLE_E2E_FRAMES"].split(":")
STYLE = os.environ["ONNXSTYLE_E2E_STYLE"]
RUN_MARK = f"ONNXSTYLE_E2E_RUN={os.environ['ONNXSTYLE_E2E_RUN']}".encode()


def report(case, **fields):
    layer_dump.append_line(os.path.join(OUT, "report.jsonl"), case=case, **fields)


def dump_layers(image, case):
    return layer_dump.dump_layers(image, case, OUT)


def animation():
    """Frame 1 is the bottom layer: each later frame goes on top."""
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(FRAMES[0]))
    image.get_layers()[0].set_name("frame 1")
    for number, path in enumerate(FRAMES[1:], 2):
        layer = Gimp.file_load_layer(
            Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path)
        )
        layer.set_name(f"frame {number}")
        image.insert_layer(layer, None, 0)
    return image


def call(image):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    if proc is None:
        raise RuntimeError(f"procedure {PROC} is not registered")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers()[:1])
    config.set_property("style-file", Gio.File.new_for_path(STYLE))
    config.set_property("quality", "draft")
    result = proc.run(config)
    status = result.index(0)
    error = Gimp.get_pdb().get_last_error() if status != Gimp.PDBStatusType.SUCCESS else ""
    return status.value_nick, error


def processes(word):
    """This run's processes whose command line holds `word` (marked in their environment)."""
    pids = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{proc}/cmdline", "rb") as f:
                if word not in f.read():
                    continue
            with open(f"{proc}/environ", "rb") as f:
                if RUN_MARK in f.read().split(b"\0"):
                    pids.append(int(proc.split("/")[2]))
        except OSError:
            pass
    return pids


def cancel_after_frame(number, noted):
    """What GIMP's Cancel on the progress bar does (gimp_plug_in_close(plug_in, TRUE)): the
    plug-in is killed; here once frame `number`'s result is in the plug-in's folder."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if glob.glob(f"/tmp/onnxstyle-gimp-*/frame-{number}-result.raw"):
            for pid in processes(b"onnxstyle-neural-style.py"):
                os.kill(pid, signal.SIGKILL)
                noted["killed"] = pid
            return
        time.sleep(0.05)


def case(name, prepare=None, cancel_after=None):
    try:
        image = animation()
        if prepare:
            prepare(image)
        noted = {}
        if cancel_after:
            threading.Thread(target=cancel_after_frame, args=(cancel_after, noted)).start()
        status, error = call(image)
        deadline = time.monotonic() + 60
        while processes(b"onnxstyle.plugin.worker") and time.monotonic() < deadline:
            time.sleep(0.1)  # a killed plug-in's worker ends when its stdin closes
        report(
            name,
            status=status,
            error=error,
            layers=dump_layers(image, name),
            workers_left=processes(b"onnxstyle.plugin.worker"),
            temp_dirs=glob.glob("/tmp/onnxstyle-gimp-*"),
            **noted,
        )
        image.delete()
    except Exception:
        report(name, status="exception", error=traceback.format_exc(), layers=[])


def moved_layer(image):
    image.get_layers()[1].set_offsets(3, 0)


case("layers")
case("cancel", cancel_after=2)
case("moved-layer", prepare=moved_layer)
