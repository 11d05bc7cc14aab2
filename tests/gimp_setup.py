"""Finding GIMP 3 for the GIMP tests (test_gimp_e2e.py, test_gimp_ui.py), and what it must see.

GIMP 3 comes from the host (`gimp-console-3.0` on PATH, e.g. Debian 13's `apt-get install gimp`)
or from the Debian 13 root that tests/gimp/gimp-root.sh makes and caches at
/var/cache/onnxstyle/trixie (ONNXSTYLE_GIMP_ROOT overrides). In the root, GIMP runs under
chroot in a private mount namespace where the worker's Python (the venv and the interpreter it
links to), the onnxstyle sources and the test's folder are bind-mounted at their own paths, so
the plug-in starts exactly the worker a user would have. Without GIMP 3 a test skips, except
under CI=true, where a missing GIMP is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import onnxstyle.plugin

SCRIPTS = Path(__file__).resolve().parent / "gimp"
DEFAULT_ROOT = Path("/var/cache/onnxstyle/trixie")


def unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"GIMP 3 end-to-end test can't run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def gimp_root() -> str:
    """'/' for a host GIMP 3, else the path of a ready Debian root; skips (or fails under CI)."""
    if shutil.which("gimp-console-3.0"):
        return "/"
    root = Path(os.environ.get("ONNXSTYLE_GIMP_ROOT", DEFAULT_ROOT))
    if not (root / "usr/bin/gimp-console-3.0").exists():
        unavailable(
            f"no GIMP 3: no gimp-console-3.0 on PATH and no root at {root}; make one with tests/gimp/gimp-root.sh"
        )
    if os.geteuid() != 0 or not shutil.which("unshare"):
        unavailable(
            f"GIMP 3 is in {root}, but running it needs root and unshare (chroot + bind mounts)"
        )
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        unavailable(
            f"GIMP 3 is in {root}, but this machine refuses a private mount namespace: {probe.stderr.strip()}"
        )
    return str(root)


def binds(folder: Path) -> list[str]:
    """What GIMP's plug-in must see of this host: the worker's Python and onnxstyle, our files."""
    paths = {
        Path(sys.prefix).resolve(),  # the venv
        Path(sys.base_prefix).resolve(),  # the interpreter the venv's python links to
        Path(sys.executable).resolve().parents[1],
        Path(onnxstyle.plugin.__file__)
        .resolve()
        .parents[1],  # the sources (editable) or site-packages
        folder.resolve(),
        SCRIPTS,  # the scripts GIMP runs import layer_dump.py from here
    }
    system = [
        p
        for p in paths
        if p == Path("/") or p.parts[1] in ("usr", "bin", "lib", "lib64", "etc", "sbin")
    ]
    if system:
        # the root has its own /usr (GIMP's Python 3.13): a system Python can't be shared into it
        unavailable(
            f"the worker's Python lives in {system[0]}, which the GIMP 3 root can't share; run the tests from a venv "
            "made with a Python outside /usr (pyenv, uv), or on a host with GIMP 3 installed"
        )
    ordered = sorted(paths, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:  # a folder inside another bound one comes with it
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return [str(p) for p in kept]


def install(gimp_dir: Path) -> None:
    cli = Path(sys.executable).with_name("onnxstyle")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "onnxstyle.plugin.cli"]
    done = subprocess.run(
        [*command, "gimp", "install", "--gimp-dir", str(gimp_dir)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"onnxstyle gimp install failed: {done.stdout}{done.stderr}"
    plugin = gimp_dir / "plug-ins/onnxstyle-neural-style/onnxstyle-neural-style.py"
    assert plugin.is_file() and os.access(plugin, os.X_OK)
    record = json.loads((plugin.parent / "onnxstyle-worker.json").read_text())
    assert Path(record["python"]).resolve() == Path(sys.executable).resolve()


# what the real-window test needs beside GIMP (tests/gimp/gimp-root.sh installs them)
GUI_FILES = ("usr/bin/xvfb-run", "usr/bin/Xvfb", "usr/lib/python3/dist-packages/pyatspi")


def gui_ready(root: str) -> None:
    """Skips (or fails under CI) unless the root (or this host) can show GIMP on a virtual screen."""
    missing = [f for f in GUI_FILES if not (Path(root) / f).exists()]
    if missing:
        where = "this host" if root == "/" else root
        unavailable(
            f"no virtual screen for GIMP's window: {where} lacks {', '.join('/' + m for m in missing)}; "
            "as root, tests/gimp/gimp-root.sh adds them (xvfb, xauth, at-spi2-core, python3-pyatspi)"
        )


def ssh_missing(root: str) -> str | None:
    """Why the plug-in can't run ssh in GIMP's root (None: it can)."""
    if (Path(root) / "usr/bin/ssh").exists():
        return None
    where = "this host" if root == "/" else root
    return f"{where} has no ssh client for the plug-in; as root, tests/gimp/gimp-root.sh adds it"


def batch_folder(tmp_path_factory, name: str) -> Path:
    """A folder for one headless GIMP run: gimp3/ (the profile, the plug-in installed), home/ and
    out/ (the script's report and pixel dumps)."""
    folder = tmp_path_factory.mktemp(name)
    for d in ("gimp3", "home", "out"):
        (folder / d).mkdir()
    install(folder / "gimp3")
    return folder


def run_batch(
    root: str, script: str, folder: Path, params: dict[str, str], timeout: float
) -> tuple[dict[str, dict], str]:
    """tests/gimp/`script` in headless GIMP (gimp-batch.sh) with `folder` (batch_folder) and the
    ONNXSTYLE_E2E_* `params`; its log is kept in folder/gimp.log. Returns its report.jsonl by
    case, and the log."""
    env = {
        **os.environ,
        "HOME": str(folder / "home"),
        "GIMP3_DIRECTORY": str(folder / "gimp3"),
        "ONNXSTYLE_E2E_OUT": str(folder / "out"),
        **params,
    }
    command = [str(SCRIPTS / "gimp-batch.sh"), root, str(SCRIPTS / script)]
    if root != "/":
        command += binds(folder)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    log = done.stdout + done.stderr
    (folder / "gimp.log").write_text(log)
    assert done.returncode == 0, f"GIMP failed (rc {done.returncode}):\n{log[-4000:]}"
    report_file = folder / "out" / "report.jsonl"
    assert report_file.exists(), f"the batch script wrote no report:\n{log[-4000:]}"
    lines = map(json.loads, report_file.read_text().splitlines())
    return {r["case"]: r for r in lines}, log
