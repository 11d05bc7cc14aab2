"""Files written whole or not at all (the one atomic-write helper of the CLI, the worker, the
exporter and the GIMP installer), and input files opened without surprises."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO


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


class NotRegularFile(OSError):
    """A path that is a FIFO, a device or a socket: reading it could block or never end."""


# O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS |= getattr(os, "O_BINARY", 0)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open an existing regular file for reading (links followed); returns the binary file.

    Raises FileNotFoundError, PermissionError, IsADirectoryError, or NotRegularFile for a FIFO,
    a device (/dev/zero) or a socket, before a byte is read."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode  # of what was opened, not of what the name points to later
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_exactly(file: IO[bytes], size: int) -> bytearray:
    """`size` bytes of `file`, read with that bound; EOFError if the file holds fewer."""
    data = bytearray(size)
    view, done = memoryview(data), 0
    while done < size:
        # typing.IO declares no readinto, though every binary file object (io's, a pipe's) has it
        count = file.readinto(view[done:])  # pyright: ignore[reportAttributeAccessIssue]
        if not count:
            raise EOFError(f"{size - done} bytes short")
        done += count
    return data  # not bytes(data): a second copy of a frame that may be a gigabyte


def write_all(stream: IO[bytes], data: bytes | bytearray | memoryview) -> None:
    """All of `data` to an unbuffered stream (a pipe may take part of a large write)."""
    view = memoryview(data).cast("B")
    while view:
        written = stream.write(view)
        view = view[written if written is not None else 0 :]


def write_problem(path: str | os.PathLike) -> str | None:
    """Why write_atomic(path) would fail before any work is done, or None: the folder is missing or
    not writable, or the path is a folder or something other than a regular file (replacing a
    device or a FIFO's name is never what a caller means)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return f"output folder {folder} does not exist"
    if path.is_dir():
        return "is a folder"
    if path.exists() and not path.is_file():
        return "not a regular file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to folder {folder} (permission denied)"
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two names reach the same file: the same resolved path (links followed, so a name
    that doesn't exist yet counts too), or the same inode (hard links, bind mounts)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them doesn't exist (yet)
        return False
