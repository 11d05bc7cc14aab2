"""Files written whole or not at all: the one atomic-write helper of the CLI, the worker, the
exporter and the GIMP installer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, or a function writing to a binary file) to `path`, whole or not at all.

    The data goes to a new temporary file beside `path` (mkstemp: O_EXCL, so never through a link
    planted at a predictable name), is synced, gets `path`'s permissions (open()'s default for a new
    file) and is renamed over `path`. On any failure, KeyboardInterrupt included, the temporary file
    is removed and the error raised again (OSError for the file system's own)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, _new_file_mode(path))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return path


def _new_file_mode(path: Path) -> int:
    """Keep an existing file's permissions; otherwise what open() would give (mkstemp uses 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
