"""Clips in and out (core/clips.py): every kind round-trips with its count, size and timing; a
video's audio is copied as it is; the work folder resumes; a failed encode leaves nothing; each
bad input is one line; frames stream."""

from __future__ import annotations

import importlib.util
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import EXAMPLES

from onnxstyle.core.clips import (
    ClipError,
    ClipInfo,
    FrameFolder,
    output_kind,
    probe_clip,
    read_frames,
    work_folder,
    write_clip,
)

_spec = importlib.util.spec_from_file_location("make_clip", EXAMPLES / "make_clip.py")
assert _spec and _spec.loader
make_clip_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_clip_module)
make_clip = make_clip_module.make_clip

W, H, N = 48, 32, 6
# the worst mean |difference| per frame after each lossy codec at these settings (measured
# about 0.03 for H.264/VP9/WebP and 0.012 for GIF's 256 colours on these textures)
LOSSY = {".mp4": 0.06, ".webm": 0.06, ".gif": 0.03, ".webp": 0.06, "": 1 / 255}


def frames_folder(path: Path, width=W, height=H, count=N) -> tuple[FrameFolder, list[np.ndarray]]:
    folder = FrameFolder(path)
    frames = list(make_clip(width, height, count, seed=1))
    for index, image in enumerate(frames):
        folder.write(index, image)
    return folder, frames


def video_source(path: Path, rate=Fraction(12), has_audio=False) -> ClipInfo:
    return ClipInfo(path, "video", W, H, N, rate, None, None, has_audio)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif", ".webp", ""])
def test_round_trip_keeps_count_size_timing_and_pixels(tmp_path, suffix):
    folder, frames = frames_folder(tmp_path / "work")
    out = tmp_path / f"clip{suffix}"
    durations = (60, 100, 80, 120, 40, 200)
    if suffix in (".gif", ".webp"):
        source = ClipInfo(tmp_path / "in.gif", "animation", W, H, N, None, durations, 3, False)
    else:
        source = video_source(tmp_path / "in.mp4")
    assert write_clip(folder, N, out, source) == []

    info = probe_clip(out)
    assert (info.width, info.height, info.count) == (W, H, N)
    assert info.kind == output_kind(out)
    if info.kind == "video":
        assert info.rate == 12
    if info.kind == "animation":
        assert info.durations_ms == durations and info.loop == 3
    got = list(read_frames(out))
    assert len(got) == N
    for index, (a, b) in enumerate(zip(got, frames)):
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.abs(a - b).mean() < LOSSY[suffix], f"frame {index}"
    # frames from an index on, as a resumed run asks for them
    assert np.array_equal(next(read_frames(out, start=4)), got[4])
    assert no_leftovers(tmp_path) == []


def test_video_to_animation_lasts_as_long(tmp_path):
    """30 fps is 33.3 ms a frame; GIF counts hundredths, so the durations alternate and the
    animation's length stays that of the video."""
    folder, _ = frames_folder(tmp_path / "work")
    write_clip(folder, N, tmp_path / "a.gif", video_source(tmp_path / "in.mp4", Fraction(30)))
    info = probe_clip(tmp_path / "a.gif")
    assert info.durations_ms is not None and set(info.durations_ms) <= {30, 40}
    assert sum(info.durations_ms) == 200 and info.loop == 0


def test_animation_to_video_takes_its_mean_rate(tmp_path):
    folder, _ = frames_folder(tmp_path / "work")
    source = ClipInfo(tmp_path / "in.gif", "animation", W, H, N, None, (100,) * N, 0, False)
    write_clip(folder, N, tmp_path / "a.webm", source)
    assert probe_clip(tmp_path / "a.webm").rate == 10


def test_odd_size_is_padded_for_h264_and_said(tmp_path):
    folder, frames = frames_folder(tmp_path / "work", 33, 21)
    notes = write_clip(folder, N, tmp_path / "a.mp4", video_source(tmp_path / "in.mp4"))
    assert len(notes) == 1 and "34x22" in notes[0]
    first = next(read_frames(tmp_path / "a.mp4"))
    assert first.shape == (22, 34, 3)
    assert np.abs(first[:21, :33] - frames[0]).mean() < LOSSY[".mp4"]


def test_output_kinds_and_work_folders(tmp_path):
    assert [output_kind(Path(f"x{s}")) for s in (".MP4", ".mov", ".mkv", ".webm")] == ["video"] * 4
    assert output_kind(Path("x.gif")) == output_kind(Path("x.WebP")) == "animation"
    assert output_kind(Path("frames")) == output_kind(tmp_path) == "folder"
    assert work_folder(tmp_path / "out.mp4") == tmp_path / "out.mp4.frames"
    assert work_folder(tmp_path / "out") == tmp_path / "out"
    with pytest.raises(ClipError) as exc:
        output_kind(Path("x.avi"))
    assert ".avi" in one_line(exc) and ".mp4" in str(exc.value) and ".gif" in str(exc.value)


# --------------------------------------------------------------------------- audio


def video_with_audio(path: Path, codec: str = "aac", frames: int = 12) -> None:
    """A 1 s clip at 12 fps with a mono 440 Hz tone, as a camera or phone would give."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream(codec, rate=48000)
        audio.layout = "mono"
        for image in make_clip(W, H, frames):
            rgb = np.rint(image * 255).astype(np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode())
        size = audio.codec_context.frame_size or 960
        for start in range(0, 48000, size):
            t = (start + np.arange(size)) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())


def audio_packets(path: Path) -> tuple[str | None, int]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None, 0
        stream = container.streams.audio[0]
        count = sum(1 for p in container.demux(stream) if p.size)
        return stream.codec_context.name, count


def test_audio_is_copied_as_it_is(tmp_path):
    source_path = tmp_path / "in.mp4"
    video_with_audio(source_path)
    source = probe_clip(source_path)
    assert source.has_audio and source.count == 12
    folder, _ = frames_folder(tmp_path / "work", count=12)
    assert write_clip(folder, 12, tmp_path / "out.mp4", source) == []
    assert probe_clip(tmp_path / "out.mp4").has_audio
    # the same packets: remuxed, not re-encoded
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(source_path)


def test_audio_that_does_not_fit_is_dropped_and_said(tmp_path):
    source_path = tmp_path / "in.mp4"
    video_with_audio(source_path)  # AAC: WebM takes only Opus and Vorbis
    folder, _ = frames_folder(tmp_path / "work", count=12)
    notes = write_clip(folder, 12, tmp_path / "out.webm", probe_clip(source_path))
    assert notes == ["audio dropped: .webm can't hold aac audio as it is"]
    assert not probe_clip(tmp_path / "out.webm").has_audio


# --------------------------------------------------------------------------- resume, atomicity


def test_done_counts_whole_frames_from_zero(tmp_path):
    folder, _ = frames_folder(tmp_path / "work", count=3)
    assert folder.done() == 3
    # what a killed run leaves: write_atomic's temporary file, and a frame cut off by a copy
    (folder.path / ".000003.png.x1y2.part").write_bytes(b"\x89PNG\r\n\x1a\n")
    whole = folder.frame_path(0).read_bytes()
    folder.frame_path(3).write_bytes(whole[: len(whole) // 2])
    assert folder.done() == 3
    folder.write(5, next(make_clip(W, H, 1)))  # a gap: frame 4 is still to do
    assert folder.done() == 3
    folder.write(3, next(make_clip(W, H, 1)))
    folder.write(4, next(make_clip(W, H, 1)))
    assert folder.done() == 6
    assert np.abs(folder.read(4) - next(make_clip(W, H, 1))).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp"])
def test_failed_encode_leaves_no_output_and_no_temporary(tmp_path, suffix):
    folder, _ = frames_folder(tmp_path / "work")
    data = bytearray(folder.frame_path(4).read_bytes())
    data[60:90] = b"\xff" * 30  # inside the image data: the name and PNG's end are intact
    folder.frame_path(4).write_bytes(data)
    assert folder.done() == N  # it looks whole, and only the encode finds out
    out = tmp_path / f"out{suffix}"
    with pytest.raises(ClipError) as exc:
        write_clip(folder, N, out, video_source(tmp_path / "in.mp4"))
    assert "000004.png" in one_line(exc)
    assert not out.exists() and no_leftovers(tmp_path) == []


def test_missing_frames_are_refused_before_encoding(tmp_path):
    folder, _ = frames_folder(tmp_path / "work", count=3)
    with pytest.raises(ClipError) as exc:
        write_clip(folder, 5, tmp_path / "out.mp4", video_source(tmp_path / "in.mp4"))
    assert "frame 3 is missing" in one_line(exc)
    assert not (tmp_path / "out.mp4").exists()


# --------------------------------------------------------------------------- bad input


def test_undecodable_file_is_one_line(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ClipError) as exc:
        probe_clip(bad)
    assert "noise.mp4" in one_line(exc) and "decode" in str(exc.value)
    with pytest.raises(ClipError):
        next(read_frames(bad))
    with pytest.raises(ClipError) as exc:
        probe_clip(tmp_path / "absent.mp4")
    assert "not found" in one_line(exc)


def test_zero_frames_is_one_line(tmp_path):
    """A Matroska file with a video track and no video packet (its sound alone was recorded)."""
    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
        for start in range(0, 4800, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 48000, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
        container.mux(stream.encode())
    with pytest.raises(ClipError) as exc:
        probe_clip(empty)
    assert "empty.mkv: no frames" in one_line(exc)
    with pytest.raises(ClipError) as exc:
        next(read_frames(empty))
    assert "no frames" in one_line(exc)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ClipError) as exc:
        probe_clip(tmp_path / "nothing")
    assert "no frames" in one_line(exc)


def test_changing_size_names_the_frame(tmp_path):
    folder, _ = frames_folder(tmp_path / "in", count=4)
    folder.write(2, next(make_clip(W + 2, H, 1)))
    assert probe_clip(folder.path).count == 4  # the header can't tell; the frame itself does
    frames = read_frames(folder.path)
    next(frames), next(frames)
    with pytest.raises(ClipError) as exc:
        next(frames)
    assert f"frame 2 is {W + 2}x{H}, the first is {W}x{H}" in one_line(exc)


def test_variable_frame_rate_is_one_line(tmp_path):
    vfr = tmp_path / "vfr.mp4"
    with av.open(str(vfr), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for pts, image in zip([0, 100, 200, 350, 400, 500], make_clip(W, H, N)):
            rgb = np.rint(image * 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ClipError) as exc:
        probe_clip(vfr)
    assert "variable frame rate at frame 3" in one_line(exc)
    frames = read_frames(vfr)
    next(frames), next(frames), next(frames)
    with pytest.raises(ClipError) as exc:
        next(frames)
    assert "variable frame rate" in one_line(exc)


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ""])
def test_frames_stream_one_at_a_time(tmp_path, suffix):
    """Two frames of a 120-frame clip are read holding a few frames' worth of numpy memory, not
    the clip's (tracemalloc counts numpy's buffers)."""
    count = 120
    folder, _ = frames_folder(tmp_path / "work", count=count)
    out = tmp_path / f"long{suffix}"
    write_clip(folder, count, out, video_source(tmp_path / "in.mp4"))
    frame_bytes = W * H * 3 * 4
    tracemalloc.start()
    try:
        frames = read_frames(out)
        next(frames), next(frames)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * frame_bytes < count * frame_bytes / 10
