"""Clips in and out: a video (PyAV), an animated GIF/WebP (Pillow), or a folder of numbered images.

Frames are float32 [H,W,3] RGB in [0,1], as everywhere in core/. They stream: `read_frames` decodes
one frame at a time, the styled frames go to a `FrameFolder` of numbered PNGs (the resumable work
folder), and `write_clip` encodes from that folder one frame at a time, so no clip is ever held
whole. GIF and WebP are written by small writers of our own from Pillow's single-frame files
(Pillow's own animation writers keep every frame until the end).

PyAV is the optional `video` extra, imported inside the functions that need it.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
from PIL import Image

from .errors import StyleError, first_line
from .files import open_regular, write_atomic
from .imageio import FORMATS, MAX_PIXELS, image_size, load_image


class ClipError(StyleError):
    """A clip can't be read or written: undecodable, empty, changing size, variable frame rate."""


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
ANIMATION_SUFFIXES = (".gif", ".webp")
# PyAV's (FFmpeg's) muxer names, and the video codec we encode in each container
MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
# audio codecs each container takes as they are (Matroska takes any: None)
AUDIO_FITS: dict[str, set[str] | None] = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le"},
    ".mkv": None,
    ".webm": {"opus", "vorbis"},
}
DEFAULT_RATE = Fraction(25)  # a video made from a folder of images
FRAME_NAME = "{:06d}.png"
# every whole PNG ends with this chunk (length 0, "IEND", its CRC): a cheap test of a cut-off file
PNG_END = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"


@dataclass(frozen=True)
class ClipInfo:
    """What a clip is, read from its header (no frame held)."""

    path: Path
    kind: str  # "video" | "animation" | "folder"
    width: int
    height: int
    count: int | None  # frames, when known without decoding every frame
    rate: Fraction | None  # frames per second of a video; None otherwise
    durations_ms: tuple[int, ...] | None  # per frame, GIF/WebP; None otherwise
    loop: int | None  # GIF/WebP loop count (0 = forever); None: plays once
    has_audio: bool


# --------------------------------------------------------------------------- kinds and probing


def output_kind(path: Path) -> str:
    """ "video", "animation" or "folder", by the output's suffix (an existing folder is a folder)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or not suffix:
        return "folder"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in ANIMATION_SUFFIXES:
        return "animation"
    known = ", ".join(VIDEO_SUFFIXES + ANIMATION_SUFFIXES)
    raise ClipError(f"{path}: can't write a clip as {suffix}; use {known} or a folder")


def _input_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise ClipError(f"{path}: not found")
    return "animation" if path.suffix.lower() in ANIMATION_SUFFIXES else "video"


def probe_clip(path: Path) -> ClipInfo:
    """What `path` holds, or a one-line ClipError.

    A video's packets are listed (read, not decoded) so its frame count is exact and a variable
    frame rate is refused before any work is done; GIF/WebP durations come from Pillow."""
    path = Path(path)
    kind = _input_kind(path)
    if kind == "folder":
        return _probe_folder(path)
    if kind == "animation":
        return _probe_animation(path)
    return _probe_video(path)


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ClipError(f"{path}: frames too large ({width}x{height})")


# --------------------------------------------------------------------------- videos (PyAV)


def _av() -> Any:
    try:
        import av  # noqa: PLC0415  (optional dependency)
    except ImportError:
        raise ClipError("videos need PyAV: install onnxstyle[video]") from None
    return av


def _open_video(path: Path) -> tuple[Any, Any]:
    """The container and its first video stream, or one line on why not."""
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ClipError(f"{path}: not a video PyAV can decode ({first_line(exc)})") from None
    if not container.streams.video:
        container.close()
        raise ClipError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


class _Steady:
    """Refuses a variable frame rate: every pts step equal to the first, give or take one tick
    (a rate like 30000/1001 in a millisecond time base rounds to 33 and 34)."""

    def __init__(self, path: Path) -> None:
        self.path, self.steps = path, set()
        self.last: int | None = None

    def add(self, pts: int | None, index: int) -> None:
        if pts is None:
            return
        if self.last is not None:
            self.steps.add(pts - self.last)
            if min(self.steps) <= 0 or max(self.steps) - min(self.steps) > 1:
                raise ClipError(
                    f"{self.path}: variable frame rate at frame {index} (frame intervals differ); "
                    "convert it to a constant rate first, e.g. ffmpeg -i IN -fps_mode cfr OUT"
                )
        self.last = pts


def _probe_video(path: Path) -> ClipInfo:
    container, stream = _open_video(path)
    av = _av()
    try:
        pts = []
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                pts.append(packet.pts)
        steady = _Steady(path)
        for index, value in enumerate(sorted(pts)):  # decode order differs with B-frames
            steady.add(value, index)
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        has_audio = bool(container.streams.audio)
    except av.FFmpegError as exc:
        raise ClipError(f"{path}: unreadable video ({first_line(exc)})") from None
    finally:
        container.close()
    if not pts:
        raise ClipError(f"{path}: no frames")
    _check_pixels(path, width, height)
    rate = Fraction(rate) if rate else None
    return ClipInfo(path, "video", width, height, len(pts), rate, None, None, has_audio)


def _read_video(path: Path, start: int) -> Iterator[np.ndarray]:
    av = _av()
    container, stream = _open_video(path)
    steady, size, index = _Steady(path), None, 0
    try:
        for frame in container.decode(stream):
            steady.add(frame.pts, index)
            size = _same_size(path, size, (frame.width, frame.height), index)
            if index >= start:
                rgb = frame.to_ndarray(format="rgb24")
                yield rgb.astype(np.float32) / 255.0
            index += 1
    except av.FFmpegError as exc:
        raise ClipError(f"{path}: frame {index} can't be decoded ({first_line(exc)})") from None
    finally:
        container.close()
    if index == 0:
        raise ClipError(f"{path}: no frames")


def _same_size(
    path: Path, first: tuple[int, int] | None, size: tuple[int, int], index: int
) -> tuple[int, int]:
    if first is not None and size != first:
        raise ClipError(
            f"{path}: frame {index} is {size[0]}x{size[1]}, the first is {first[0]}x{first[1]}"
        )
    return size


# --------------------------------------------------------------------------- GIF and WebP (Pillow)


def _open_animation(path: Path) -> Image.Image:
    try:
        im = Image.open(open_regular(path))
    except Exception as exc:  # Pillow and the file system: one line whatever it is
        raise ClipError(f"{path}: not a GIF or WebP Pillow can read ({first_line(exc)})") from None
    if im.format not in ("GIF", "WEBP"):
        im.close()
        raise ClipError(f"{path}: a {im.format} file, not a GIF or WebP")
    return im


def _probe_animation(path: Path) -> ClipInfo:
    with _open_animation(path) as im:
        _check_pixels(path, im.width, im.height)
        try:
            count = getattr(im, "n_frames", 1)
            durations = []
            for index in range(count):
                im.seek(index)
                if im.format == "WEBP":
                    im.load()  # Pillow reads a WebP frame's timing when it decodes it
                durations.append(int(im.info.get("duration", 0)))
        except Exception as exc:
            raise ClipError(f"{path}: corrupt animation ({first_line(exc)})") from None
        loop = im.info.get("loop")
        width, height = im.size
    if count == 0:
        raise ClipError(f"{path}: no frames")
    loop = int(loop) if loop is not None else None
    return ClipInfo(path, "animation", width, height, count, None, tuple(durations), loop, False)


def _read_animation(path: Path, start: int) -> Iterator[np.ndarray]:
    with _open_animation(path) as im:
        count, size = getattr(im, "n_frames", 1), im.size
        for index in range(start, count):
            try:
                im.seek(index)
                # Pillow gives each frame composited on the ones before (disposal applied), so
                # it is the picture shown. Its alpha is dropped, not composited over a colour:
                # none of our outputs keeps alpha (H.264/VP9 in yuv420p, the 8-bit RGB work
                # PNGs), and a made-up background would be painted by the style and tracked by
                # the flow as if it were part of the scene.
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            except Exception as exc:
                raise ClipError(
                    f"{path}: frame {index} can't be decoded ({first_line(exc)})"
                ) from None
            _same_size(path, size, (rgb.shape[1], rgb.shape[0]), index)
            yield rgb


# --------------------------------------------------------------------------- folders


def _numbered_images(path: Path) -> list[Path]:
    """The folder's image files named by a number (000001.png, 7.jpg), in number order."""
    files = [
        p
        for p in path.iterdir()
        if p.stem.isdigit() and p.suffix.lower() in FORMATS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: (int(p.stem), p.name))


def _probe_folder(path: Path) -> ClipInfo:
    files = _numbered_images(path)
    if not files:
        raise ClipError(f"{path}: no frames (no numbered images such as 000000.png)")
    width, height = image_size(files[0])
    _check_pixels(path, width, height)
    return ClipInfo(path, "folder", width, height, len(files), None, None, None, False)


def _read_folder(path: Path, start: int) -> Iterator[np.ndarray]:
    files = _numbered_images(path)
    if not files:
        raise ClipError(f"{path}: no frames (no numbered images such as 000000.png)")
    first = image_size(files[0])
    for index in range(start, len(files)):
        rgb = load_image(files[index]).rgb  # alpha dropped: see _read_animation
        _same_size(path, first, (rgb.shape[1], rgb.shape[0]), index)
        yield rgb


def read_frames(path: Path, start: int = 0) -> Iterator[np.ndarray]:
    """The clip's frames from index `start`, float32 [H,W,3] RGB in [0,1], one at a time.

    A frame whose size differs from the first, or (a video) a frame interval that differs from
    the others, raises a one-line ClipError when that frame is reached."""
    path = Path(path)
    kind = _input_kind(path)
    if kind == "folder":
        return _read_folder(path, start)
    if kind == "animation":
        return _read_animation(path, start)
    return _read_video(path, start)


# --------------------------------------------------------------------------- the work folder


class FrameFolder:
    """Numbered 8-bit PNGs 000000.png, 000001.png…: the resumable work folder (and the output
    when OUT is a folder). Each frame is written atomically, so a name that exists is whole."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClipError(
                f"{self.path}: can't make the frames folder ({first_line(exc)})"
            ) from None

    def frame_path(self, index: int) -> Path:
        return self.path / FRAME_NAME.format(index)

    def done(self) -> int:
        """How many whole frames there are from 0 on, without a gap. write_atomic's temporary
        files have other names; a frame copied in some other way and cut off lacks PNG's end."""
        count = 0
        while _whole_png(self.frame_path(count)):
            count += 1
        return count

    def write(self, index: int, image: np.ndarray) -> None:
        """Frame `index` (float32 [H,W,3] in [0,1]) as an 8-bit PNG, whole or not at all."""
        pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        # compress_level 1: a work frame is read back once; deflate's higher levels cost time
        # for a few percent of disk
        im = Image.fromarray(pixels, "RGB")
        write_atomic(self.frame_path(index), lambda file: im.save(file, "PNG", compress_level=1))

    def read(self, index: int) -> np.ndarray:
        """Frame `index` as float32 [H,W,3] in [0,1]."""
        return load_image(self.frame_path(index)).rgb

    def read_uint8(self, index: int) -> np.ndarray:
        """Frame `index` as uint8 [H,W,3], as written (what the encoders take)."""
        try:
            with Image.open(self.frame_path(index)) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as exc:  # Pillow's errors for a damaged file are of many types
            raise ClipError(
                f"{self.frame_path(index)}: damaged frame ({first_line(exc)}); delete it to redo it"
            ) from None


def _whole_png(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            if file.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            file.seek(-len(PNG_END), os.SEEK_END)
            return file.read() == PNG_END
    except OSError:
        return False


def work_folder(out: Path) -> Path:
    """Where the frames of `out` are kept until encoded: beside a video or animation, as
    NAME.frames; a folder output is its own work folder."""
    out = Path(out)
    if output_kind(out) == "folder":
        return out
    return out.with_name(out.name + ".frames")


# --------------------------------------------------------------------------- writing


def write_clip(folder: FrameFolder, count: int, out: Path, source: ClipInfo) -> list[str]:
    """Encode frames 0..count-1 of `folder` into `out` (its kind by suffix), whole or not at all.

    Timing follows `source`: a video keeps its frame rate (a GIF/WebP source gives the rate of
    its mean frame duration, a folder 25 fps); a GIF/WebP keeps the source's durations and loop
    (a video's frames last 1000/fps ms and loop forever). A video source's audio is copied as
    it is when `out` is a video whose container takes its codec. Returns the notes for the user
    (audio dropped, size padded), one line each."""
    out = Path(out)
    kind = output_kind(out)
    if count < 1:
        raise ClipError(f"{out}: no frames to write")
    if folder.done() < count:
        raise ClipError(f"{folder.path}: frame {folder.done()} is missing; can't write {out}")
    if kind == "folder":
        return _copy_folder(folder, count, out)
    notes: list[str] = []
    if kind == "video":
        write_atomic(out, lambda file: _encode_video(file, folder, count, out, source, notes))
    else:
        durations = _durations_ms(source, count, 10 if out.suffix.lower() == ".gif" else 1)
        loop = source.loop if source.kind == "animation" else 0
        frames = (folder.read_uint8(i) for i in range(count))
        writer = _write_gif if out.suffix.lower() == ".gif" else _write_webp
        write_atomic(out, lambda file: writer(file, frames, durations, loop))
    return notes


def _copy_folder(folder: FrameFolder, count: int, out: Path) -> list[str]:
    target = FrameFolder(out)
    if target.path.resolve() != folder.path.resolve():
        for index in range(count):
            target.write(index, folder.read(index))
    return []


def video_rate(source: ClipInfo) -> Fraction:
    """Frames per second for a video made from `source`."""
    if source.rate:
        return source.rate
    if source.durations_ms and sum(source.durations_ms) > 0:
        mean = Fraction(sum(source.durations_ms), 1000 * len(source.durations_ms))
        return (1 / mean).limit_denominator(1001)
    return DEFAULT_RATE


def _durations_ms(source: ClipInfo, count: int, step: int) -> list[int]:
    """Per-frame durations in ms, multiples of `step` (GIF counts hundredths of a second).
    Rounded on the running time, not frame by frame, so the clip's length stays right."""
    if source.durations_ms and len(source.durations_ms) >= count:
        times = np.cumsum((0,) + source.durations_ms[:count])
    else:
        times = np.arange(count + 1) * 1000.0 / float(video_rate(source))
    ticks = np.rint(np.asarray(times, dtype=np.float64) / step).astype(np.int64) * step
    return [max(int(d), step) for d in np.diff(ticks)]


def _even(pixels: np.ndarray) -> np.ndarray:
    """Odd sides padded to even by repeating the last row or column: H.264's 4:2:0 colour has
    one colour sample per 2x2 pixels, so libx264 refuses odd sizes, and a pad loses no pixel."""
    h, w = pixels.shape[:2]
    return np.pad(pixels, np.array([[0, h % 2], [0, w % 2], [0, 0]]), mode="edge")


def _encode_video(
    file: BinaryIO, folder: FrameFolder, count: int, out: Path, source: ClipInfo, notes: list[str]
) -> None:
    av = _av()
    suffix = out.suffix.lower()
    codec = VIDEO_CODECS[suffix]
    rate = video_rate(source)
    first = folder.read_uint8(0)
    height, width = first.shape[:2]
    pad = codec == "libx264" and (width % 2 or height % 2)
    if pad:
        notes.append(
            f"{out.name}: {width}x{height} padded to {width + width % 2}x{height + height % 2} "
            "(H.264 needs even sides; the last row or column is repeated)"
        )
    audio = None
    try:
        with av.open(file, mode="w", format=MUXERS[suffix]) as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width = width + (width % 2 if pad else 0)
            stream.height = height + (height % 2 if pad else 0)
            stream.pix_fmt = "yuv420p"
            # near-transparent quality: the styled texture is fine detail a low rate smears
            stream.options = (
                {"crf": "18", "preset": "medium"}
                if codec == "libx264"
                else {"crf": "24", "b": "0", "deadline": "good", "cpu-used": "4"}
            )
            audio = _audio_source(source, suffix, container, notes)
            for index in range(count):
                pixels = first if index == 0 else folder.read_uint8(index)
                frame = av.VideoFrame.from_ndarray(_even(pixels) if pad else pixels, "rgb24")
                frame.pts, frame.time_base = index, 1 / rate
                container.mux(stream.encode(frame))
                if audio is not None:
                    audio.mux_until(Fraction(index + 1) / rate)
            container.mux(stream.encode())
            if audio is not None:
                audio.mux_until(None)
    except av.FFmpegError as exc:
        raise ClipError(f"{out}: can't encode ({first_line(exc)})") from None
    finally:
        if audio is not None:
            audio.close()


class _AudioCopy:
    """The source's first audio stream, its packets muxed as they are (no re-encode), interleaved
    with the video by time so neither the muxer nor we hold the whole track."""

    def __init__(self, av: Any, source: Path, container: Any) -> None:
        self.input = av.open(str(source))
        self.stream_in = self.input.streams.audio[0]
        self.stream_out = container.add_stream_from_template(self.stream_in)
        self.container = container
        self.packets = (p for p in self.input.demux(self.stream_in) if p.dts is not None)
        self.pending = next(self.packets, None)

    def mux_until(self, time: Fraction | None) -> None:
        """Mux the packets that start before `time` (seconds; None: all that are left)."""
        while self.pending is not None:
            packet = self.pending
            start = packet.pts if packet.pts is not None else packet.dts
            if time is not None and start * packet.time_base >= time:
                return
            packet.stream = self.stream_out
            self.container.mux(packet)
            self.pending = next(self.packets, None)

    def close(self) -> None:
        self.input.close()


def _audio_source(source: ClipInfo, suffix: str, container: Any, notes: list[str]) -> Any:
    if not (source.has_audio and source.kind == "video"):
        return None
    av = _av()
    with av.open(str(source.path)) as probe:
        codec = probe.streams.audio[0].codec_context.name
    fits = AUDIO_FITS[suffix]
    if fits is not None and codec not in fits:
        notes.append(f"audio dropped: {suffix} can't hold {codec} audio as it is")
        return None
    return _AudioCopy(av, source.path, container)


# --------------------------------------------------------------------------- GIF and WebP writers


def _write_gif(
    file: IO[bytes], frames: Iterable[np.ndarray], durations: list[int], loop: int | None
) -> None:
    """An animated GIF written as the frames come: each frame is Pillow's one-frame GIF (its own
    256-colour palette) moved into a local colour table, after a delay in hundredths of a second.
    Frames are whole pictures, so disposal is "leave in place" and nothing shows through."""
    for index, pixels in enumerate(frames):
        single = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(single, "GIF", interlace=False)
        table, image = _gif_parts(single.getvalue())
        if index == 0:
            height, width = pixels.shape[:2]
            file.write(b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0))
            if loop is not None:
                file.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00")
        delay = min(durations[index] // 10, 0xFFFF)
        file.write(b"\x21\xf9\x04\x04" + struct.pack("<H", delay) + b"\x00\x00")
        descriptor, data = image
        size_bits = (len(table) // 3).bit_length() - 2  # 2^(n+1) entries
        packed = 0x80 | (descriptor[8] & 0x40) | size_bits  # local table; keep "interlaced"
        file.write(b"\x2c" + descriptor[:8] + bytes([packed]) + table + data)
    file.write(b"\x3b")


def _gif_parts(gif: bytes) -> tuple[bytes, tuple[bytes, bytes]]:
    """A one-frame GIF's colour table, and its image descriptor (the 9 bytes after 0x2C) and
    LZW data (minimum code size and sub-blocks up to the terminator)."""
    packed = gif[10]
    at = 13
    table = b""
    if packed & 0x80:
        table = gif[at : at + 3 * (2 << (packed & 7))]
        at += len(table)
    while gif[at] == 0x21:  # extensions: skip their sub-blocks
        at += 2
        while gif[at]:
            at += gif[at] + 1
        at += 1
    if gif[at] != 0x2C:
        raise ClipError("Pillow wrote a GIF frame without an image descriptor")
    descriptor = gif[at + 1 : at + 10]
    at += 10
    if descriptor[8] & 0x80:  # a local table instead of the global one
        table = gif[at : at + 3 * (2 << (descriptor[8] & 7))]
        at += len(table)
    end = at + 1
    while gif[end]:
        end += gif[end] + 1
    return table, (descriptor, gif[at : end + 1])


def _write_webp(
    file: IO[bytes], frames: Iterable[np.ndarray], durations: list[int], loop: int | None
) -> None:
    """An animated WebP written as the frames come: each frame is Pillow's still WebP (lossy,
    quality 90), its bitstream chunk put in an ANMF frame chunk; the RIFF size is filled in last."""
    start = file.tell()
    file.write(b"RIFF\x00\x00\x00\x00WEBP")
    for index, pixels in enumerate(frames):
        if index == 0:
            height, width = pixels.shape[:2]
            _riff_chunk(file, b"VP8X", bytes([0x02, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1))
            _riff_chunk(
                file, b"ANIM", b"\x00\x00\x00\x00" + struct.pack("<H", 1 if loop is None else loop)
            )
        single = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(single, "WEBP", quality=90, method=4)
        bitstream = _webp_bitstream(single.getvalue())
        height, width = pixels.shape[:2]
        header = _u24(0) + _u24(0) + _u24(width - 1) + _u24(height - 1)
        # flags 0x02: don't blend with the frame before (each frame is whole)
        header += _u24(min(durations[index], 0xFFFFFF)) + b"\x02"
        _riff_chunk(file, b"ANMF", header + bitstream)
    end = file.tell()
    file.seek(start + 4)
    file.write(struct.pack("<I", end - start - 8))
    file.seek(end)


def _webp_bitstream(webp: bytes) -> bytes:
    """The image chunks (ALPH, VP8, VP8L) of a still WebP, with their headers and padding."""
    at, chunks = 12, b""
    while at < len(webp):
        kind, size = webp[at : at + 4], struct.unpack("<I", webp[at + 4 : at + 8])[0]
        whole = webp[at : at + 8 + size + size % 2]
        if kind in (b"ALPH", b"VP8 ", b"VP8L"):
            chunks += whole
        at += len(whole)
    return chunks


def _riff_chunk(file: IO[bytes], kind: bytes, data: bytes) -> None:
    file.write(kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2))


def _u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]
