"""A real OpenSSH server on 127.0.0.1, for the tests that run the worker behind ssh (issue 10).

`ssh_server` (a session-scoped fixture; a test module imports `ssh_server_fixture`) starts
Debian's /usr/sbin/sshd in the foreground with a host key, a client key and a configuration
made for the test session in a temporary folder, on a free port of 127.0.0.1, accepting only
that key. `SshServer.command(remote)` is the ssh command line that runs `remote` there, as a
user would record it: `ssh -p PORT -i KEY ... 127.0.0.1 /venv/bin/python -m ...`.

Without sshd or ssh (or where sshd won't start) the tests skip and say why; under CI=true that is
a failure (.ci/run installs openssh-server).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 20.0


def unavailable(reason: str) -> None:
    """Skip, or fail under CI (where the SSH tests must run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the SSH tests can't run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def worker_args(marker: str | None = None) -> list[str]:
    """This venv's worker command; `marker` goes into its command line (-X, which Python keeps
    and ignores) so `pgrep -f` finds exactly this worker."""
    args = [sys.executable]
    if marker:
        args += ["-X", f"onnxstyle-test={marker}"]
    return args + ["-m", "onnxstyle.plugin.worker"]


@dataclass
class SshServer:
    folder: Path
    port: int
    key: Path
    process: subprocess.Popen

    def ssh(self, key: Path | None = None) -> list[str]:
        """ssh to this server, non-interactive, with the test's key (or a copy of it at `key`) and
        no user configuration."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(key or self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "127.0.0.1",
        ]

    def command(self, remote: list[str], key: Path | None = None) -> list[str]:
        """The command that runs `remote` on the server (ssh passes it to the login shell)."""
        return self.ssh(key) + [shlex.join(remote)]


def free_port() -> int:
    """A port of 127.0.0.1 where nothing listens (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(folder: Path, port: int) -> Path:
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        "StrictModes no",  # the keys live in a temporary folder
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "PrintMotd no",
    ]
    path = folder / "sshd_config"
    path.write_text("\n".join(lines) + "\n")
    return path


def _keys(folder: Path) -> Path:
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
            check=True,
            capture_output=True,
        )
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    return folder / "client_key"


def start_server() -> SshServer:
    """sshd on a free port of 127.0.0.1, checked with one login; skips (or fails) if it can't."""
    if not SSHD.exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        unavailable(f"no OpenSSH here ({SSHD}, ssh, ssh-keygen): apt-get install openssh-server")
    folder = Path(tempfile.mkdtemp(prefix="onnxstyle-sshd-"))
    key = _keys(folder)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege-separation folder
    port = free_port()
    with open(folder / "sshd.log", "wb") as log:  # sshd keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(_config(folder, port))],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    server = SshServer(folder, port, key, process)
    problem = _wait_until_ready(server)
    if problem:
        stop_server(server)
        unavailable(problem)
    return server


def _wait_until_ready(server: SshServer) -> str | None:
    """None once a login works; else why not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.folder / "sshd.log").read_text(errors="replace").strip()
            return f"sshd ended at once: {log.splitlines()[-1] if log else 'no log'}"
        login = subprocess.run(server.ssh() + ["true"], capture_output=True, text=True, timeout=30)
        if login.returncode == 0:
            return None
        time.sleep(0.2)
    return f"no ssh login to the test's sshd within {START_TIMEOUT_S:.0f} s: {login.stderr.strip()}"


def stop_server(server: SshServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session", name="ssh_server")
def ssh_server_fixture():
    """One sshd for the whole test session (starting one costs about half a second)."""
    server = start_server()
    yield server
    stop_server(server)
