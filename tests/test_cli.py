"""The `onnxstyle` command end to end: real engine, tiny images, a few steps.

Happy paths check the written file (format, size, mode, alpha, grey, 16-bit, EXIF, ICC); every bad
input must give exactly one line on stderr, exit 2, and leave no output (nor temporary) file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_until_progress
from PIL import Image, ImageCms

from onnxstyle.core.engine import StyleOptions
from onnxstyle.core.graph import StyleGraph
from onnxstyle.plugin import cli
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W
from onnxstyle.plugin.commands import options as cli_options
from onnxstyle.plugin.commands import remote

SCRIPT = Path(sys.executable).with_name("onnxstyle")  # the console script of this environment
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "onnxstyle.plugin.cli"]
FAST = ["--preset", "draft", "--steps", "2", "--scales", "1", "--max-size", "64", "-q"]
RNG = np.random.default_rng(3)


def smooth_rgb(height: int, width: int) -> np.ndarray:
    """A photo-like uint8 image (smoothed noise): structure for the network to see."""
    noise = RNG.random((height // 4 + 2, width // 4 + 2, 3))
    image = Image.fromarray((noise * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    return np.asarray(image)


@pytest.fixture
def pictures(tmp_path) -> Path:
    """content.png (64×48 RGB) and style.png (48×48) in tmp_path."""
    Image.fromarray(smooth_rgb(48, 64)).save(tmp_path / "content.png")
    Image.fromarray(smooth_rgb(48, 48)).save(tmp_path / "style.png")
    return tmp_path


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stylize(
    capsys, folder: Path, output: str, *extra: str, content: str = "content.png"
) -> tuple[int, str]:
    code, _, err = run_main(
        capsys,
        "stylize",
        folder / content,
        folder / "style.png",
        "-o",
        folder / output,
        *FAST,
        *extra,
    )
    return code, err


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# --------------------------------------------------------------------------- happy paths


def test_console_script_writes_the_result(pictures):
    out = pictures / "result.png"
    done = subprocess.run(
        [
            *COMMAND,
            "stylize",
            pictures / "content.png",
            pictures / "style.png",
            "-o",
            out,
            "--preset",
            "draft",
            "--steps",
            "3",
            "--scales",
            "1",
            "--max-size",
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "scale 1/1" in done.stderr and f"wrote {out}" in done.stderr  # progress bar and summary
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 48))
    assert names(pictures) == {"content.png", "style.png", "result.png"}


def test_python_dash_m_works(pictures):
    done = subprocess.run(
        [sys.executable, "-m", "onnxstyle.plugin.cli", "stylize", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "--style-blend" in done.stdout


@pytest.mark.parametrize("ext, fmt", [(".jpg", "JPEG"), (".tif", "TIFF"), (".webp", "WEBP")])
def test_output_format_follows_the_extension(capsys, pictures, ext, fmt):
    code, err = stylize(capsys, pictures, f"out{ext}")
    assert code == 0, err
    with Image.open(pictures / f"out{ext}") as im:
        assert (im.format, im.size) == (fmt, (64, 48))


def test_alpha_is_preserved(capsys, pictures):
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    Image.fromarray(np.dstack([smooth_rgb(48, 64), alpha]), "RGBA").save(pictures / "rgba.png")
    code, err = stylize(capsys, pictures, "out.png", content="rgba.png")
    assert code == 0, err
    with Image.open(pictures / "out.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], alpha)


def test_grey_content_gives_grey_output(capsys, pictures):
    Image.fromarray(smooth_rgb(48, 64)).convert("L").save(pictures / "grey.png")
    code, err = stylize(capsys, pictures, "out.png", content="grey.png")
    assert code == 0, err
    with Image.open(pictures / "out.png") as im:
        assert im.mode == "L" and im.size == (64, 48)


def test_16_bit_content_gives_16_bit_output(capsys, pictures):
    grey = smooth_rgb(48, 64)[..., 0].astype(np.uint16) * 257
    Image.fromarray(grey).save(pictures / "deep.png")
    code, err = stylize(capsys, pictures, "out.tif", content="deep.png")
    assert code == 0, err
    with Image.open(pictures / "out.tif") as im:
        assert im.mode.startswith("I;16") and im.size == (64, 48)


def test_exif_orientation_is_honoured(capsys, pictures):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90°: 64×48 stored, 48×64 shown
    Image.fromarray(smooth_rgb(48, 64)).save(pictures / "turned.jpg", exif=exif)
    code, err = stylize(capsys, pictures, "out.png", content="turned.jpg")
    assert code == 0, err
    with Image.open(pictures / "out.png") as im:
        assert im.size == (48, 64)


def test_icc_profile_is_carried(capsys, pictures):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(smooth_rgb(48, 64)).save(pictures / "tagged.png", icc_profile=icc)
    code, err = stylize(capsys, pictures, "out.jpg", content="tagged.png")
    assert code == 0, err
    with Image.open(pictures / "out.jpg") as im:
        assert im.info.get("icc_profile") == icc


def test_max_size_shrinks_and_upscale_restores(capsys, pictures):
    code, err = stylize(capsys, pictures, "small.png", "--max-size", "32")
    assert code == 0, err
    with Image.open(pictures / "small.png") as im:
        assert im.size == (32, 24)
    code, err = stylize(capsys, pictures, "big.png", "--max-size", "32", "--upscale")
    assert code == 0, err
    with Image.open(pictures / "big.png") as im:
        assert im.size == (64, 48)


def test_two_styles_with_blend_weights(capsys, pictures):
    Image.fromarray(smooth_rgb(40, 56)).save(pictures / "style2.png")
    code, _, err = run_main(
        capsys,
        "stylize",
        pictures / "content.png",
        pictures / "style.png",
        pictures / "style2.png",
        "-o",
        pictures / "out.png",
        *FAST,
        "--style-blend",
        "0.7,0.3",
    )
    assert code == 0, err
    assert (pictures / "out.png").is_file()


def test_save_every_writes_intermediate_images(capsys, pictures):
    code, err = stylize(capsys, pictures, "out.png", "--steps", "4", "--save-every", "2")
    assert code == 0, err
    assert names(pictures) == {
        "content.png",
        "style.png",
        "out.png",
        "out-scale1-step0002.png",
        "out-scale1-step0004.png",
    }
    with Image.open(pictures / "out-scale1-step0002.png") as im:
        assert im.size == (64, 48) and im.mode == "RGB"


def test_save_every_at_a_coarse_scale_keeps_alpha(capsys, pictures):
    Image.fromarray(np.dstack([smooth_rgb(48, 64), np.full((48, 64), 128, np.uint8)]), "RGBA").save(
        pictures / "rgba.png"
    )
    code, err = stylize(
        capsys,
        pictures,
        "out.png",
        "--scales",
        "2",
        "--min-size",
        "16",
        "--save-every",
        "2",
        content="rgba.png",
    )
    assert code == 0, err
    with Image.open(pictures / "out-scale1-step0002.png") as im:  # the coarse scale: half size
        assert im.size == (32, 24) and im.mode == "RGBA" and np.asarray(im)[..., 3].min() == 128
    assert (pictures / "out-scale2-step0002.png").is_file()


def test_info_lists_runtime_devices_and_models(capsys):
    code, out, _ = run_main(capsys, "info")
    assert code == 0
    assert "onnxruntime 1." in out and "CPUExecutionProvider" in out
    assert "vgg19-avg-grad.onnx" in out and "numpy" in out


# --------------------------------------------------------------------------- every option maps

ALL_FLAGS = [
    "--strength",
    "0.5",
    "--steps",
    "7",
    "--scales",
    "2",
    "--max-size",
    "none",
    "--min-size",
    "20",
    "--content-weight",
    "2",
    "--style-weight",
    "3",
    "--tv-weight",
    "0",
    "--style-layer-weights",
    "1,0,2,0,1",
    "--style-blend",
    "2",
    "--style-scale",
    "0.5",
    "--init",
    "noise",
    "--seed",
    "random",
    "--optimizer",
    "adam",
    "--learning-rate",
    "0.1",
    "--preserve-colors",
    "luminance",
    "--device",
    "cpu",
    "--pooling",
    "max",
    "--model-dir",
    "models",
    "--tile-budget",
    "0.5",
    "--tile-overlap",
    "16",
]


def test_every_engine_field_has_a_flag():
    mapped = {field for _, field, _ in cli_options.engine_flags()}
    assert mapped == {f.name for f in dataclasses.fields(StyleOptions)}


def test_flags_reach_the_options():
    args = cli.build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png", *ALL_FLAGS])
    options = StyleOptions.from_preset("draft", **cli_options.engine_overrides(args))
    expected = dict(
        strength=0.5,
        steps=7,
        scales=2,
        max_size=None,
        min_size=20,
        content_weight=2.0,
        style_weight=3.0,
        tv_weight=0.0,
        style_layer_weights=(1.0, 0.0, 2.0, 0.0, 1.0),
        style_blend=(2.0,),
        style_scale=0.5,
        init="noise",
        seed=None,
        optimizer="adam",
        learning_rate=0.1,
        preserve_colors="luminance",
        device="cpu",
        pooling="max",
        model_dir="models",
        tile_budget_mpx=0.5,
        tile_overlap=16,
    )
    assert {name: getattr(options, name) for name in expected} == expected


def test_flags_reach_a_worker_as_they_reach_the_engine():
    """CLI flags -> protocol options -> the worker's StyleOptions: the same run, except what the
    request carries otherwise (the work size as max_size, the blend as the styles' weights) and
    what a worker elsewhere can't take (--model-dir, refused)."""
    flags = ALL_FLAGS[: ALL_FLAGS.index("--model-dir")] + ALL_FLAGS[ALL_FLAGS.index("models") + 1 :]
    args = cli.build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png", *flags])
    overrides = cli_options.engine_overrides(args)
    message = {
        "type": "stylize",
        "content": {"path": "c.raw", "width": 64, "height": 48, "format": "rgb8"},
        "output": {"path": "o.raw"},
        "styles": [{"path": "s.png", "weight": 2.0}],
        "options": remote.request_options(args, overrides, 64),
    }
    job = P.parse_request(json.dumps(message))
    sent = W._engine_options(job.options, [style.weight for style in job.styles])
    expected = StyleOptions.from_preset(args.preset, **{**overrides, "max_size": 64})
    assert dataclasses.replace(sent, style_blend=(2.0,)) == expected


def test_flags_not_given_keep_the_preset():
    args = cli.build_parser().parse_args(
        ["stylize", "c.png", "s.png", "-o", "o.png", "--preset", "high"]
    )
    assert StyleOptions.from_preset(
        "high", **cli_options.engine_overrides(args)
    ) == StyleOptions.from_preset("high")


def test_preserve_colors_none_means_none():
    args = cli.build_parser().parse_args(
        ["stylize", "c", "s", "-o", "o.png", "--preserve-colours", "none"]
    )
    assert cli_options.engine_overrides(args)["preserve_colors"] is None


# --------------------------------------------------------------------------- bad input


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[:600]


def tiny_png() -> bytes:
    """A valid 8×8 image: smaller than the network's 16 px minimum."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


BAD_CONTENT = {
    "missing": None,
    "text": b"this is not a picture\n",
    "empty": b"",
    "corrupt": truncated_png(),
    "zero-sized": png_header_only(0, 0),
    "bomb": png_header_only(12_000, 10_000),
    "tiny": tiny_png(),
}


@pytest.mark.parametrize("kind", list(BAD_CONTENT))
@pytest.mark.parametrize("role", ["content", "style"])
def test_bad_image_is_one_line_exit_2_no_output(capsys, pictures, kind, role):
    bad = pictures / f"bad-{kind}.png"
    if BAD_CONTENT[kind] is not None:
        bad.write_bytes(BAD_CONTENT[kind])
    before = names(pictures)
    images = [bad, pictures / "style.png"] if role == "content" else [pictures / "content.png", bad]
    code, out, err = run_main(capsys, "stylize", *images, "-o", pictures / "out.png", *FAST)
    assert code == 2
    assert err.startswith("onnxstyle: error: ") and err.count("\n") == 1 and str(bad) in err, err
    assert "Traceback" not in err and out == ""
    assert names(pictures) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_image(capsys, pictures):
    os.chmod(pictures / "content.png", 0)
    code, err = stylize(capsys, pictures, "out.png")
    assert code == 2 and "permission denied" in err and err.count("\n") == 1
    assert "out.png" not in names(pictures)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--preset", "ultra"], "invalid choice: 'ultra'"),
        (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--preserve-colors", "sepia"], "invalid choice: 'sepia'"),
        (["--steps", "many"], "invalid integer value"),
        (["--steps", "0"], "must be ≥ 1"),
        (["--style-weight", "-1"], "must be a number from 0 to"),
        (["--style-weight", "1e300"], "must be a number from 0 to 3.40282e+38"),
        (["--seed", "-5"], "must be 0 to"),
        (["--max-size", "8"], "must be ≥ 16"),
        (["--strength", "-1"], "must be a number from 0 to"),
        (["--strength", "nan"], "must be a number from 0 to"),
        (["--strength", "strong"], "invalid number value: 'strong'"),
        (["--style-layer-weights", "1,2"], "needs 5"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_option_value_is_argparse_one_line(capsys, pictures, argv, words):
    code, err = stylize(capsys, pictures, "out.png", *argv)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert "out.png" not in names(pictures)


@pytest.mark.parametrize(
    "extra, output, words",
    [
        (["--style-blend", "1,2"], "out.png", "--style-blend has 2 weight(s) for 1 style"),
        ([], "missing-folder/out.png", "does not exist"),
        ([], "out.gifx", "unknown output extension"),
        (["--init", "nowhere.png"], "out.png", "no such file"),
        (["--model-dir", "no-models"], "out.png", "no such folder"),
        (["--pooling", "max", "--model-dir", "."], "out.png", "onnxstyle export --pooling max"),
    ],
)
def test_bad_request_fails_before_work(capsys, pictures, monkeypatch, extra, output, words):
    monkeypatch.chdir(pictures)
    monkeypatch.setenv(
        "ONNXSTYLE_MODEL_DIR", str(pictures / "no-user-models")
    )  # no exported max model
    code, err = stylize(capsys, pictures, output, *extra)
    assert (
        code == 2 and err.startswith("onnxstyle: error: ") and err.count("\n") == 1 and words in err
    ), err
    assert names(pictures) == {"content.png", "style.png"}


def test_unknown_command(capsys):
    code, _, err = run_main(capsys, "paint")
    assert code == 2 and err.count("\n") == 1 and "invalid choice: 'paint'" in err


# --------------------------------------------------------------------------- cancellation


@pytest.mark.skipif(
    sys.platform == "win32", reason="SIGINT can't be sent to a child process on Windows"
)
def test_ctrl_c_cancels_and_writes_nothing(tmp_path):
    Image.fromarray(smooth_rgb(64, 96)).save(tmp_path / "content.png")
    Image.fromarray(smooth_rgb(48, 48)).save(tmp_path / "style.png")
    out = tmp_path / "out.png"
    argv = [*COMMAND, "stylize", tmp_path / "content.png", tmp_path / "style.png", "-o", out]
    process, _ = run_until_progress([*argv, *SLOW])
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert b"cancelled; nothing written" in rest and b"Traceback" not in rest
    assert names(tmp_path) == {"content.png", "style.png"}


# --------------------------------------------------------------------------- nothing lost


@pytest.fixture
def no_model_loads(monkeypatch):
    """Observe that a refusal comes before any model loads (loading one fails the test)."""

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad value was refused")

    monkeypatch.setattr(StyleGraph, "load", load)


def _link(pictures: Path, kind: str) -> list[str]:
    """Arguments that name an input as the output, one way or another."""
    content, style = pictures / "content.png", pictures / "style.png"
    if kind == "symlink":
        (pictures / "link.png").symlink_to(content)
        return [content, style, "-o", pictures / "link.png"]
    if kind == "hardlink":
        os.link(content, pictures / "same.png")
        return [content, style, "-o", pictures / "same.png"]
    if kind == "dotted":
        return [content, style, "-o", pictures / "." / "sub" / ".." / "content.png"]
    if kind == "init":
        (pictures / "start.png").write_bytes(content.read_bytes())
        return [content, style, "-o", pictures / "start.png", "--init", pictures / "start.png"]
    if kind == "snapshot":
        (pictures / "out-scale1-step0002.png").write_bytes(style.read_bytes())
        style = pictures / "out-scale1-step0002.png"
        return [content, style, "-o", pictures / "out.png", "--save-every", "2"]
    return [content, style, "-o", content if kind == "content" else style]


@pytest.mark.parametrize(
    "kind", ["content", "style", "symlink", "hardlink", "dotted", "init", "snapshot"]
)
def test_an_output_that_is_an_input_is_refused(capsys, pictures, no_model_loads, kind):
    (pictures / "sub").mkdir()
    argv = _link(pictures, kind)
    before = {p.name: p.read_bytes() for p in pictures.iterdir() if p.is_file()}
    code, _, err = run_main(capsys, "stylize", *argv, *FAST)
    assert code == 2 and err.count("\n") == 1 and "input" in err, err
    assert {p.name: p.read_bytes() for p in pictures.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--style-scale", "1000"], "use at most"),
        (["--tile-budget", "100000"], "this machine has"),
        (["--max-size", "20"], "losing its aspect ratio: use at least 21"),
        (["--style-weight", "1e300"], "3.40282e+38"),
    ],
)
def test_sizes_and_weights_no_memory_allows_are_refused_first(
    capsys, pictures, no_model_loads, argv, words
):
    code, err = stylize(capsys, pictures, "out.png", *argv)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert "Warning" not in err and names(pictures) == {"content.png", "style.png"}


def test_a_model_dir_without_models_is_an_error(capsys, pictures, no_model_loads):
    (pictures / "models").mkdir()
    code, err = stylize(capsys, pictures, "out.png", "--model-dir", pictures / "models")
    assert code == 2 and err.count("\n") == 1 and "holds no avg-pooling model" in err, err


def test_extreme_weights_leave_one_line(capsys, pictures):
    """The engine's own NaN/inf report, and no numpy warnings around it."""
    code, err = stylize(capsys, pictures, "out.png", "--style-weight", "3e38")
    assert code == 2 and err.count("\n") == 1 and "infinite" in err, err
    assert "lower the strength" in err, err  # the knob a user has, not an API field name
    assert names(pictures) == {"content.png", "style.png"}


def _png_rows(path: Path, width: int, height: int) -> None:
    """A big, mostly empty RGBA PNG written row by row (never whole in memory)."""
    squeeze = zlib.compressobj(6)
    row = b"\0" + bytes(range(256)) * (width * 4 // 256) + bytes(width * 4 % 256)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        for kind, chunk in ((b"IHDR", ihdr), (b"IDAT", data), (b"IEND", b"")):
            crc = zlib.crc32(kind + chunk)
            file.write(struct.pack(">I", len(chunk)) + kind + chunk + struct.pack(">I", crc))


PEAK = r"""
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.stderr[-500:])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="peak memory from getrusage in kB (Linux)")
def test_a_huge_image_is_decoded_at_the_size_needed(tmp_path):
    """9990² RGBA: 400 MB as bytes, 1.6 GB as floats; --max-size 64 needs 128 px of it."""
    _png_rows(tmp_path / "huge.png", 9990, 9990)
    assert (tmp_path / "huge.png").stat().st_size < 2_000_000
    huge, out = tmp_path / "huge.png", tmp_path / "out.png"
    argv = [*COMMAND, "stylize", huge, huge, "-o", out, *FAST]
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *map(str, argv)], capture_output=True, text=True, timeout=300
    )
    code, peak_kb, err = done.stdout.split(" ", 2)
    assert code == "0", err
    assert int(peak_kb) < 1_200_000, f"peak {int(peak_kb) / 1e6:.1f} GB"
    with Image.open(out) as im:
        assert im.size == (64, 64)


SLOW = ["--preset", "draft", "--steps", "500", "--scales", "1"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_cancel_like_ctrl_c(tmp_path, signum):
    Image.fromarray(smooth_rgb(64, 96)).save(tmp_path / "content.png")
    Image.fromarray(smooth_rgb(48, 48)).save(tmp_path / "style.png")
    argv = [*COMMAND, "stylize", tmp_path / "content.png", tmp_path / "style.png"]
    process, _ = run_until_progress([*argv, "-o", tmp_path / "out.png", *SLOW])
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 128 + signum
    assert b"cancelled; nothing written" in rest and b"Traceback" not in rest
    assert names(tmp_path) == {"content.png", "style.png"}


TERM_DURING_SAVE = r"""
import os, signal, sys
from onnxstyle.core import imageio
from onnxstyle.plugin import cli
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W
encode = imageio._encode
def interrupted(*args, **kwargs):  # the fault: SIGTERM arrives while the result is being written
    os.kill(os.getpid(), signal.SIGTERM)
    return encode(*args, **kwargs)
imageio._encode = interrupted
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_the_final_save_leaves_nothing(pictures):
    done = subprocess.run(
        [sys.executable, "-c", TERM_DURING_SAVE, "stylize", pictures / "content.png"]
        + [pictures / "style.png", "-o", pictures / "out.png", *FAST],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "cancelled; nothing written" in done.stderr and "Traceback" not in done.stderr
    assert names(pictures) == {"content.png", "style.png"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT can't be sent to a child on Windows")
def test_ctrl_c_keeps_the_snapshots_and_says_where(tmp_path):
    Image.fromarray(smooth_rgb(64, 96)).save(tmp_path / "content.png")
    Image.fromarray(smooth_rgb(48, 48)).save(tmp_path / "style.png")
    argv = [*COMMAND, "stylize", tmp_path / "content.png", tmp_path / "style.png"]
    first = tmp_path / "out-scale1-step0001.png"
    process, _ = run_until_progress(
        [*argv, "-o", tmp_path / "out.png", *SLOW, "--save-every", "1"], seen_file=first
    )
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read().decode()
    assert process.wait(timeout=60) == 130
    kept = sorted(p.name for p in tmp_path.glob("out-scale1-step*.png"))
    assert kept and f"kept {len(kept)} snapshot(s) in {tmp_path}" in rest, rest
    assert f"the last {kept[-1]}" in rest and "nothing written" not in rest
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob("*.part"))


# --------------------------------------------------------------------------- --worker

WORKER = shlex.join([sys.executable, "-m", "onnxstyle.plugin.worker"])


def test_worker_flag_gives_the_local_result(capsys, pictures):
    """The job in a worker process (files shared: the fast local path) writes exactly what the
    local run writes; with --upscale the content goes whole, so not even rounding differs."""
    code, err = stylize(capsys, pictures, "local.png", "--upscale")
    assert code == 0, err
    code, err = stylize(capsys, pictures, "remote.png", "--upscale", "--worker", WORKER)
    assert code == 0, err
    with Image.open(pictures / "local.png") as a, Image.open(pictures / "remote.png") as b:
        assert a.size == b.size == (64, 48) and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--save-every", "1"], "--save-every can't be used with --worker"),
        (["--model-dir", "."], "--model-dir can't be used with --worker"),
        (["--init", "content.png"], "--init PATH can't be used with --worker"),
        (["--worker", ""], "the worker command is empty"),
        (["--worker", "ssh 'gpu"], "can't read the worker command"),
    ],
)
def test_what_a_worker_elsewhere_cant_do_is_refused_first(capsys, pictures, extra, words):
    worker = [] if extra[0] == "--worker" else ["--worker", WORKER]
    code, err = stylize(capsys, pictures, "out.png", *extra, *worker)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert names(pictures) == {"content.png", "style.png"}


def test_a_worker_that_fails_is_one_line_and_writes_nothing(capsys, pictures):
    script = "import sys; sys.stderr.write('worker: no GPU here\\n'); sys.exit(3)"
    worker = shlex.join([sys.executable, "-c", script])
    code, err = stylize(capsys, pictures, "out.png", "--worker", worker)
    assert code == 2 and err.count("\n") == 1, err
    assert "the worker exited with status 3: worker: no GPU here" in err
    assert names(pictures) == {"content.png", "style.png"}
