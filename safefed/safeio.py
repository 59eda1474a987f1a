"""Paths from users and servers, handled defensively.

Reads: only regular files (a FIFO would hang, ``/dev/zero`` would never end), size checked before and
while reading. Writes: an output folder is checked before any work starts (not a file, creatable,
holding none of the run's inputs) and filled through a temporary folder inside it, so a run that fails
leaves the previous outputs as they were and no run can truncate a file it is reading.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def regular_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """``path``'s stat if it is a regular file; otherwise a one-line :class:`UserError`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: not a regular file (a FIFO, device or socket); give a {what}")
    return st


def read_bounded(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before reading and while reading)."""
    size = regular_file(path, what).st_size
    if size > max_bytes:
        raise UserError(f"{path}:1: file is {size} bytes, more than the {max_bytes} allowed")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise UserError(f"{path}:1: file is more than the {max_bytes} bytes allowed")
    return data


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def check_out_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Create ``out`` (a results folder) or fail now, before any work: not a file, creatable and
    writable, and holding none of ``inputs`` (its outputs would overwrite them)."""
    out = Path(out)
    for inp in inputs:
        if _inside(Path(inp), out):
            raise UserError(f"{inp}: the input is inside the output folder {out}; choose another --out "
                            "(writing there could overwrite the input)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give --out a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".safefed-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return out


def check_out_file(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Fail now, before any work, unless ``out`` can be written as a file: not a folder, not one of
    ``inputs`` (the run would replace what it reads), its folder creatable and writable."""
    out = Path(out)
    for inp in inputs:
        if Path(inp).exists() and out.exists() and os.path.samefile(inp, out):
            raise UserError(f"{out}: is also the input; choose another --out (writing there would replace it)")
    if out.is_dir():
        raise UserError(f"{out}: a folder; give --out a file name")
    check_out_dir(out.parent)
    return out


@contextmanager
def output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Check ``out`` (:func:`check_out_dir`), then yield a temporary folder inside it; on success every
    file written there is moved into ``out`` (replacing older ones), on failure the folder is removed."""
    out = check_out_dir(out, inputs)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".safefed-partial-"))
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            target = out / item.name
            if target.is_dir() and not item.is_dir():
                raise UserError(f"{target}: a folder where an output file goes")
            if item.is_dir() and target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
