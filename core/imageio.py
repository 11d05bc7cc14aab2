"""Image files in and out: float RGB for the engine, everything else carried around it.

`load_image` turns any ordinary image file (8/16-bit, grey, palette, with or without alpha,
EXIF-rotated, with an ICC profile) into float32 RGB in [0,1] plus a separate alpha plane and
the facts needed to write the result back the same way. `save_image` writes PNG, JPEG, TIFF or
WebP (chosen by the extension) to a temporary file in the destination folder and renames it on
success, so a failed run never leaves a half-written file behind.

Pillow reads 16-bit colour PNG/TIFF with 8-bit precision (it has no 16-bit RGB mode); we note
the depth and write 16-bit output with small encoders of our own (numpy + zlib), which is what
matters for a style transfer: the result is a new image, its input's low bits don't show.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .color import gray3
from .errors import ImageError, first_line
from .files import NotRegularFile, open_regular, write_atomic, write_problem

# Far beyond anything a style transfer can use, small enough to refuse decompression bombs
# before Pillow allocates them. Our own check, so Pillow's global limit is left alone.
MAX_PIXELS = 100_000_000

FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
GREY_MODES = {"1", "L", "LA", "La", "I", "F"}
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}  # not by band name: LAB has an "A" band too
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


@dataclass
class LoadedImage:
    """An input image as the engine sees it, plus what's needed to write its result back alike."""

    rgb: np.ndarray  # float32 [H,W,3] in [0,1], EXIF orientation applied
    alpha: np.ndarray | None  # float32 [H,W] in [0,1], or None when the file has no transparency
    mode: str  # Pillow mode of the file as opened ("RGB", "P", "I;16", "LA", ...)
    bits: int  # 8 or 16 bits per sample in the file
    grey: bool  # the file holds one colour channel
    icc_profile: bytes | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes held in memory (a style sent in-band by a remote editor), read like a
    file: the same header-first checks and messages, which name it by `name`."""

    name: str
    data: bytes | bytearray | memoryview

    def __str__(self) -> str:
        return self.name


Source = str | os.PathLike | EncodedImage


def _source(path: Source) -> Path | EncodedImage:
    return path if isinstance(path, EncodedImage) else Path(path)


def load_image(path: Source, longer_at_least: int | None = None) -> LoadedImage:
    """Read an image file; any problem becomes a one-line ImageError naming the file.

    `longer_at_least`: the caller will shrink the image so its longer side is this; a much larger
    file is then decoded smaller (JPEG's DCT scaling, else an integer box reduction), keeping the
    longer side at least twice that, so a huge file never exists at full size as floats."""
    path = _source(path)
    try:
        with _opened(path) as im:
            return _decode(path, im, longer_at_least)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: image too large (more than {MAX_PIXELS // 1_000_000} megapixels)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a format Pillow can't read") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        # Pillow reports truncated/corrupt data with these; one line with its reason.
        reason = first_line(exc)
        raise ImageError(f"{path}: corrupt or truncated image ({reason})") from None


@contextmanager
def _opened(path: Path | EncodedImage) -> Iterator[Image.Image]:
    """Pillow's lazy image on the checked file (the header read, no pixels yet)."""
    with _open_checked(path) as file, warnings.catch_warnings():
        # We check the size ourselves (MAX_PIXELS); Pillow's own warning would be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(file) as im:
            yield im


def image_size(path: Source) -> tuple[int, int]:
    """(width, height) as load_image would give them (EXIF orientation applied), from the header
    alone; the same one-line ImageErrors as load_image for files that aren't images."""
    path = _source(path)
    try:
        with _opened(path) as im:
            width, height = im.size
            _check_size(path, width, height)
            turned = _orientation(im) in (5, 6, 7, 8)  # a quarter turn swaps the sides
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a format Pillow can't read") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({first_line(exc)})") from None
    return (height, width) if turned else (width, height)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF is common in the wild; _upright ignores it too
        return 1


def _open_checked(path: Path | EncodedImage) -> BinaryIO:
    """The file opened for reading: a regular, non-empty file (a FIFO or /dev/zero would block or
    never end), checked on the opened file itself; in-memory bytes as a file."""
    if isinstance(path, EncodedImage):
        if not len(path.data):
            raise ImageError(f"{path}: empty file")
        return io.BytesIO(path.data)
    try:
        file = open_regular(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except NotRegularFile:
        raise ImageError(f"{path}: not a regular file (a pipe or a device?)") from None
    except (OSError, ValueError) as exc:  # a loop of links, a name too long, a NUL in the name
        raise ImageError(f"{path}: can't open ({getattr(exc, 'strerror', None) or exc})") from None
    if os.fstat(file.fileno()).st_size == 0:
        file.close()
        raise ImageError(f"{path}: empty file")
    return file


def _check_size(path: Path | EncodedImage, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: image has no pixels ({width}×{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{path}: image too large ({width}×{height}, more than "
            f"{MAX_PIXELS // 1_000_000} megapixels)"
        )


def _decode(
    path: Path | EncodedImage, im: Image.Image, longer_at_least: int | None = None
) -> LoadedImage:
    width, height = im.size
    _check_size(path, width, height)
    mode = im.mode
    bits = 16 if _has_16_bit_samples(im) else 8
    icc = im.info.get("icc_profile") or None
    transparency = "transparency" in im.info
    factor = max(width, height) // (2 * longer_at_least) if longer_at_least else 1
    if factor >= 2 and im.format == "JPEG":
        im.draft(im.mode, (width // factor, height // factor))  # DCT scaling: 1/2, 1/4 or 1/8
    im.load()  # decode now so truncation is reported here, not later
    factor = max(im.size) // (2 * longer_at_least) if longer_at_least else 1
    if factor >= 2:
        im = _reduced(im, factor)
    im = _upright(im)
    grey = mode in GREY_MODES or mode.startswith("I;16")
    rgb, alpha = _to_float(im, grey, transparency)
    return LoadedImage(
        rgb=rgb,
        alpha=alpha,
        mode=mode,
        bits=bits,
        grey=grey,
        icc_profile=icc,
    )


def _reduced(im: Image.Image, factor: int) -> Image.Image:
    """A box-filtered 1/factor of the image (each output pixel the mean of factor² inputs), in a
    mode whose samples may be averaged (palette indices may not)."""
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    elif im.mode.startswith("I;16"):
        im = im.convert("I")
    return im.reduce(factor)


def _has_16_bit_samples(im: Image.Image) -> bool:
    """16-bit files: the I;16 modes, and colour PNG/TIFF whose raw mode (before load) says ;16."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return True
    tile = getattr(im, "tile", None) or []
    rawmode = tile[0].args if tile else None
    if isinstance(rawmode, tuple):  # some decoders pass (rawmode, ...)
        rawmode = rawmode[0] if rawmode else None
    return isinstance(rawmode, str) and ";16" in rawmode


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than fatal."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:  # malformed EXIF is common in the wild; the pixels are still fine
        return im


def _to_float(
    im: Image.Image, grey: bool, transparency: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 RGB [H,W,3] and alpha [H,W] (or None) in [0,1]."""
    if im.mode.startswith("I;16") or im.mode == "I":
        values = np.asarray(im).astype(np.float32)
        return gray3(values / 65535.0), None
    if im.mode == "F":
        return gray3(np.nan_to_num(np.asarray(im, dtype=np.float32))), None
    has_alpha = im.mode in ALPHA_MODES or transparency
    target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
    if im.mode != target:
        im = im.convert(target)
    pixels = np.asarray(im, dtype=np.float32) / 255.0
    if grey:
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
        rgb = gray3(pixels[..., 0])
    else:
        rgb = np.ascontiguousarray(pixels[..., :3])
    alpha = np.ascontiguousarray(pixels[..., -1]) if has_alpha else None
    return rgb, alpha


# --------------------------------------------------------------------------- saving


def output_format(path: str | os.PathLike) -> str:
    """Pillow format name for an output path's extension, or ImageError for an unknown one."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise ImageError(
            f"{path}: unknown output extension {path.suffix or '(none)'!r} (use one of {known})"
        )
    return fmt


def check_output_path(path: str | os.PathLike) -> str:
    """Fail fast (before any work) if `path` can't be written; returns the output format."""
    path = Path(path)
    fmt = output_format(path)
    problem = write_problem(path)
    if problem:
        raise ImageError(f"{path}: {problem}")
    return fmt


def save_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    like: LoadedImage | None = None,
    alpha: np.ndarray | None = None,
) -> Path:
    """Write float RGB [H,W,3] in [0,1] to `path`, in the format its extension names.

    `like` (the loaded content image) decides grey vs colour, 8 vs 16 bits (PNG/TIFF), the ICC
    profile and, unless `alpha` is given, the alpha plane. Alpha of another size is resized.
    Written to a temporary file beside `path`, renamed on success; nothing is left on failure.
    """
    path = Path(path)
    fmt = check_output_path(path)
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"save_image expects float RGB [H,W,3], got shape {rgb.shape}")
    if alpha is None and like is not None:
        alpha = like.alpha
    if alpha is not None:
        alpha = _fit_alpha(np.asarray(alpha, dtype=np.float32), rgb.shape[:2])
    grey = bool(like and like.grey)
    bits = 16 if like is not None and like.bits == 16 and fmt in SIXTEEN_BIT_FORMATS else 8
    if fmt == "JPEG":
        alpha = None  # JPEG has no alpha channel
    if fmt == "WEBP":
        grey = False  # WebP stores colour only
    planes = _planes(rgb, alpha, grey)
    icc = _matching_icc(like.icc_profile if like else None, grey)
    try:
        write_atomic(path, lambda file: _encode(file, planes, fmt, bits, icc))
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _fit_alpha(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if alpha.shape == shape:
        return alpha
    resized = Image.fromarray(alpha.astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def _planes(rgb: np.ndarray, alpha: np.ndarray | None, grey: bool) -> np.ndarray:
    """[H,W,C] float in [0,1]: C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)."""
    colour = (rgb @ LUMA)[..., None] if grey else rgb
    if alpha is not None:
        colour = np.concatenate([colour, alpha[..., None]], axis=2)
    return np.clip(np.nan_to_num(colour), 0.0, 1.0)


def _quantise(planes: np.ndarray, bits: int) -> np.ndarray:
    top = 65535 if bits == 16 else 255
    return np.floor(planes * top + 0.5).astype(np.uint16 if bits == 16 else np.uint8)


def _matching_icc(icc: bytes | None, grey: bool) -> bytes | None:
    """The profile only if its colour space (header bytes 16–20) matches what we write."""
    if not icc or len(icc) < 20:
        return None
    wanted = b"GRAY" if grey else b"RGB "
    return icc if icc[16:20] == wanted else None


def _encode(file, planes: np.ndarray, fmt: str, bits: int, icc: bytes | None) -> None:
    samples = _quantise(planes, bits)
    if bits == 16:
        (_write_png16 if fmt == "PNG" else _write_tiff16)(file, samples, icc)
        return
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
    image = Image.fromarray(samples[..., 0] if mode == "L" else samples, mode=mode)
    options: dict = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=95, method=4)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    image.save(file, format=fmt, **options)


# 16-bit writers: Pillow has no 16-bit RGB(A)/LA mode, so these two formats are written by hand.


def _write_png16(file, samples: np.ndarray, icc: bytes | None) -> None:
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, width * channels).view(np.uint8)
    # Filter "Up" (2): each byte minus the one above, mod 256 — vectorised and compresses well.
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]
    data = np.concatenate([np.full((height, 1), 2, np.uint8), filtered], axis=1)
    file.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(file, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    if icc:
        _png_chunk(file, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    _png_chunk(file, b"IDAT", zlib.compress(data.tobytes(), 6))
    _png_chunk(file, b"IEND", b"")


def _png_chunk(file, kind: bytes, data: bytes) -> None:
    file.write(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )


def _write_tiff16(file, samples: np.ndarray, icc: bytes | None) -> None:
    """Baseline little-endian TIFF, one uncompressed strip, chunky samples, unassociated alpha."""
    height, width, channels = samples.shape
    pixels = samples.astype("<u2").tobytes()
    colour = 1 if channels <= 2 else 3  # samples that aren't alpha
    photometric = 1 if colour == 1 else 2  # BlackIsZero / RGB
    entries: list[
        tuple[int, int, list[int] | bytes]
    ] = [  # (tag, type, values): 3 SHORT, 4 LONG, 7 UNDEFINED
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [16] * channels),
        (259, 3, [1]),
        (262, 3, [photometric]),
        (273, 4, [0]),
        (277, 3, [channels]),
        (278, 4, [height]),
        (279, 4, [len(pixels)]),
        (284, 3, [1]),
    ]
    if channels in (2, 4):
        entries.append((338, 3, [2]))  # ExtraSamples: unassociated alpha
    if icc:
        entries.append((34675, 7, icc))
    entries.sort(key=lambda entry: entry[0])
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()  # values that don't fit in an entry's 4 bytes, after the IFD
    extra_start = 8 + ifd_size
    records = []
    for tag, kind, values in entries:
        raw = (
            bytes(values)
            if kind == 7
            else struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
        )
        count = len(values)
        if len(raw) <= 4:
            records.append((tag, kind, count, raw.ljust(4, b"\0")))
        else:
            records.append((tag, kind, count, struct.pack("<I", extra_start + len(extra))))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    image_offset = extra_start + len(extra)
    file.write(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(records)))
    for tag, kind, count, value in records:
        if tag == 273:
            value = struct.pack("<I", image_offset)
        file.write(struct.pack("<HHI", tag, kind, count) + value)
    file.write(struct.pack("<I", 0))
    file.write(bytes(extra))
    file.write(pixels)
