"""The worker on another machine, as a user meets it: behind a real ssh to a real sshd on
127.0.0.1 (tests/sshd.py). The CLI's --worker end to end, a link that drops mid-job, Ctrl-C
across the link, `onnxstyle gimp install --worker` and `doctor`.

"Another machine" shares no disk with us: `elsewhere` runs the remote command in a private mount
namespace where an empty tmpfs covers this test run's temporary folder (unshare, as root), and the
client's own temporary files (its files probe) are made there too, so neither they nor the test's
pictures are visible to the worker, and everything travels in-band. (Not all of /tmp: the checkout
and its venv may live there, as in a CI clone.)
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import run_until_progress
from PIL import Image
from sshd import unavailable, worker_args

from onnxstyle.plugin import gimp_install

SCRIPT = Path(sys.executable).with_name("onnxstyle")  # the console script of this environment
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "onnxstyle.plugin.cli"]
FAST = ["--preset", "draft", "--steps", "2", "--scales", "1", "--max-size", "32"]
LONG = ["--preset", "draft", "--steps", "1000", "--scales", "1", "--max-size", "64"]
GONE_S = 30.0  # the remote worker ends within one step of its stdin closing, and sshd closes it


@pytest.fixture
def elsewhere(tmp_path_factory, monkeypatch):
    """A wrapper: `elsewhere(args)` runs `args` where this run's temporary folder is an empty
    tmpfs, and the client makes its temporary files in that folder: a machine that shares no
    files with ours. Skips (fails under CI) without root and unshare."""
    hidden = tmp_path_factory.getbasetemp()
    script = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, str(hidden), "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        unavailable(f"can't hide files from the remote worker: {probe.stderr.strip()}")
    client_tmp = hidden / "client-tmp"
    client_tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(client_tmp))  # the CLI's subprocess
    monkeypatch.setattr(tempfile, "tempdir", str(client_tmp))  # doctor, in this process
    return lambda args: ["unshare", "--mount", "sh", "-c", script, str(hidden), *args]


@pytest.fixture
def pictures(tmp_path) -> Path:
    """content.png (64×48 RGBA, alpha kept on this side) and style.png (48×48), under /tmp."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)
    small[..., 3] = np.linspace(40, 255, 16, dtype=np.uint8)
    Image.fromarray(small).resize((64, 48), Image.BICUBIC).save(tmp_path / "content.png")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "style.png")
    return tmp_path


def stylize(folder: Path, output: str, *extra: str) -> subprocess.CompletedProcess:
    args = [*COMMAND, "stylize", folder / "content.png", folder / "style.png", "-o"]
    return subprocess.run(
        [*args, folder / output, *extra], capture_output=True, text=True, timeout=300
    )


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).astype(int)


def test_the_cli_runs_the_job_through_ssh_with_no_shared_disk(ssh_server, elsewhere, pictures):
    """The remote run gives the local run's picture (within the content's rounding to 8 bits at
    the work size), alpha and size kept; the bar shows the remote progress."""
    worker = shlex.join(ssh_server.command(elsewhere(worker_args())))
    remote = stylize(pictures, "remote.png", *FAST, "--worker", worker)
    assert remote.returncode == 0, remote.stderr
    assert "scale 1/1" in remote.stderr and "loss" in remote.stderr, remote.stderr
    assert f"on {ssh_server.ssh()[0]}" in remote.stderr.splitlines()[-1]
    local = stylize(pictures, "local.png", *FAST)
    assert local.returncode == 0, local.stderr
    a, b = pixels(pictures / "remote.png"), pixels(pictures / "local.png")
    assert a.shape == b.shape == (24, 32, 4)
    assert np.array_equal(a[..., 3], b[..., 3]), "alpha differs"
    assert np.abs(a - b).mean() < 2.0 and np.abs(a - b).max() <= 16, np.abs(a - b).max()


def _processes(marker: str) -> dict[int, list[str]]:
    """Live processes whose command line holds `marker`: {pid: argv}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if any(marker in arg for arg in argv) and state not in ("Z", "X"):
            found[int(entry.name)] = argv
    return found


def _start_long_job(ssh_server, pictures: Path, marker: str, remote_tmp: Path):
    """The CLI running a long job through ssh (the worker's TMPDIR is `remote_tmp`), once its bar
    shows the first step; returns the process and the stderr seen so far."""
    worker = ssh_server.command(["env", f"TMPDIR={remote_tmp}", *worker_args(marker)])
    args = [*COMMAND, "stylize", pictures / "content.png", pictures / "style.png", "-o"]
    argv = [*args, pictures / "out.png", *LONG, "--worker", shlex.join(worker)]
    return run_until_progress(argv, timeout=120)  # the first remote step


def _wait_gone(marker: str) -> dict[int, list[str]]:
    deadline = time.monotonic() + GONE_S
    while (left := _processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _ssh_client(marker: str) -> int:
    (pid,) = [pid for pid, argv in _processes(marker).items() if Path(argv[0]).name == "ssh"]
    return pid


def test_a_dropped_link_is_one_line_and_leaves_nothing_on_either_side(ssh_server, pictures):
    """The ssh client killed mid-job: the CLI says so in one line and writes nothing; the remote
    worker ends (no process left on the "GPU box") and leaves nothing in its TMPDIR."""
    marker, remote_tmp = f"drop-{os.getpid()}", pictures / "remote-tmp"
    remote_tmp.mkdir()
    process, _ = _start_long_job(ssh_server, pictures, marker, remote_tmp)
    try:
        os.kill(_ssh_client(marker), signal.SIGKILL)
        rest = process.stderr.read().decode(errors="replace")
        assert process.wait(timeout=60) == 2, rest
    finally:
        process.kill()
    last = rest.strip().splitlines()[-1]
    assert last.startswith(
        "onnxstyle: error: the link to the worker dropped (ssh was killed by signal 9)"
    ), rest
    assert "Traceback" not in rest and rest.count("error") == 1, rest
    assert {p.name for p in pictures.iterdir()} == {"content.png", "style.png", "remote-tmp"}
    assert not _wait_gone(marker), "the remote worker outlived the dropped link"
    assert not list(remote_tmp.iterdir()), "the remote worker left files in its TMPDIR"


def test_ctrl_c_cancels_across_the_link(ssh_server, pictures):
    marker, remote_tmp = f"cancel-{os.getpid()}", pictures / "remote-tmp"
    remote_tmp.mkdir()
    process, _ = _start_long_job(ssh_server, pictures, marker, remote_tmp)
    try:
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read().decode(errors="replace")
        assert process.wait(timeout=60) == 130, rest
        took = time.monotonic() - sent
    finally:
        process.kill()
    assert "cancelled; nothing written" in rest and "Traceback" not in rest, rest
    assert took < 20, f"the cancel took {took:.1f} s to cross the link"
    assert {p.name for p in pictures.iterdir()} == {"content.png", "style.png", "remote-tmp"}
    assert not _wait_gone(marker), "the remote worker outlived the cancelled job"


def test_gimp_install_records_the_command_and_doctor_runs_hello_through_it(
    ssh_server, elsewhere, tmp_path, capsys
):
    command = ssh_server.command(elsewhere(worker_args()))
    profile = tmp_path / "GIMP" / "3.0"
    profile.mkdir(parents=True)
    assert (
        gimp_install.main(["install", "--gimp-dir", str(profile), "--worker", shlex.join(command)])
        == 0
    )
    record = json.loads((gimp_install.plugin_folder(profile) / "onnxstyle-worker.json").read_text())
    assert record["command"] == command and "python" not in record
    capsys.readouterr()
    assert gimp_install.main(["doctor", "--gimp-dir", str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"worker command: {shlex.join(command)}" in out
    assert "protocol 2" in out and "files: not shared" in out, out
    assert "    cpu       available" in out and "link: round trip" in out and "MB/s" in out, out
    assert out.strip().endswith("all good"), out
