# Drives GIMP 3's GUI for tests/test_gimp_ui.py, as a user would, through the accessibility bus.
# Run by tests/gimp/gimp-gui.sh with the root's python3 (pyatspi, PyGObject) on the virtual screen.
# It starts GIMP with tests/gimp/ui_session.py, which opens the plug-in's dialog once per case;
# here each dialog is worked by pressing its buttons and setting its values (AT-SPI actions),
# with screenshots of the screen ($ONNXSTYLE_E2E_OUT/NAME.png). Every step appends one JSON line
# to $ONNXSTYLE_E2E_OUT/driver.jsonl; the test asserts on them. Nothing is judged here.
import glob
import json
import os
import signal
import subprocess
import sys
import time

import gi

gi.require_version("Gdk", "3.0")
import pyatspi  # noqa: E402
from gi.repository import Gdk  # noqa: E402

OUT = os.environ["ONNXSTYLE_E2E_OUT"]
STYLE = os.environ["ONNXSTYLE_E2E_STYLE"]
TIMEOUT_S = float(os.environ.get("ONNXSTYLE_E2E_TIMEOUT", "300"))
HERE = os.path.dirname(os.path.abspath(__file__))
TITLE = "Neural Style (ONNX)"
T0 = time.monotonic()
RUN_MARK = f"ONNXSTYLE_E2E_RUN={os.getpid()}-{time.time_ns()}"


class Failed(Exception):
    pass


def note(step, **fields):
    fields.update(step=step, t=round(time.monotonic() - T0, 2))
    with open(os.path.join(OUT, "driver.jsonl"), "a") as f:
        f.write(json.dumps(fields) + "\n")


def wait(what, predicate, timeout=TIMEOUT_S, every=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
        except Exception:  # an accessible that went away mid-walk: look again
            value = None
        if value:
            return value
        time.sleep(every)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------ the accessibility tree


def walk(node, depth=0):
    if node is None or depth > 40:
        return
    yield node
    for child in node:
        yield from walk(child, depth + 1)


def find_dialog():
    for app in pyatspi.Registry.getDesktop(0):
        for window in app or []:
            if window is not None and window.name.startswith(TITLE):  # "... on all layers" too
                return window
    return None


def find(dialog, role, name=None, description=None):
    for node in walk(dialog):
        if node.getRoleName() != role:
            continue
        if (name is None or node.name == name) and (
            description is None or node.description == description
        ):
            return node
    raise Failed(f"no {role} {name or description!r} in the dialog")


def press(dialog, name):
    find(dialog, "button", name).queryAction().doAction(0)


def spin(dialog, label):
    """The spin button beside `label` (GIMP packs a label, a slider and a spin button in a box)."""
    for node in walk(dialog):
        children = list(node) if node.childCount < 8 else []
        if any(c.getRoleName() == "label" and c.name == label for c in children):
            for c in children:
                if c.getRoleName() == "spin button":
                    return c.queryValue()
    raise Failed(f"no spin button for {label!r}")


def status(dialog):
    return find(dialog, "label", description="Preview status").name


def progress(dialog):
    return find(dialog, "progress bar").queryValue().currentValue


def extents(node):
    box = node.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
    return [box.x, box.y, box.width, box.height]


def shot(name):
    root = Gdk.get_default_root_window()
    pixbuf = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
    pixbuf.savev(os.path.join(OUT, f"{name}.png"), "png", [], [])


# ------------------------------------------------------------------ processes and files


def workers():
    """The workers of this GIMP: other sessions' workers may run on the same machine, so ours are
    told apart by RUN_MARK in their environment (inherited from GIMP); orphans are found too."""
    pids = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{proc}/cmdline", "rb") as f:
                if b"onnxstyle.plugin.worker" not in f.read():
                    continue
            with open(f"{proc}/environ", "rb") as f:
                if RUN_MARK.encode() in f.read().split(b"\0"):
                    pids.append(int(proc.split("/")[2]))
        except OSError:
            pass
    return sorted(pids)


def temp_dirs():
    return sorted(glob.glob("/tmp/onnxstyle-gimp-*"))


def session_cases():
    try:
        with open(os.path.join(OUT, "session.jsonl")) as f:
            return [json.loads(line)["case"] for line in f]
    except OSError:
        return []


# ------------------------------------------------------------------ the cases


def preview(dialog, label):
    """Press Preview and wait for the dialog to say the preview is ready (or what went wrong)."""
    started, cpu = time.monotonic(), cpu_seconds()
    press(dialog, "Preview")
    return finished(dialog, label, started, cpu)


def finished(dialog, label, started, cpu_before=0.0):
    """Wait for the status line of the preview asked for at `started` and note it, with the CPU
    seconds our workers spent meanwhile (wall time depends on what else the machine runs)."""
    wait(f"{label} to start", lambda: not _ready_or_error(status(dialog)), timeout=30)
    text = wait(f"{label}", lambda: _ready_or_error(status(dialog)))
    seconds = round(time.monotonic() - started, 2)
    cpu = round(cpu_seconds() - cpu_before, 1)
    note(label, seconds=seconds, worker_cpu_s=cpu, status=text, workers=workers())
    return text


def cpu_seconds():
    """User + system CPU time of this run's workers so far."""
    total = 0
    for pid in workers():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _ready_or_error(text):
    return text if text.startswith("Preview ready") or "crash" in text or "rror" in text else None


def open_dialog(case):
    dialog = wait(f"the dialog of {case}", find_dialog)
    image = find(dialog, "icon", "Preview image")
    wait("the dialog to be drawn", lambda: extents(image)[2] > 0)
    time.sleep(0.5)  # its first frame on the screen
    note(
        "open",
        case=case,
        dialog=extents(dialog),
        image=extents(image),
        status=status(dialog),
        workers=workers(),
        temp_dirs=temp_dirs(),
        strength=spin(dialog, "Strength").currentValue,
    )
    return dialog


def gone(dialog, case):
    wait(f"the dialog of {case} to close", lambda: find_dialog() is None)
    wait(f"GIMP to report {case}", lambda: case in session_cases())


def preview_then_ok(dialog):
    shot("1-dialog-open")
    preview(dialog, "first-preview")
    shot("2-first-preview")
    spin(dialog, "Strength").currentValue = 0.5
    note(
        "changed",
        status=wait("the stale notice", lambda: "changed" in status(dialog) and status(dialog)),
    )
    # fast clicks with other values each time: one job at a time, the last request wins
    cpu = cpu_seconds()
    for strength in (2.0, 0.5, 3.0):
        spin(dialog, "Strength").currentValue = strength
        started = time.monotonic()
        press(dialog, "Preview")
        time.sleep(0.3)
    finished(dialog, "later-preview", started, cpu)
    shot("3-later-preview")
    note("ok", workers=workers())
    press(dialog, "OK")
    gone(dialog, "preview-then-ok")
    note("closed", workers=workers(), temp_dirs=temp_dirs())


def crash_then_missing_style(dialog):
    press(dialog, "Preview")
    wait("the preview job's progress", lambda: progress(dialog) > 0)
    victims = workers()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    text = wait("the crash message", lambda: "crash" in status(dialog) and status(dialog))
    note("crash", killed=victims, status=text)
    shot("5-worker-crashed")
    preview(dialog, "preview-after-crash")
    saved = STYLE + ".saved"
    os.rename(STYLE, saved)  # the style file disappears between the preview and OK
    try:
        press(dialog, "OK")
        gone(dialog, "crash-then-missing-style")
    finally:
        os.rename(saved, STYLE)
    note("closed", workers=workers(), temp_dirs=temp_dirs())


def close_mid_preview(dialog):
    # auto-update: a changed value starts a preview by itself, and Cancel lands in the middle of it
    find(dialog, "check box", "Update automatically").queryAction().doAction(0)
    spin(dialog, "Strength").currentValue = 2.0
    wait("the automatic preview's progress", lambda: progress(dialog) > 0)
    note("cancel", workers=workers(), temp_dirs=temp_dirs(), status=status(dialog))
    closing = time.monotonic()
    press(dialog, "Cancel")
    gone(dialog, "close-mid-preview")
    # the plug-in returns only after stopping the worker: nothing may be left over
    note(
        "closed",
        seconds=round(time.monotonic() - closing, 2),
        workers=workers(),
        temp_dirs=temp_dirs(),
    )


def layers_ok(dialog):
    """On all layers: the dialog as it opens (its preview area shows the selected frame's shape),
    OK, then Edit → Undo once in GIMP's window."""
    note("layers-open", title=dialog.name, status=status(dialog))
    shot("6-layers-dialog")
    started = time.monotonic()
    press(dialog, "OK")
    gone(dialog, "layers-ok")
    note("layers-done", seconds=round(time.monotonic() - started, 2), workers=workers())
    shot("7-layers-styled")
    item = wait("GIMP's Edit → Undo", undo_item, timeout=30)
    label = item.name  # the item goes away with the undo (GIMP relabels its menu)
    note("undo", item=label)
    # Ctrl+Z on the image window, as a user types it: the pointer over the canvas gives it the
    # keyboard (no window manager: focus follows the pointer)
    pyatspi.Registry.generateMouseEvent(400, 300, pyatspi.MOUSE_ABS)
    time.sleep(0.3)
    for code, kind in (
        (37, pyatspi.KEY_PRESS),
        (52, pyatspi.KEY_PRESSRELEASE),
        (37, pyatspi.KEY_RELEASE),
    ):
        pyatspi.Registry.generateKeyboardEvent(code, None, kind)  # Control_L, z on Xvfb's keymap
    time.sleep(1.0)  # GIMP undoes on its main loop
    shot("8-layers-undone")
    with open(os.path.join(OUT, "undone"), "w") as f:
        f.write(label)
    wait("GIMP to dump the undone layers", lambda: "layers-ok-undone" in session_cases())
    note("closed", workers=workers(), temp_dirs=temp_dirs())


def undo_item():
    """The Undo item of GIMP's Edit menu (its name says what it undoes), found from the menu bar
    down, not through the whole window's tree."""
    for app in pyatspi.Registry.getDesktop(0):
        if app is None or "gimp" not in (app.name or "").lower():
            continue
        for node in walk(app, 0):
            if node.getRoleName() == "menu bar":
                for menu in node:
                    if menu.name.replace("_", "") == "Edit":
                        for item in walk(menu):
                            if item.getRoleName() == "menu item" and item.name.startswith("Undo"):
                                return item
    return None


CASES = {
    "preview-then-ok": preview_then_ok,
    "crash-then-missing-style": crash_then_missing_style,
    "close-mid-preview": close_mid_preview,
    "layers-ok": layers_ok,
}


def main():
    os.environ["ONNXSTYLE_E2E_CASES"] = ",".join(CASES)
    command = [
        "gimp-3.0",
        "--new-instance",
        "--no-splash",
        "--no-data",
        "--no-fonts",
        "--batch-interpreter=python-fu-eval",
        "--batch",
        f"exec(open({os.path.join(HERE, 'ui_session.py')!r}).read())",
    ]
    with open(os.path.join(OUT, "gimp.log"), "wb") as log:
        name, value = RUN_MARK.split("=")
        env = {**os.environ, name: value}
        gimp = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    note("gimp-started", pid=gimp.pid)
    code = 0
    try:
        for case, work in CASES.items():
            work(open_dialog(case))
        gimp.wait(timeout=60)
        note("gimp-quit", returncode=gimp.returncode)
    except Exception as exc:  # noted for the test, with the screen as it was
        note("failed", error=f"{type(exc).__name__}: {exc}")
        shot("failed")
        code = 1
    finally:
        if gimp.poll() is None:
            gimp.kill()
            gimp.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
