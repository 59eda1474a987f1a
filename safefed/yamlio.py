"""Hardened YAML loading with line numbers, and schema validation that reports ``FILE:LINE: problem``.

Stricter than ``yaml.safe_load``: only regular files are read, their size capped before parsing,
aliases are rejected (no alias bombs), nesting depth and node count are bounded, only the standard
scalar tags are accepted, duplicate keys are errors, and every node keeps its line so schema errors
point at the right place.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import UserError
from .safeio import read_bounded

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 200_000
_SAFE_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}

Path_ = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases and bounds depth and size."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Problem(event.start_mark.line + 1, "aliases (*name) are not allowed")
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise _Problem(self.peek_event().start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
        if self._nodes > MAX_NODES:
            raise _Problem(self.peek_event().start_mark.line + 1, f"more than {MAX_NODES} nodes")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Problem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _build(loader: _Loader, node: yaml.Node, path: Path_, marks: dict[Path_, int]) -> Any:
    marks[path] = node.start_mark.line + 1
    if node.tag not in _SAFE_TAGS:
        raise _Problem(node.start_mark.line + 1, f"tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(loader, key_node, (*path, "<key>"), marks)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise _Problem(key_node.start_mark.line + 1, "mapping keys must be plain scalars")
            if key in out:
                raise _Problem(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _build(loader, value_node, (*path, key), marks)
            marks[(*path, key)] = key_node.start_mark.line + 1
            marks[(*path, key, "<value>")] = value_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), marks) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: str | Path) -> tuple[Any, dict[Path_, int]]:
    """Parse ``path`` safely; returns the data and a map from key path to line number."""
    path = Path(path)
    raw = read_bounded(path, MAX_BYTES, "YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    loader = _Loader(text)
    marks: dict[Path_, int] = {}
    try:
        node = loader.get_single_node()
        data = None if node is None else _build(loader, node, (), marks)
    except _Problem as exc:
        raise UserError(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise UserError(f"{path}:{line}: {exc.problem or exc.context or 'invalid YAML'}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}:1: invalid YAML ({exc})") from None
    finally:
        loader.dispose()
    return data, marks


def _line_for(loc: tuple[Any, ...], marks: Mapping[Path_, int]) -> int:
    loc = tuple(loc)
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return marks.get((), 1)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc``, for "did you mean" suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            break
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ()) or (annotation,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            inner = [b for a in args for b in getattr(a, "__args__", ())]
            nested = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        current = nested[0] if nested else None
    return list(getattr(current, "model_fields", {}) or {})


def validate(model: type[M], data: Any, marks: Mapping[Path_, int], source: str | Path) -> M:
    """Validate ``data`` against a pydantic ``model``; every problem becomes ``FILE:LINE: message``."""
    if not isinstance(data, dict):
        raise UserError(f"{source}:1: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "<top>"
            line = _line_for(loc, marks)
            if err["type"] == "extra_forbidden":
                known = _fields_at(model, loc[:-1])
                guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else f" (known keys: {', '.join(known)})"
                problems.append(f"{source}:{line}: unknown key {loc[-1]!r}{hint}")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{source}:{line}: {where}: {msg}")
        raise UserError(*problems) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Load and validate a YAML file into ``model``."""
    data, marks = load_yaml(path)
    return validate(model, data, marks, path)
