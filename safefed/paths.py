"""Where things live: the user cache and the YAML asset folders (repo checkout or wheel)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError
from .safeio import regular_file

_PKG = Path(__file__).resolve().parent
ASSET_KINDS = ("eval", "filters", "constitutions", "demos")


def cache_dir(*parts: str) -> Path:
    """``$SAFEFED_CACHE`` (default ``~/.cache/safefed``) joined with ``parts``; created on demand."""
    root = Path(os.environ.get("SAFEFED_CACHE") or Path.home() / ".cache" / "safefed").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def portable(path: str | os.PathLike) -> str:
    """A path as reports record it, without this machine's layout: shipped assets and artifacts relative
    to the package (``constitutions/default.yaml``), the cache as ``$SAFEFED_CACHE/...``, the home folder
    as ``~/...``; anything else as given."""
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except OSError:
        return str(path)
    cache = Path(os.environ.get("SAFEFED_CACHE") or Path.home() / ".cache" / "safefed").expanduser().resolve()
    roots = [(base, "") for base in (_PKG / "_assets", _PKG.parent) if base.is_dir()]
    for base, prefix in [(cache, "$SAFEFED_CACHE/"), (_PKG, "safefed/"), *roots, (Path.home().resolve(), "~/")]:
        if p == base or base in p.parents:
            return prefix + str(p.relative_to(base))
    return str(path)


def assets_dir(kind: str) -> Path:
    """Folder of shipped YAML files of ``kind``: inside the wheel, else the source checkout's top level."""
    if kind not in ASSET_KINDS:
        raise ValueError(f"unknown asset kind {kind!r}")
    for candidate in (_PKG / "_assets" / kind, _PKG.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"safefed asset folder {kind!r} is missing from the installation")


def shipped_names(kind: str) -> list[str]:
    """Names of the shipped YAML files of ``kind`` (without extension)."""
    return sorted(p.stem for p in assets_dir(kind).glob("*.yaml"))


def find_asset(kind: str, name_or_path: str | os.PathLike) -> Path:
    """Resolve a shipped asset by name (``default``) or a user's file by path."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        regular_file(path)  # not a folder, FIFO or device
        return path
    shipped = assets_dir(kind) / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_names(kind))
    raise UserError(f"{name_or_path}: not a file and not a shipped {kind} name (shipped: {names})")
