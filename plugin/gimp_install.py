"""`onnxstyle gimp install|uninstall|doctor`: put the GIMP 3 plug-in where GIMP finds it.

The plug-in folder (the entry file `onnxstyle-neural-style.py`, executable, and the modules beside
it) goes to `<GIMP profile>/plug-ins/onnxstyle-neural-style/`, with `onnxstyle-worker.json` in it,
which records the command that starts the worker: this Python (`sys.executable`) running `python -m onnxstyle.plugin.worker` (GIMP's own
Python has neither numpy nor onnxruntime), or any command given with --worker, e.g. `ssh gpu-box
/venv/bin/python -m onnxstyle.plugin.worker` for a worker on another machine. `doctor` runs hello
through the recorded command and times the link.

The folder is put together whole under a hidden temporary name beside it and then renamed into
place, so GIMP never finds a half-copied plug-in (nor a mix of two versions' modules).

Also runnable as `python -m onnxstyle.plugin.gimp_install install`, which is the command the
plug-in's error messages quote (it names the exact Python).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from onnxstyle.core.files import write_atomic
from onnxstyle.plugin.client import WorkerClient, WorkerError, is_ssh, worker_command

PLUGIN_NAME = "onnxstyle-neural-style"
CONFIG_NAME = "onnxstyle-worker.json"
GIMP_VERSIONS = ("3.0", "3.2")
WORKER_ARGS = ["-m", "onnxstyle.plugin.worker"]
LINK_TEST_BYTES = 4 << 20  # doctor's upload and download: a 1 Mpx rgba8 layer


class InstallError(Exception):
    """One line for the user."""


def plugin_source() -> Path:
    """The plug-in's entry file shipped with this onnxstyle (its modules lie beside it).

    A wheel carries the folder as package data at onnxstyle/plugin/gimp/<name>/; an editable
    install or a source checkout has it at <repo>/gimp/<name>/ next to plugin/.
    """
    here = Path(__file__).resolve().parent
    for base in (here / "gimp", here.parent / "gimp"):
        candidate = base / PLUGIN_NAME / f"{PLUGIN_NAME}.py"
        if candidate.is_file():
            return candidate
    raise InstallError(
        f"the GIMP plug-in file {PLUGIN_NAME}.py is missing from this onnxstyle installation ({here}); reinstall onnxstyle"
    )


def _candidates(home: Path, env: dict[str, str], platform: str) -> list[Path]:
    """Every place a GIMP 3 profile may live on this platform, most usual first."""
    paths: list[Path] = []
    for version in GIMP_VERSIONS:
        if platform.startswith("win"):
            appdata = env.get("APPDATA")
            if appdata:
                paths.append(Path(appdata) / "GIMP" / version)
        elif platform == "darwin":
            paths.append(home / "Library" / "Application Support" / "GIMP" / version)
        else:
            config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
            paths.append(config / "GIMP" / version)
            paths.append(home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / version)
            paths.append(home / "snap" / "gimp" / "current" / ".config" / "GIMP" / version)
    return paths


def gimp_dirs(
    home: Path | None = None, env: dict[str, str] | None = None, platform: str | None = None
) -> list[Path]:
    """GIMP 3 profile folders that exist; $GIMP3_DIRECTORY (GIMP's own override) wins alone."""
    env = dict(os.environ) if env is None else env
    override = env.get("GIMP3_DIRECTORY")
    if override:
        return [Path(override).expanduser()]
    home = Path.home() if home is None else home
    found = []
    for path in _candidates(home, env, platform or sys.platform):
        if path.is_dir() and path not in found:
            found.append(path)
    return found


def is_flatpak(gimp_dir: Path) -> bool:
    return "org.gimp.GIMP" in gimp_dir.parts


def plugin_files() -> list[Path]:
    """Every module of the plug-in: the entry file and its siblings."""
    return sorted(plugin_source().parent.glob("*.py"))


def install_into(gimp_dir: Path, python: str, command: list[str] | None = None) -> Path:
    """Copy the plug-in folder and its worker record into one profile; returns the entry file's
    path. `command`: the worker command (default: `python` running the worker here)."""
    files = plugin_files()
    folder = plugin_folder(gimp_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-new-", dir=folder.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; GIMP's other users may read it as before
        for source in files:
            write_atomic(staging / source.name, source.read_bytes())
        (staging / f"{PLUGIN_NAME}.py").chmod(0o755)  # GIMP runs only executable plug-ins on Unix
        record = {
            "command": command or [python, *WORKER_ARGS],
            "installed": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if command is None:  # a local worker: its Python, for the plug-in's advice when it fails
            record.update(python=python, args=WORKER_ARGS)
        write_atomic(staging / CONFIG_NAME, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / f"{PLUGIN_NAME}.py"


def _replace_folder(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`; an old `folder` is moved aside first (and back if that fails),
    then removed: at every moment the folder is whole, old or new, or briefly absent."""
    if not folder.exists():
        new.rename(folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-old-", dir=folder.parent))
    old.rmdir()  # a free name beside the folder, for the rename
    folder.rename(old)
    try:
        new.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(folder: Path) -> None:
    """Temporary folders an interrupted install left beside the plug-in's (GIMP ignores them:
    hidden, and no entry file of their name)."""
    for path in folder.parent.glob(f".{PLUGIN_NAME}-*"):
        shutil.rmtree(path, ignore_errors=True)


def plugin_folder(gimp_dir: Path) -> Path:
    """Where the plug-in lives in a GIMP profile."""
    return gimp_dir / "plug-ins" / PLUGIN_NAME


def _chosen_dirs(args: argparse.Namespace) -> list[Path]:
    """--gimp-dir if given, else every GIMP 3 profile found (possibly none)."""
    return [Path(args.gimp_dir).expanduser()] if args.gimp_dir else gimp_dirs()


def _targets(args: argparse.Namespace) -> list[Path]:
    found = _chosen_dirs(args)
    if not found:
        raise InstallError(
            "no GIMP 3 profile folder found (start GIMP 3 once so it creates one, or pass --gimp-dir DIR); "
            "looked in: "
            + ", ".join(str(p) for p in _candidates(Path.home(), dict(os.environ), sys.platform))
        )
    return found


def cmd_install(args: argparse.Namespace) -> int:
    python = sys.executable
    command = worker_command(args.worker) if args.worker is not None else None
    for gimp_dir in _targets(args):
        target = install_into(gimp_dir, python, command)
        print(f"installed {target}")
        if is_flatpak(gimp_dir):
            print(
                "  note: Flatpak GIMP runs plug-ins in its sandbox; the worker command "
                f"{command[0] if command else python} must be runnable there."
            )
    if command:
        print(f"worker command: {shlex.join(command)}")
        print("check it with: onnxstyle gimp doctor (it must run without asking for a password)")
    else:
        print(f"worker Python: {python}")
    print("restart GIMP; the filter is Filters > Artistic > Neural Style (ONNX)…")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    removed = 0
    for gimp_dir in _chosen_dirs(args):
        folder = plugin_folder(gimp_dir)
        if folder.parent.is_dir():
            _remove_leftovers(folder)
        if folder.is_dir():
            shutil.rmtree(folder)
            print(f"removed {folder}")
            removed += 1
    if not removed:
        print("the onnxstyle plug-in is not installed in any GIMP 3 profile found")
    return 0


def probe_worker(command: list[str]) -> tuple[list[str], str | None]:
    """Hello and link timings through the worker command: (report lines, problem or None)."""
    try:
        with WorkerClient(command) as worker:
            info = worker.hello()
            round_trip = min(worker.ping() for _ in range(3))
            upload = worker.ping(upload=LINK_TEST_BYTES)
            download = worker.ping(download=LINK_TEST_BYTES)
    except WorkerError as exc:
        return [], str(exc)
    mb = LINK_TEST_BYTES / 1e6
    lines = [
        f"worker: onnxstyle {info.onnxstyle}, protocol {info.protocol}, Python {info.python}",
        f"ONNX Runtime providers: {', '.join(info.providers) or 'none: onnxruntime missing'}",
        "files: "
        + (
            "shared (pixels travel as temporary files)"
            if info.files
            else "not shared (pixels travel over the link)"
        ),
        "devices:",
        *(
            f"  {row.get('device', '?'):<9} "
            + ("available" if row.get("available") else f"unavailable: {row.get('reason')}")
            for row in info.devices
        ),
        f"link: round trip {round_trip * 1e3:.1f} ms, upload {mb / max(upload, 1e-9):.0f} MB/s, "
        f"download {mb / max(download, 1e-9):.0f} MB/s ({mb:.0f} MB each way)",
    ]
    if not any(row.get("available") for row in info.devices):
        return lines, "onnxruntime missing"
    return lines, None


def _recorded(folder: Path) -> list[str] | None:
    """The worker command recorded in a plug-in folder (older records: python and args)."""
    try:
        record = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        return worker_command(
            record.get("command") or [record["python"], *record.get("args", WORKER_ARGS)]
        )
    except (OSError, ValueError, KeyError, TypeError, WorkerError):
        return None


def cmd_doctor(args: argparse.Namespace) -> int:
    """What is installed where, and what to fix; exit 0 when a working setup was found."""
    problems: list[str] = []
    print(f"this Python: {sys.executable}")
    try:
        print(f"plug-in source: {plugin_source()}")
    except InstallError as exc:
        problems.append(str(exc))
    dirs = _chosen_dirs(args)
    if os.environ.get("GIMP3_DIRECTORY") and not args.gimp_dir:
        print(f"GIMP3_DIRECTORY is set: only {dirs[0]} is used")
    if not dirs:
        problems.append(
            "no GIMP 3 profile folder found: start GIMP 3 once, then run `onnxstyle gimp install`"
        )
    working = 0
    for gimp_dir in dirs:
        folder = plugin_folder(gimp_dir)
        plugin = folder / f"{PLUGIN_NAME}.py"
        print(f"GIMP profile: {gimp_dir}{' (Flatpak)' if is_flatpak(gimp_dir) else ''}")
        if not plugin.is_file():
            print("  plug-in: not installed")
            problems.append(f"plug-in missing in {gimp_dir}: run `onnxstyle gimp install`")
            continue
        current = _same_as_source(folder)
        print(
            f"  plug-in: {plugin}{'' if current else ' (differs from this onnxstyle: reinstall)'}"
        )
        if not current:
            problems.append(
                f"plug-in in {gimp_dir} is from another onnxstyle version: run `onnxstyle gimp install`"
            )
        if os.name != "nt" and not os.access(plugin, os.X_OK):
            problems.append(f"{plugin} is not executable: run `onnxstyle gimp install`")
        command = _recorded(folder)
        if command is None:
            print("  worker command: not recorded")
            problems.append(f"no worker record in {folder}: run `onnxstyle gimp install`")
            continue
        print(f"  worker command: {shlex.join(command)}")
        lines, problem = probe_worker(command)
        for line in lines:
            print(f"  {line}")
        if problem:
            print(f"  worker: NOT working: {problem}")
            problems.append(_advice(command, problem))
            continue
        working += 1
    if problems:
        print("to fix:")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("all good")
    return 0 if working and not problems else 1


def _advice(command: list[str], problem: str) -> str:
    """What to do when the recorded worker command doesn't work."""
    if problem == "onnxruntime missing":
        where = "where the worker runs" if is_ssh(command) else f"for {command[0]}"
        return f'onnxruntime missing {where}: pip install "onnxstyle[cpu]" (or [cuda]) there'
    if is_ssh(command):
        return (
            f"the worker command failed ({problem}): check that `{shlex.join(command)}` runs "
            "without asking for a password (ssh keys or an agent) and that onnxstyle is installed "
            "there, then rerun `onnxstyle gimp install --worker ...`"
        )
    return (
        f'the worker command failed ({problem}): `"{command[0]}" -m pip install '
        '"onnxstyle[cpu]"` or rerun `onnxstyle gimp install` from a Python that has onnxstyle'
    )


def _same_as_source(folder: Path) -> bool:
    """The installed folder holds exactly this onnxstyle's modules."""
    try:
        files = plugin_files()
        installed = sorted(p.name for p in folder.glob("*.py"))
        return installed == [p.name for p in files] and all(
            (folder / p.name).read_bytes() == p.read_bytes() for p in files
        )
    except (OSError, InstallError):
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxstyle gimp", description="Install the GIMP 3 plug-in."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        (
            "install",
            "copy the plug-in into every GIMP 3 profile found (or --gimp-dir) and record this Python",
        ),
        ("uninstall", "remove the plug-in"),
        ("doctor", "show what is installed and what to fix"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--gimp-dir", metavar="DIR", help="a GIMP 3 profile folder (like GIMP3_DIRECTORY)"
        )
        if name == "install":
            p.add_argument(
                "--worker",
                metavar="CMD",
                help="the command that starts the worker, e.g. 'ssh gpu-box /venv/bin/python -m "
                "onnxstyle.plugin.worker' for a GPU on another machine (default: this Python)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse has printed it
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler = {"install": cmd_install, "uninstall": cmd_uninstall, "doctor": cmd_doctor}[
        args.command
    ]
    try:
        return handler(args)
    except (InstallError, WorkerError) as exc:
        print(f"onnxstyle gimp: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"onnxstyle gimp: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
