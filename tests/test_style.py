"""House style that tools keep: ruff's lint and format (configured in pyproject.toml) pass on the tree."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    if shutil.which("ruff"):
        return shutil.which("ruff")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("ruff is missing under CI: install the dev extra", pytrace=False)
    pytest.skip("ruff is not installed (pip install -e '.[dev]')")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    done = subprocess.run([_ruff(), *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_package_registry_addresses_in_the_repo():
    """apt, pip and debootstrap use the machine's configured sources; the repo names none."""
    hosts = (
        "deb.debian.org",
        "pypi.org",
        "pythonhosted.org",
        "registry.npmjs.org",
        "ftp.debian.org",
    )
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in (".onnx", ".jpg", ".png") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [
            f"{name}: {host}" for host in hosts if host in text and name != "tests/test_style.py"
        ]
    assert not found, found
