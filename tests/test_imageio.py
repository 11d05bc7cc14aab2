"""Image I/O: every ordinary kind of file in, the same kind out; every bad file a one-line ImageError."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from onnxstyle.core.errors import ImageError
from onnxstyle.core.files import write_atomic
from onnxstyle.core.imageio import (
    MAX_PIXELS,
    check_output_path,
    image_size,
    load_image,
    save_image,
)

RNG = np.random.default_rng(7)


def noise_rgb(h: int = 24, w: int = 40) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def leftovers(folder: Path) -> list[str]:
    """Temporary files a save may have left behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A minimal PNG by hand, for headers Pillow won't write (16-bit colour, 0×0, huge)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp", ".jpg"])
def test_rgb_round_trip_keeps_size_and_mode(tmp_path, ext):
    pixels = noise_rgb()
    Image.fromarray(pixels).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.shape == (24, 40, 3)
    assert (loaded.mode, loaded.bits, loaded.grey, loaded.alpha) == ("RGB", 8, False, None)
    out = save_image(tmp_path / f"out{ext}", loaded.rgb, like=loaded)
    with Image.open(out) as im:
        assert im.size == (40, 24) and im.mode == "RGB"
        if ext in (".png", ".tif"):
            assert np.array_equal(np.asarray(im), pixels)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_alpha_is_carried_untouched(tmp_path, ext):
    rgba = np.dstack([noise_rgb(), RNG.integers(0, 256, (24, 40), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.alpha is not None and loaded.alpha.shape == (24, 40)
    new_colour = np.clip(loaded.rgb * 0.5 + 0.2, 0, 1)  # the engine changes colour, never alpha
    out = save_image(tmp_path / f"out{ext}", new_colour, like=loaded)
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], rgba[..., 3])


def test_jpeg_output_drops_alpha(tmp_path):
    Image.new("RGBA", (20, 16), (10, 200, 30, 128)).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with Image.open(save_image(tmp_path / "out.jpeg", loaded.rgb, like=loaded)) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (20, 16)


def test_alpha_of_another_size_is_resized(tmp_path):
    out = save_image(
        tmp_path / "out.png", np.zeros((10, 12, 3), np.float32), alpha=np.ones((20, 24), np.float32)
    )
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (12, 10) and np.asarray(im)[..., 3].min() == 255


@pytest.mark.parametrize("mode, out_mode", [("L", "L"), ("LA", "LA"), ("1", "L")])
def test_grey_in_grey_out(tmp_path, mode, out_mode):
    Image.fromarray(noise_rgb()).convert(mode).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    assert loaded.grey and loaded.rgb.shape == (24, 40, 3)
    assert np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])
    assert (loaded.alpha is not None) == ("A" in mode)
    with Image.open(save_image(tmp_path / "out.png", loaded.rgb, like=loaded)) as im:
        assert im.mode == out_mode


def test_grey_to_webp_is_written_as_colour(tmp_path):
    Image.fromarray(noise_rgb()).convert("L").save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with Image.open(save_image(tmp_path / "out.webp", loaded.rgb, like=loaded)) as im:
        assert im.mode == "RGB"


def test_palette_with_transparency_becomes_rgba(tmp_path):
    image = Image.fromarray(noise_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    index = np.asarray(image)
    image.save(tmp_path / "in.png", transparency=int(index[0, 0]))
    loaded = load_image(tmp_path / "in.png")
    assert loaded.mode == "P" and not loaded.grey
    assert np.array_equal(loaded.alpha == 0, index == index[0, 0])
    with Image.open(save_image(tmp_path / "out.png", loaded.rgb, like=loaded)) as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3] == 0, index == index[0, 0])


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_grey_round_trip(tmp_path, ext):
    values = RNG.integers(0, 65536, (24, 40), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"in{ext}")
    loaded = load_image(tmp_path / f"in{ext}")
    assert loaded.bits == 16 and loaded.grey
    assert np.allclose(loaded.rgb[..., 1] * 65535, values, atol=0.5)
    with Image.open(save_image(tmp_path / f"out{ext}", loaded.rgb, like=loaded)) as im:
        assert im.mode.startswith("I;16")
        assert np.abs(np.asarray(im).astype(np.int64) - values).max() <= 1


def test_16_bit_grey_to_jpeg_is_8_bit(tmp_path):
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    with Image.open(save_image(tmp_path / "out.jpg", loaded.rgb, like=loaded)) as im:
        assert im.mode == "L"


@pytest.mark.parametrize(
    "ext, alpha", [(".png", False), (".png", True), (".tif", False), (".tif", True)]
)
def test_16_bit_colour_in_16_bit_colour_out(tmp_path, ext, alpha):
    height, width, channels = 20, 30, 4 if alpha else 3
    samples = RNG.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    (tmp_path / "in.png").write_bytes(png_bytes(width, height, 16, 6 if alpha else 2, raw))
    loaded = load_image(tmp_path / "in.png")
    assert loaded.bits == 16 and not loaded.grey and (loaded.alpha is not None) == alpha
    # Pillow decodes 16-bit colour with 8-bit precision (see the module's note)
    assert np.abs(loaded.rgb - samples[..., :3] / 65535).max() < 1 / 255 + 1e-6
    out = save_image(tmp_path / f"out{ext}", loaded.rgb, like=loaded)
    with Image.open(out) as im:
        assert ";16" in str(im.tile[0].args) and im.size == (width, height)
        assert im.mode == ("RGBA" if alpha else "RGB")
    again = load_image(out)
    assert again.bits == 16 and np.abs(again.rgb - loaded.rgb).max() < 1 / 255 + 1e-6


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "in.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "in.jpg")
    assert loaded.size == (20, 40)
    assert loaded.rgb[2, 10, 0] > 0.9 and loaded.rgb[-3, 10, 0] < 0.1  # stored left is now the top
    with Image.open(save_image(tmp_path / "out.png", loaded.rgb, like=loaded)) as im:
        assert im.size == (20, 40)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp"])
def test_icc_profile_is_carried(tmp_path, ext):
    icc = srgb_icc()
    Image.fromarray(noise_rgb()).save(tmp_path / "in.png", icc_profile=icc)
    loaded = load_image(tmp_path / "in.png")
    assert loaded.icc_profile == icc
    with Image.open(save_image(tmp_path / f"out{ext}", loaded.rgb, like=loaded)) as im:
        assert im.info.get("icc_profile") == icc


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_icc_profile_is_carried_at_16_bit(tmp_path, ext):
    samples = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    (tmp_path / "in.png").write_bytes(png_bytes(5, 6, 16, 2, raw))
    loaded = load_image(tmp_path / "in.png")
    loaded.icc_profile = srgb_icc()  # as if the file had carried one
    with Image.open(save_image(tmp_path / f"out{ext}", loaded.rgb, like=loaded)) as im:
        assert im.info.get("icc_profile") == loaded.icc_profile


def test_save_replaces_existing_file_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    save_image(target, np.zeros((8, 8, 3), np.float32))
    assert target.read_bytes().startswith(b"\x89PNG") and (target.stat().st_mode & 0o777) == 0o640
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- bad input


def assert_one_line(error: pytest.ExceptionInfo, path: Path, words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message and words in message, message


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "nope.png")
    assert_one_line(error, tmp_path / "nope.png", "no such file")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ImageError) as error:
        load_image(tmp_path)
    assert_one_line(error, tmp_path, "folder")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "empty.png")
    assert_one_line(error, tmp_path / "empty.png", "empty")


def test_text_file(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture\n")
    with pytest.raises(ImageError) as error:
        load_image(tmp_path / "notes.png")
    assert_one_line(error, tmp_path / "notes.png", "not an image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(noise_rgb(64, 64)).save(buffer, fmt)
    path = tmp_path / "cut.img"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line(error, path, "corrupt or truncated")


def test_zero_sized_image(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(png_bytes(0, 0, 8, 2, b""))
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("width, height", [(11_000, 10_000), (20_000, 20_000)])
def test_decompression_bomb(tmp_path, width, height):
    # First past our own limit, then past Pillow's (which raises before we look)
    assert width * height > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(width, height, 8, 2, b"\0" * 64))
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line(error, path, "too large")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(path)
    os.chmod(path, 0)
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert_one_line(error, path, "permission denied")


def test_unknown_output_extension(tmp_path):
    with pytest.raises(ImageError) as error:
        save_image(tmp_path / "out.bmpx", np.zeros((8, 8, 3), np.float32))
    assert_one_line(error, tmp_path / "out.bmpx", "unknown output extension")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(ImageError) as error:
        check_output_path(tmp_path / "no" / "out.png")
    assert_one_line(error, tmp_path / "no" / "out.png", "does not exist")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"

    def write_half_then_fail(file):
        file.write(b"half")
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        write_atomic(target, write_half_then_fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mode, ext, grey, alpha",
    [
        ("CMYK", ".jpg", False, False),
        ("CMYK", ".tif", False, False),
        ("LAB", ".tif", False, False),
        ("F", ".tif", True, False),
        ("I", ".tif", True, False),
        ("LA", ".tif", True, True),
    ],
)
def test_other_modes_load_as_rgb(tmp_path, mode, ext, grey, alpha):
    if mode in ("F", "I"):
        values = RNG.random((24, 40)) * (1.0 if mode == "F" else 65535)
        image = Image.fromarray(values.astype(np.float32 if mode == "F" else np.int32))
    else:
        image = Image.fromarray(noise_rgb()).convert(mode)
    image.save(tmp_path / f"in{ext}")
    loaded = load_image(tmp_path / f"in{ext}")
    assert loaded.rgb.shape == (24, 40, 3) and 0 <= loaded.rgb.min() and loaded.rgb.max() <= 1
    assert loaded.grey == grey and (loaded.alpha is not None) == alpha


def test_gif_transparency_becomes_alpha(tmp_path):
    image = Image.fromarray(noise_rgb()).convert("P")
    image.save(tmp_path / "in.gif", transparency=int(np.asarray(image)[0, 0]))
    loaded = load_image(tmp_path / "in.gif")
    assert loaded.alpha is not None and loaded.alpha[0, 0] == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are Unix's")
@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-device"])
def test_a_pipe_or_device_is_refused_before_reading(tmp_path, kind):
    """Opening a FIFO for reading would wait for a writer; /dev/zero never ends."""
    path = tmp_path / "in.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-device":
        path.symlink_to("/dev/zero")
    else:
        path = Path("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(path)


@pytest.mark.parametrize("name", ["in.jpg", "in.png", "palette.png", "grey16.png", "turned.jpg"])
def test_a_large_file_is_decoded_no_larger_than_needed(tmp_path, name):
    """Twice the needed longer side at least, the header's size, the same kind of image."""
    pixels = RNG.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if name == "palette.png":
        image.convert("P").save(tmp_path / name, transparency=3)
    elif name == "grey16.png":
        Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(tmp_path / name)
    elif name == "turned.jpg":
        exif = Image.Exif()
        exif[0x0112] = 6  # shown a quarter turn round: 300×500
        image.save(tmp_path / name, exif=exif)
    else:
        image.save(tmp_path / name)
    full, small = load_image(tmp_path / name), load_image(tmp_path / name, 60)
    assert image_size(tmp_path / name) == full.size
    assert 120 <= max(small.size) < max(full.size) / 2
    assert abs(small.size[0] / small.size[1] - full.size[0] / full.size[1]) < 0.02
    assert (small.grey, small.bits, small.alpha is None) == (
        full.grey,
        full.bits,
        full.alpha is None,
    )
    assert abs(float(small.rgb.mean()) - float(full.rgb.mean())) < 0.02
