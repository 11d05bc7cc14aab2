"""The plug-in in a real, headless GIMP 3: install, run non-interactively, inspect the pixels.

gimp_setup.py finds GIMP 3 (the host's, or the cached Debian 13 root, where tests/gimp/gimp-batch.sh
runs it with the worker's Python and the sources bind-mounted) and skips without it, except under
CI=true, where a missing GIMP is a failure. The dialog is tested in test_gimp_ui.py.

The same batch also runs the plug-in with the worker behind ssh (tests/sshd.py's sshd on
127.0.0.1): GIMP in its root has a /tmp of its own, so the worker on the host shares no file with
the plug-in and every pixel travels in-band.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from gimp_setup import batch_folder, gimp_root, run_batch, ssh_missing, unavailable
from helpers import gimp_case, plugin_constants
from PIL import Image
from sshd import free_port, worker_args

PAD = 4  # tests/gimp/e2e_batch.py: the layer sits at (4, 4) on a larger canvas
SELECTION = (20, 16, 40, 32)  # x, y, w, h in image coordinates (e2e_batch.py)
FEATHER = 8


def _make_images(folder: Path) -> dict[str, Path]:
    yy, xx = np.mgrid[0:64, 0:80]
    rgba = np.zeros((64, 80, 4), np.uint8)
    rgba[..., 0] = xx * 3
    rgba[..., 1] = yy * 4
    rgba[..., 2] = np.where(((xx // 8) + (yy // 8)) % 2 == 0, 200, 60)
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0  # transparent corner
    rgba[40:, 50:, 3] = 128  # half-transparent block, partly inside the selection
    Image.fromarray(rgba, "RGBA").save(folder / "content.png")
    rng = np.random.default_rng(5)
    stripes = (
        np.sin(xx[:48, :48, None] / 2.5 + np.array([0.0, 2.0, 4.0])) + 1
    ) * 110 + rng.integers(0, 30, (48, 48, 3))
    Image.fromarray(np.clip(stripes, 0, 255).astype(np.uint8)).save(folder / "style.png")
    good = (folder / "style.png").read_bytes()
    (folder / "corrupt.png").write_bytes(good[: len(good) // 3])
    return {
        "content": folder / "content.png",
        "style": folder / "style.png",
        "corrupt": folder / "corrupt.png",
    }


@pytest.fixture(scope="module")
def gimp_ssh(request) -> dict:
    """The sshd the plug-in's worker runs behind ("server"), or why not ("reason"): no sshd here,
    or no ssh client in GIMP's root."""
    try:
        server = request.getfixturevalue("ssh_server")
    except pytest.skip.Exception as exc:
        return {"reason": str(exc)}
    return {"reason": ssh_missing(gimp_root()), "server": server}


def _ssh_env(ssh: dict, folder: Path) -> dict[str, str]:
    """ONNXSTYLE_E2E_SSH and _SSH_REFUSED (a port where nothing listens): files holding worker
    commands with a copy of the test's key, in the folder GIMP sees."""
    if ssh["reason"]:
        return {}
    key = folder / "ssh-key"
    shutil.copy(ssh["server"].key, key)
    key.chmod(0o600)  # ssh refuses a private key others may read
    command = ssh["server"].command(worker_args(), key=key)
    refused = list(command)
    refused[refused.index("-p") + 1] = str(free_port())
    env = {}
    for name, words in (("SSH", command), ("SSH_REFUSED", refused)):
        path = folder / f"{name.lower()}.json"  # gimp-batch.sh passes values without spaces
        path.write_text(json.dumps(words))
        env[f"ONNXSTYLE_E2E_{name}"] = str(path)
    return env


@pytest.fixture(scope="module")
def gimp_run(tmp_path_factory, gimp_ssh):
    root = gimp_root()
    folder = batch_folder(tmp_path_factory, "gimp-e2e")
    images = _make_images(folder)
    params = {
        "ONNXSTYLE_E2E_CONTENT": str(images["content"]),
        "ONNXSTYLE_E2E_STYLE": str(images["style"]),
        "ONNXSTYLE_E2E_BAD_STYLE": str(images["corrupt"]),
        # the interpreter under the venv: a Python without onnxstyle
        "ONNXSTYLE_E2E_BARE_PYTHON": str(Path(sys.executable).resolve()),
        **_ssh_env(gimp_ssh, folder),
    }
    report, log = run_batch(root, "e2e_batch.py", folder, params, timeout=600)
    original = np.asarray(Image.open(images["content"]).convert("RGBA"))
    return report, original, log


def pixels(layer: dict) -> np.ndarray:
    w, h = layer["size"]
    return np.fromfile(layer["raw"], np.uint8).reshape(h, w, 4)


def selection_mask(shape, grow: int = 0) -> np.ndarray:
    """The rectangle in layer coordinates, grown (or shrunk, grow < 0) by some pixels."""
    x, y, w, h = SELECTION
    x, y = x - PAD, y - PAD
    mask = np.zeros(shape[:2], bool)
    mask[max(y - grow, 0) : max(y + h + grow, 0), max(x - grow, 0) : max(x + w + grow, 0)] = True
    return mask


def test_new_layer_above_changes_only_the_selection(gimp_run):
    _, original, _ = gimp_run
    case = gimp_case(gimp_run, "new-layer")
    assert case["status"] == "success", case["error"]
    new, source = case["layers"]  # top first
    assert new["name"] == "Background (neural style)" and source["name"] == "Background"
    assert new["offsets"] == source["offsets"] == [PAD, PAD] and new["size"] == source["size"]
    assert np.array_equal(pixels(source), original), "the original layer must be untouched"
    result = pixels(new)
    inside = selection_mask(result.shape)
    assert np.array_equal(result[~inside], original[~inside]), (
        "pixels outside the selection changed"
    )
    diff = np.abs(result[..., :3].astype(int) - original[..., :3])
    opaque_inside = inside & (original[..., 3] > 0)
    assert diff[opaque_inside].mean() > 2.0, "the selection was not stylised"
    assert np.array_equal(result[..., 3], original[..., 3]), "alpha must be kept"


def test_replace_blends_through_a_feathered_selection(gimp_run):
    _, original, _ = gimp_run
    case = gimp_case(gimp_run, "replace")
    assert case["status"] == "success", case["error"]
    (layer,) = case["layers"]
    assert layer["offsets"] == [PAD, PAD]
    result = pixels(layer)
    far = ~selection_mask(result.shape, grow=FEATHER + 1)
    assert np.array_equal(result[far], original[far]), "pixels beyond the feathered edge changed"
    core = selection_mask(result.shape, grow=-FEATHER)
    diff = np.abs(result[..., :3].astype(int) - original[..., :3]).sum(axis=2)
    assert diff[core].mean() > 6.0, "the selection's core was not stylised"
    assert np.array_equal(result[..., 3], original[..., 3])
    # the feather: some pixels just outside the hard edge got part of the change
    ring = selection_mask(result.shape, grow=FEATHER // 2) & ~selection_mask(result.shape)
    assert (diff[ring] > 0).any()


def test_corrupt_style_fails_and_leaves_the_image_unchanged(gimp_run):
    _, original, _ = gimp_run
    case = gimp_case(gimp_run, "corrupt-style")
    assert case["status"] == "execution-error"
    assert case["error"] and "\n" not in case["error"].strip()
    (layer,) = case["layers"]
    assert np.array_equal(pixels(layer), original)


def test_several_selected_layers_are_refused(gimp_run):
    _, original, _ = gimp_run
    case = gimp_case(gimp_run, "two-layers")
    assert case["status"] == "execution-error"
    assert "one layer" in case["error"]
    assert len(case["layers"]) == 2
    assert all(np.array_equal(pixels(layer), original) for layer in case["layers"])


def test_grey_float_image(gimp_run):
    """A grey, 32-bit float linear image: float pixels both ways, result written back as grey."""
    case = gimp_case(gimp_run, "gray-float")
    assert case["status"] == "success", case["error"]
    new, source = case["layers"]
    assert new["name"].endswith("(neural style)") and new["offsets"] == source["offsets"] == [
        PAD,
        PAD,
    ]
    result, before = pixels(new), pixels(source)
    assert np.array_equal(result[..., 0], result[..., 1]), "a grey layer stays grey"
    inside = selection_mask(result.shape)
    assert np.array_equal(result[~inside], before[~inside])
    assert (
        np.abs(result[..., :3].astype(int) - before[..., :3])[inside & (before[..., 3] > 0)].mean()
        > 2.0
    )


def test_broken_worker_setups_say_how_to_fix_them(gimp_run):
    _, original, _ = gimp_run
    gone = gimp_case(gimp_run, "worker-python-gone")
    assert gone["status"] == "execution-error" and "onnxstyle gimp install" in gone["error"], gone[
        "error"
    ]
    bare = gimp_case(gimp_run, "worker-without-onnxstyle")
    assert bare["status"] == "execution-error"
    assert "onnxstyle is not installed" in bare["error"] and "pip install" in bare["error"], bare[
        "error"
    ]
    for case in (gone, bare):
        (layer,) = case["layers"]
        assert np.array_equal(pixels(layer), original)


def test_the_worker_behind_ssh_paints_the_same_layer(gimp_run, gimp_ssh):
    """The recorded command is ssh to 127.0.0.1; nothing is shared, so the layer's pixels, the
    style file and the result travel in-band: the new layer equals the local worker's."""
    if gimp_ssh["reason"]:
        unavailable(gimp_ssh["reason"])
    local, remote = gimp_case(gimp_run, "new-layer"), gimp_case(gimp_run, "ssh-new-layer")
    assert remote["status"] == "success", remote["error"]
    assert "files not shared: pixels in-band" in gimp_run[2], "the plug-in used files"
    (new, source), (local_new, _) = remote["layers"], local["layers"]
    assert new["name"] == local_new["name"] and new["offsets"] == local_new["offsets"]
    assert np.array_equal(pixels(new), pixels(local_new))
    assert np.array_equal(pixels(source), gimp_run[1])


def test_a_refused_ssh_connection_is_one_line_and_the_image_unchanged(gimp_run, gimp_ssh):
    if gimp_ssh["reason"]:
        unavailable(gimp_ssh["reason"])
    case = gimp_case(gimp_run, "ssh-refused")
    assert case["status"] == "execution-error", case
    error = case["error"].strip()
    assert error.startswith("The connection to the onnxstyle worker dropped") and "\n" not in error
    assert "Connection refused" in error, error
    (layer,) = case["layers"]
    assert np.array_equal(pixels(layer), gimp_run[1])


# ------------------------------------------------------------------ the installer (no GIMP needed)

from onnxstyle.plugin import gimp_install  # noqa: E402


def test_gimp_profile_folders_per_platform(tmp_path):
    home = tmp_path / "home"
    linux = home / ".config/GIMP/3.0"
    flatpak = home / ".var/app/org.gimp.GIMP/config/GIMP/3.2"
    mac = home / "Library/Application Support/GIMP/3.0"
    appdata = tmp_path / "AppData/Roaming"
    for d in (linux, flatpak, mac, appdata / "GIMP/3.0"):
        d.mkdir(parents=True)
    assert gimp_install.gimp_dirs(home, {}, "linux") == [linux, flatpak]
    assert gimp_install.gimp_dirs(home, {}, "darwin") == [mac]
    assert gimp_install.gimp_dirs(home, {"APPDATA": str(appdata)}, "win32") == [
        appdata / "GIMP/3.0"
    ]
    assert gimp_install.gimp_dirs(home, {"GIMP3_DIRECTORY": "/x/y"}, "linux") == [Path("/x/y")]
    assert gimp_install.is_flatpak(flatpak) and not gimp_install.is_flatpak(linux)


def test_install_doctor_uninstall(tmp_path, capsys):
    gimp_dir = tmp_path / "gimp"
    assert gimp_install.main(["install", "--gimp-dir", str(gimp_dir)]) == 0
    folder = gimp_dir / "plug-ins" / gimp_install.PLUGIN_NAME
    plugin = folder / f"{gimp_install.PLUGIN_NAME}.py"
    assert (
        os.access(plugin, os.X_OK)
        and plugin.read_bytes() == gimp_install.plugin_source().read_bytes()
    )
    assert json.loads((folder / gimp_install.CONFIG_NAME).read_text())["python"] == sys.executable
    capsys.readouterr()
    assert gimp_install.main(["doctor", "--gimp-dir", str(gimp_dir)]) == 0
    report = capsys.readouterr().out
    assert "CPUExecutionProvider" in report and "all good" in report
    # a worker Python that has gone: doctor says so and what to run
    (folder / gimp_install.CONFIG_NAME).write_text(
        json.dumps({"python": str(tmp_path / "gone/python")})
    )
    assert gimp_install.main(["doctor", "--gimp-dir", str(gimp_dir)]) == 1
    report = capsys.readouterr().out
    assert "NOT working" in report and "pip install" in report
    assert gimp_install.main(["uninstall", "--gimp-dir", str(gimp_dir)]) == 0
    assert not folder.exists()


def test_install_without_a_gimp_profile_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("APPDATA", raising=False)
    assert gimp_install.main(["install"]) == 2
    assert "start GIMP 3 once" in capsys.readouterr().err


def test_install_copies_every_module_and_replaces_an_older_folder_whole(tmp_path, capsys):
    gimp_dir = tmp_path / "gimp"
    folder = gimp_install.plugin_folder(gimp_dir)
    folder.mkdir(parents=True)
    (folder / "gone.py").write_text("# a module an older version had\n")
    (folder / f"{gimp_install.PLUGIN_NAME}.py").write_text("# an older entry file\n")
    assert gimp_install.main(["install", "--gimp-dir", str(gimp_dir)]) == 0
    sources = gimp_install.plugin_files()
    assert len(sources) > 1 and {p.name for p in sources} >= {
        f"{gimp_install.PLUGIN_NAME}.py",
        "protocol.py",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in sources] + [gimp_install.CONFIG_NAME]
    )
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in sources)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name], "a temporary folder was left"
    # doctor compares every module, not only the entry file
    (folder / "protocol.py").write_text("# changed by hand\n")
    capsys.readouterr()
    gimp_install.main(["doctor", "--gimp-dir", str(gimp_dir)])
    assert "differs from this onnxstyle" in capsys.readouterr().out


def test_an_install_that_fails_midway_leaves_the_installed_plugin_as_it_was(
    tmp_path, monkeypatch, capsys
):
    gimp_dir = tmp_path / "gimp"
    assert gimp_install.main(["install", "--gimp-dir", str(gimp_dir)]) == 0
    folder = gimp_install.plugin_folder(gimp_dir)
    for module in folder.glob("*.py"):  # an older version's modules
        module.write_text(f"# {module.name} of an older version\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    written = []

    def disk_full_at_the_third_file(path, content):
        if len(written) == 2:
            raise OSError(28, "No space left on device", str(path))
        written.append(path)
        Path(path).write_bytes(content)

    monkeypatch.setattr(gimp_install, "write_atomic", disk_full_at_the_third_file)
    assert gimp_install.main(["install", "--gimp-dir", str(gimp_dir)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == [folder.name], "a temporary folder was left"


def test_the_plugin_reads_the_record_the_installer_writes():
    constants = plugin_constants()
    assert constants["CONFIG_NAME"] == gimp_install.CONFIG_NAME
    assert constants["WORKER_ARGS"] == gimp_install.WORKER_ARGS
    assert f"-m {gimp_install.__name__} install" in constants["FIX_REGISTER"]
