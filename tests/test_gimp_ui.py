"""The plug-in's dialog in a real GIMP 3 window: the preview, one warm worker, the faults.

GIMP 3's GUI runs on a virtual screen (Xvfb) with a private D-Bus session, in the same Debian 13
root as the batch test (tests/gimp/gimp-gui.sh, gimp_setup.py). tests/gimp/ui_session.py is
GIMP's side: it opens the dialog once per case, as the menu does. tests/gimp/ui_driver.py is the
user: it presses the dialog's buttons and sets its values through the accessibility bus (AT-SPI),
kills the worker, deletes the style file, and takes screenshots. The tests below judge what a
user would see: the screenshots, the dialog's own words, the layers, the processes and files left.

The screenshots stay in the folder this test prints ($ONNXSTYLE_ARTIFACTS/gimp-ui if set).
Without GIMP 3 or a virtual screen the tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from gimp_setup import SCRIPTS, binds, gimp_root, gui_ready, install
from helpers import EXAMPLES, plugin_constants
from PIL import Image
from test_gimp_layers import make_frames

from onnxstyle.core.engine import PRESETS
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W

MAX_SIZE = 160  # the final job's size: the whole-layer run stays short


def _artifacts(tmp_path_factory) -> Path:
    base = os.environ.get("ONNXSTYLE_ARTIFACTS")
    if not base:
        return tmp_path_factory.mktemp("gimp-ui")
    folder = Path(base) / "gimp-ui"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def gui(tmp_path_factory, pytestconfig):
    root = gimp_root()
    gui_ready(root)
    folder = _artifacts(tmp_path_factory)
    gimp_dir, home, out = folder / "gimp3", folder / "home", folder / "out"
    for d in (gimp_dir, home, out):
        d.mkdir()
    install(gimp_dir)
    (gimp_dir / "gimprc").write_text("(show-welcome-dialog no)\n")
    shutil.copy(EXAMPLES / "chelsea.jpg", folder / "content.jpg")
    shutil.copy(EXAMPLES / "swirls.jpg", folder / "style.jpg")
    env = {
        **os.environ,
        "HOME": str(home),
        "GIMP3_DIRECTORY": str(gimp_dir),
        "ONNXSTYLE_E2E_OUT": str(out),
        "ONNXSTYLE_E2E_CONTENT": str(folder / "content.jpg"),
        "ONNXSTYLE_E2E_STYLE": str(folder / "style.jpg"),
        "ONNXSTYLE_E2E_MAX_SIZE": str(MAX_SIZE),
        "ONNXSTYLE_E2E_FRAMES": ":".join(map(str, make_frames(folder))),
    }
    command = [str(SCRIPTS / "gimp-gui.sh"), root, str(SCRIPTS / "ui_driver.py")]
    if root != "/":
        command += binds(folder)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - started
    (folder / "gui.log").write_text(done.stdout + done.stderr)
    steps = _lines(out / "driver.jsonl")
    session = {r["case"]: r for r in _lines(out / "session.jsonl")}
    log = (out / "gimp.log").read_text(errors="replace") if (out / "gimp.log").exists() else ""
    _crop_dialog(out, steps)
    _say(
        pytestconfig,
        f"GIMP UI test: {seconds:.0f} s, screenshots in {out}; "
        + ", ".join(
            f"{s['step']} {s['seconds']} s ({s['worker_cpu_s']} s of worker CPU)"
            for s in steps
            if "preview" in s["step"]
        ),
    )
    failed = [s for s in steps if s["step"] == "failed"]
    assert done.returncode == 0 and not failed, (
        f"the GUI run failed (rc {done.returncode}): {failed}\nscreenshots: {out}\n"
        f"{(done.stdout + done.stderr)[-3000:]}\n--- GIMP's log:\n{log[-3000:]}"
    )
    return {"out": out, "steps": steps, "session": session, "log": log}


def _say(pytestconfig, line: str) -> None:
    """One line on the terminal even while output is captured: where the screenshots are."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _crop_dialog(out: Path, steps: list[dict]) -> None:
    """The dialog with its first preview, alone: the README's picture comes from here."""
    opened = [s for s in steps if s["step"] == "open"]
    if opened and (out / "2-first-preview.png").exists():
        x, y, w, h = opened[0]["dialog"]
        Image.open(out / "2-first-preview.png").crop((x, y, x + w, y + h)).save(
            out / "dialog-with-preview.png"
        )


def step(gui, name: str, case: int = 0) -> dict:
    """The case-th (0-based) step of that name the driver noted."""
    found = [s for s in gui["steps"] if s["step"] == name]
    assert len(found) > case, f"the driver never reached {name!r}: {gui['steps']}"
    return found[case]


def crop(gui, shot: str, box) -> np.ndarray:
    x, y, w, h = box
    return np.asarray(Image.open(gui["out"] / f"{shot}.png").convert("RGB"))[y : y + h, x : x + w]


def colours(pixels: np.ndarray) -> int:
    """Distinct colours: a blank area has one or two (its background), a picture thousands."""
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


def layers(gui, case: str) -> list[np.ndarray]:
    record = gui["session"].get(case)
    assert record, f"GIMP never reported {case}: {gui['session']}"
    return [
        np.fromfile(layer["raw"], np.uint8).reshape(layer["size"][1], layer["size"][0], 4)
        for layer in record["layers"]
    ]


def plugin_log(gui) -> list[str]:
    return [line for line in gui["log"].splitlines() if line.startswith("onnxstyle-neural-style:")]


# ------------------------------------------------------------------ the preview


def test_the_preview_area_turns_from_blank_to_the_styled_layer(gui):
    opened = step(gui, "open")
    assert opened["status"].startswith("Press Preview"), opened
    before = colours(crop(gui, "1-dialog-open", opened["image"]))
    after = colours(crop(gui, "2-first-preview", opened["image"]))
    assert before <= 3, (
        f"the preview area must be blank before the first preview ({before} colours)"
    )
    assert after > 1000, f"the preview area shows no picture after Preview ({after} colours)"
    first = step(gui, "first-preview")
    assert first["status"].startswith("Preview ready in"), first


def test_a_changed_value_marks_the_preview_stale_and_the_next_one_differs(gui):
    assert "changed" in step(gui, "changed")["status"]
    later = step(gui, "later-preview")
    assert later["status"].startswith("Preview ready"), later
    box = step(gui, "open")["image"]
    strength_1 = crop(gui, "2-first-preview", box).astype(int)
    strength_3 = crop(gui, "3-later-preview", box).astype(int)
    assert np.abs(strength_3 - strength_1).mean() > 3.0, "strength 3 looks like strength 1"


def test_fast_clicks_run_one_job_at_a_time_and_the_last_request_wins(gui):
    in_flight, most, sent, shown = 0, 0, [], []
    for line in plugin_log(gui):
        if m := re.search(r"preview job (preview-\d+) sent", line):
            in_flight += 1
            sent.append(m.group(1))
        elif re.search(r"preview job preview-\d+ ended", line):
            in_flight -= 1
        elif m := re.search(r"preview job (preview-\d+) shown", line):
            shown.append(m.group(1))
        elif "final job" in line:
            break
        most = max(most, in_flight)
    assert most == 1, f"{most} preview jobs ran at once:\n" + "\n".join(plugin_log(gui))
    assert shown and shown[-1] == sent[-1], (
        f"the last request did not win: sent {sent}, shown {shown}"
    )
    assert "busy" not in gui["log"]
    # a value changed mid-preview cancelled it: the worker stopped it, its answer was dropped
    assert any("ended: cancelled (stale: dropped)" in line for line in plugin_log(gui))


def test_one_warm_worker_serves_every_preview_and_the_final_job(gui):
    pids = {tuple(step(gui, name)["workers"]) for name in ("first-preview", "later-preview")}
    assert len(pids) == 1 and len(next(iter(pids))) == 1, f"workers seen: {pids}"
    log = plugin_log(gui)
    final = next(i for i, line in enumerate(log) if "final job on the dialog's warm worker" in line)
    assert sum("worker started" in line for line in log[:final]) == 1, "\n".join(log)


def test_ok_paints_a_new_layer_and_leaves_nothing_behind(gui):
    record = gui["session"]["preview-then-ok"]
    assert record["status"] == "success", record["error"]
    new, source = layers(gui, "preview-then-ok")
    assert [layer["name"] for layer in record["layers"]] == [
        "Background (neural style)",
        "Background",
    ]
    (untouched,) = layers(gui, "close-mid-preview")
    assert np.array_equal(source, untouched), "the original layer changed"
    assert np.abs(new[..., :3].astype(int) - source[..., :3]).mean() > 5.0, "no style painted"
    closed = step(gui, "closed", 0)
    assert closed["workers"] == [] and closed["temp_dirs"] == [], closed


def test_dialog_values_are_remembered_after_ok(gui):
    assert step(gui, "open", 0)["strength"] == 1.0
    assert step(gui, "open", 1)["strength"] == 3.0, "the strength set before OK was forgotten"


# ------------------------------------------------------------------ faults


def test_a_crashed_worker_is_reported_and_the_next_preview_restarts_it(gui):
    crash = step(gui, "crash")
    assert crash["killed"], "no worker was running to kill"
    assert "The onnxstyle worker crashed" in crash["status"], crash
    assert "Press Preview" in crash["status"]
    again = step(gui, "preview-after-crash")
    assert again["status"].startswith("Preview ready"), again
    assert len(again["workers"]) == 1 and not set(again["workers"]) & set(crash["killed"])


def test_a_style_file_deleted_before_ok_is_one_clear_line_and_the_image_is_unchanged(gui):
    record = gui["session"]["crash-then-missing-style"]
    assert record["status"] == "execution-error"
    assert "does not exist" in record["error"] and "\n" not in record["error"].strip(), record
    (layer,) = layers(gui, "crash-then-missing-style")
    (untouched,) = layers(gui, "close-mid-preview")
    assert np.array_equal(layer, untouched)
    closed = step(gui, "closed", 1)
    assert closed["workers"] == [] and closed["temp_dirs"] == [], closed


def test_update_automatically_previews_a_changed_value_without_a_click(gui):
    cancel = step(gui, "cancel")  # the driver saw the progress of a preview nobody asked for
    assert cancel["workers"] and cancel["status"] == "Working on the preview…", cancel


def test_closing_the_dialog_mid_preview_leaves_no_process_and_no_file(gui):
    cancel = step(gui, "cancel")
    assert cancel["workers"] and cancel["temp_dirs"], (
        "no preview was running when Cancel was pressed"
    )
    closed = step(gui, "closed", 2)
    assert closed["workers"] == [] and closed["temp_dirs"] == [], closed
    assert gui["session"]["close-mid-preview"]["status"] == "cancel"


# ------------------------------------------------------------------ on all layers


def test_on_all_layers_styles_every_frame_and_one_undo_gives_all_back(gui):
    opened = step(gui, "layers-open")
    assert opened["title"] == "Neural Style (ONNX) on all layers", opened
    record = gui["session"]["layers-ok"]
    assert record["status"] == "success", record["error"]
    styled, undone = layers(gui, "layers-ok"), layers(gui, "layers-ok-undone")
    originals = [np.asarray(Image.open(p).convert("RGBA")) for p in _frame_files(gui)][::-1]
    assert len(styled) == len(undone) == len(originals) == 4, "layers added or removed"
    for after, before in zip(styled, originals):
        assert np.abs(after[..., :3].astype(int) - before[..., :3]).mean() > 5.0, "not styled"
    assert "Neural Style (ONNX) on all layers" in step(gui, "undo")["item"]
    for after, before in zip(undone, originals):
        assert np.array_equal(after, before), "one Undo did not give every layer back"
    closed = step(gui, "closed", 3)
    assert closed["workers"] == [] and closed["temp_dirs"] == [], closed


def _frame_files(gui) -> list[Path]:
    return sorted(gui["out"].parent.glob("frame*.png"))


# ------------------------------------------------------------------ the plug-in's copies (no GIMP)


def test_the_preset_labels_say_what_they_do():
    """The nicks are the engine's (test_protocol.py); the dialog shows words, not nicks."""
    labels = dict(plugin_constants()["PRESETS"])
    assert set(labels) == set(PRESETS)
    assert all(label != nick and label[0].isupper() for nick, label in labels.items())


def test_the_preview_options_are_what_the_worker_accepts():
    options = {
        "preset": "draft",
        "strength": 0.0,
        "max_size": plugin_constants()["PREVIEW_SIZE"],
        "steps": plugin_constants()["PREVIEW_STEPS"],
        "preserve_colors": "none",
        "device": "cpu",
        "seed": 0,
    }
    request = {
        "type": "stylize",
        "id": "preview-1",
        "content": {"path": "/tmp/c.raw", "width": 160, "height": 106, "format": "rgba8"},
        "output": {"path": "/tmp/c-result.raw"},
        "styles": [{"path": "/tmp/s.png", "weight": 1.0}],
        "options": options,
    }
    engine = W._engine_options(P.parse_request(json.dumps(request)).options, [1.0])
    assert engine.steps == plugin_constants()["PREVIEW_STEPS"]
    assert engine.max_size == plugin_constants()["PREVIEW_SIZE"]
