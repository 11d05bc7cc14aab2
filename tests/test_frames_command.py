"""`onnxstyle frames`: a clip in, the same kind of clip out (frame count, size, rate or durations
kept), each bad input one line, a cancel that keeps the finished frames and a run that goes on
after them, and never a half-written video."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_clips import audio_packets, video_with_audio

from onnxstyle.core.clips import FrameFolder, probe_clip, read_frames

ROOT = Path(__file__).resolve().parent.parent
ONNXSTYLE = [str(Path(sys.executable).parent / "onnxstyle")]
STYLE = str(ROOT / "examples" / "swirls.jpg")
FAST = ["--preset", "draft", "--steps", "4", "--max-size", "48", "--min-size", "24", "-q"]


def make(path: Path, frames: int = 4, size: int = 48) -> Path:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_clip.py"), str(path), "--size",
         str(size), "--frames", str(frames)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def frames(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ONNXSTYLE, "frames", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_clip_comes_out_the_same_kind_frame_for_frame(tmp_path, suffix):
    source = make(tmp_path / f"in{suffix}")
    out = tmp_path / f"out{suffix}"
    done = frames(str(source), STYLE, "-o", str(out), *FAST[:-1])
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (4 frames, 48×48)" in done.stderr
    before, after = probe_clip(source), probe_clip(out)
    assert (after.count, after.width, after.height) == (4, 48, 48)
    assert (after.rate, after.durations_ms) == (before.rate, before.durations_ms)
    assert not (tmp_path / f"out{suffix}.frames").exists()  # the work folder went with the encode
    styled, original = next(read_frames(out)), next(read_frames(source))
    assert np.abs(styled - original).mean() > 0.05  # painted, not copied


def test_a_folder_of_frames_in_and_out(tmp_path):
    source = make(tmp_path / "in", frames=3)
    out = tmp_path / "out"
    done = frames(str(source), STYLE, "-o", str(out), "--temporal-weight", "0", *FAST)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png", "000002.png"]


def test_cancel_keeps_the_finished_frames_and_the_same_command_goes_on(tmp_path):
    source = make(tmp_path / "in.gif", frames=6)
    out = tmp_path / "out.gif"
    work = tmp_path / "out.gif.frames"
    argv = [*ONNXSTYLE, "frames", str(source), STYLE, "-o", str(out), *FAST[:-3], "--steps", "30"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (not work.is_dir() or FrameFolder(work).done() < 2) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read()
    assert code == 130, stderr
    kept = FrameFolder(work).done()
    assert 2 <= kept < 6 and f"kept {kept} of 6 finished frames in {work}" in stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    first = (work / "000000.png").read_bytes()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert probe_clip(out).count == 6
    assert not work.exists()
    with Image.open(out) as im:  # the frames done before the cancel are the clip's first frames
        kept_first = np.asarray(im.convert("RGB"), np.float32)
    reference = np.asarray(Image.open(__import__("io").BytesIO(first)).convert("RGB"), np.float32)
    assert np.abs(kept_first - reference).mean() < 6  # GIF's palette, nothing more


def test_frames_of_another_run_are_not_mixed_in(tmp_path):
    source = make(tmp_path / "in", frames=2)
    out = tmp_path / "out"
    assert frames(str(source), STYLE, "-o", str(out), *FAST).returncode == 0
    done = frames(str(source), STYLE, "-o", str(out), *FAST, "--strength", "2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"onnxstyle: error: {out} holds frames of another run (another input, style or option): "
        "remove it, or choose another OUT"
    ]


@pytest.mark.parametrize(
    "case, message",
    [
        ("undecodable", "not a video PyAV can decode"),
        ("same", "is the input"),
        ("suffix", ".png"),
        ("weight", "--temporal-weight: must be a number ≥ 0, not -1"),
    ],
)
def test_bad_input_is_one_line(tmp_path, case, message):
    source = make(tmp_path / "in.mp4", frames=2)
    out = str(tmp_path / "out.mp4")
    extra: list[str] = []
    if case == "undecodable":
        source.write_bytes(os.urandom(4000))
    elif case == "same":
        out = str(source)
    elif case == "suffix":
        out = str(tmp_path / "out.png")
    else:
        extra = ["--temporal-weight", "-1"]
    done = frames(str(source), STYLE, "-o", out, *FAST, *extra)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, lines
    assert not Path(out).exists() or case == "same"


def test_distribute_styles_the_clip_in_chunks_on_a_local_ray(tmp_path):
    source = make(tmp_path / "in.gif", frames=5)
    out = tmp_path / "out.gif"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    argv = [*ONNXSTYLE, "frames", str(source), STYLE, "-o", str(out), *FAST]
    done = subprocess.run(
        [*argv, "--distribute", "--chunk", "3", "--overlap", "1"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert probe_clip(out).count == 5 and not (tmp_path / "out.gif.frames").exists()


def test_a_videos_audio_comes_through_the_command_as_it_was(tmp_path):
    source, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    video_with_audio(source, frames=3)
    done = frames(str(source), STYLE, "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert probe_clip(out).count == 3 and audio_packets(out) == audio_packets(source)
