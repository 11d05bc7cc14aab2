"""Which pictures a batch reads, and where each result goes (`onnxstyle batch`, commands/batch.py).

Inputs are files, folders (their pictures, sub-folders included) and globs; each result goes to
OUT_DIR under the input's name — its path within a folder or below a glob's fixed part — in the
input's format or `--format`'s. An output folder that an input would read again is refused.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from onnxstyle.core.errors import StyleError
from onnxstyle.core.files import same_file
from onnxstyle.core.imageio import FORMATS


@dataclass
class Picture:
    """One input and its result's path; `problem` when it can't be done (its summary line)."""

    source: Path
    output: Path
    size: tuple[int, int] = (0, 0)  # work size (h, w)
    longers: tuple[int, ...] = ()
    problem: str | None = None
    state: str = "to do"  # to do, done, skipped, failed
    seconds: float | None = None
    node: str = ""
    note: str = ""


def expand(spec: str) -> tuple[Path, list[Path]]:
    """An INPUT as (its root, the pictures it names): a file is its own root's child; a folder's
    pictures are found below it; a glob's matches are named below its fixed part."""
    path = Path(spec)
    if glob.has_magic(spec):
        root = Path(*[part for part in _fixed_parts(spec)]) if _fixed_parts(spec) else Path(".")
        files = sorted(
            Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file() and _visible(m)
        )
        return root, files
    if path.is_dir():
        files = sorted(
            f
            for f in path.rglob("*")
            if f.is_file() and f.suffix.lower() in FORMATS and _visible(f.relative_to(path))
        )
        return path, files
    return path.parent, [path]


def _fixed_parts(spec: str) -> list[str]:
    parts = []
    for part in Path(spec).parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return parts


def _visible(path: str | Path) -> bool:
    """Not a hidden file or in a hidden folder (write_atomic's temporary files are hidden)."""
    return not any(part.startswith(".") and part not in (".", "..") for part in Path(path).parts)


def _glob_matches(pattern: str, path: Path) -> bool:
    """Whether glob.glob(pattern, recursive=True) would return `path` (if it existed): component by
    component, `**` spanning folders, `*` not."""
    pat = Path(os.path.abspath(pattern)).parts
    parts = Path(os.path.abspath(path)).parts

    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i]) and match(i + 1, j + 1)

    return match(0, 0)


def plan(specs: list[str], out_dir: Path, fmt: str | None) -> list[Picture]:
    """Every picture of the INPUTs with its result's path. Refused before any work (StyleError):
    an output folder that the inputs would read again on a rerun."""
    pictures: list[Picture] = []
    seen: dict[str, Picture] = {}
    for spec in specs:
        root, files = expand(spec)
        _check_out_dir(spec, out_dir)
        if not files:
            pictures.append(
                Picture(Path(spec), out_dir, problem="no such file, or no picture in it")
            )
            continue
        for file in files:
            relative = file.relative_to(root) if file.is_relative_to(root) else Path(file.name)
            output = out_dir / relative
            if fmt is not None:
                output = output.with_suffix("." + fmt)
            picture = Picture(file, output)
            key = os.path.realpath(file)
            if key in seen:
                continue  # the same picture named twice
            seen[key] = picture
            if output.suffix.lower() not in FORMATS:
                picture.problem = f"can't write {output.suffix or 'no extension'}: give --format"
            clash = next((p for p in pictures if p.output == output), None)
            if clash is not None:
                picture.problem = f"has the same result name as {clash.source}"
            pictures.append(picture)
    for picture in pictures:
        for spec in specs:
            if glob.has_magic(spec) and _glob_matches(spec, picture.output):
                raise StyleError(
                    f"the result {picture.output} would be read again as an input by {spec!r}; "
                    "choose an output folder outside it"
                )
    return pictures


def _check_out_dir(spec: str, out_dir: Path) -> None:
    path = Path(spec)
    if glob.has_magic(spec) or not path.exists():
        return
    if path.is_file() and same_file(path, out_dir):
        raise StyleError(f"the output folder {out_dir} is the input {spec}; choose another -o")
    if path.is_dir():
        inside = Path(os.path.realpath(out_dir)).is_relative_to(os.path.realpath(path))
        if inside:
            raise StyleError(
                f"the output folder {out_dir} is inside the input folder {spec}, whose pictures "
                "are read again on a rerun; choose an output folder outside it"
            )
