"""House style that tools keep: ruff's lint and format and pyright's basic type check (configured
in pyproject.toml) pass on the tree."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    if shutil.which(name):
        return shutil.which(name)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is missing under CI: install the dev extra", pytrace=False)
    pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    done = subprocess.run([_tool("ruff"), *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright():
    """core/ and plugin/ type-check (basic mode), and every onnxstyle.* import resolves from the
    checkout through .typecheck/ (the package-dir mapping), without an install."""
    # --pythonpath: this interpreter's packages (numpy, Pillow, onnxruntime), whichever venv runs us
    done = subprocess.run(
        [_tool("pyright"), "--outputjson", "--pythonpath", sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    problems = [
        f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: "
        f"{d['message'].splitlines()[0]} ({d.get('rule', '')})"
        for d in report["generalDiagnostics"]
        if d["severity"] == "error" or d.get("rule") == "reportMissingImports"
    ]
    assert report["summary"]["filesAnalyzed"] > 20, report["summary"]
    assert not problems, "\n".join(problems)


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
