"""What every report records about how it was made."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from . import __version__

_PACKAGES = ("torch", "transformers", "peft", "flwr", "numpy", "scikit-learn")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"safefed": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (sorted by relative path)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
