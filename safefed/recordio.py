"""Training records in and out: one set of streamed readers for every input kind, field extraction,
validation. The filter (``safefed filter``) and the revise step (``safefed revise``) both read through
:func:`open_source` and :func:`extract`, so a file means the same thing to each.

Each input row becomes a :class:`Row`: its position, the original record (every field kept; a line
that is not JSON is kept as ``{"_raw": …}``), the prompt and response texts, and ``problem`` when
the row is invalid (it then goes to quarantine with reason ``invalid: …``; nothing ever crashes on a
bad row). Readers yield rows one at a time, so a JSONL of a million rows is never loaded at once; a
``.json`` file that holds one JSON array (pretty-printed or not) is read whole, up to
``MAX_JSON_BYTES``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import UserError
from .safeio import read_bounded, regular_file

MAX_LINE_BYTES = 64 * 2**20  # a longer JSONL line is an invalid row, read past without holding it
MAX_JSON_BYTES = 512 * 2**20  # a .json array is parsed whole


class Fields(Protocol):
    """Which record keys hold the prompt and the response (the first one present wins)."""

    prompt: list[str]
    response: list[str]
    messages: str | None


PROMPT_KEYS = ("prompt", "instruction", "question", "input", "goal")
RESPONSE_KEYS = ("response", "output", "answer", "completion")


@dataclass(frozen=True)
class FieldNames:
    """A plain :class:`Fields` (the filter's policy has its own, validated from YAML)."""

    prompt: list[str]
    response: list[str]
    messages: str | None = None


DEFAULT_FIELDS = FieldNames(list(PROMPT_KEYS), list(RESPONSE_KEYS), "messages")


@dataclass
class Row:
    """One input row; ``problem`` is set when it is invalid (then prompt/response are empty)."""

    index: int  # 1-based position in the input
    record: Any
    prompt: str = ""
    response: str = ""
    problem: str | None = None


def _text(record: dict, keys: list[str], max_chars: int) -> tuple[str | None, str | None, str | None]:
    """(key used, text, problem) for the first of ``keys`` present in ``record``."""
    for key in keys:
        if key in record and record[key] is not None:
            value = record[key]
            if not isinstance(value, str):
                return key, None, f"field {key!r} is {type(value).__name__}, expected text"
            return key, value, _check(key, value, max_chars)
    return None, None, None


def _check(key: str, value: str, max_chars: int) -> str | None:
    if len(value) > max_chars:
        return f"field {key!r} has {len(value)} characters (more than max_chars {max_chars})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"field {key!r} is not valid UTF-8 text"
    return None


def _from_messages(messages: Any, max_chars: int) -> tuple[str, str, str | None]:
    """(last user turn before the final assistant turn, final assistant turn, problem)."""
    if not isinstance(messages, list) or not messages:
        return "", "", "field 'messages' must be a non-empty list of {role, content}"
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            return "", "", f"messages[{i}] must be an object with text 'role' and 'content'"
        problem = _check(f"messages[{i}].content", m["content"], max_chars)
        if problem:
            return "", "", problem
    response = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
    before = messages[:-1] if response else messages
    users = [m["content"] for m in before if m["role"] == "user"]
    return (users[-1] if users else ""), response, None


def extract(index: int, record: Any, fields: Fields, max_chars: int) -> Row:
    """Validate one record and pull out its prompt and response."""
    if not isinstance(record, dict):
        return Row(index, record, problem=f"record is {type(record).__name__}, expected an object")
    if fields.messages and record.get(fields.messages) is not None:
        prompt, response, problem = _from_messages(record[fields.messages], max_chars)
        if problem:
            return Row(index, record, problem=problem)
    else:
        pkey, prompt, problem = _text(record, fields.prompt, max_chars)
        rkey, response, rproblem = _text(record, fields.response, max_chars)
        problem = problem or rproblem
        if problem:
            return Row(index, record, problem=problem)
        if pkey is None and rkey is None:
            looked = ", ".join(
                fields.prompt + fields.response + ([fields.messages] if fields.messages else [])
            )
            return Row(index, record, problem=f"no prompt or response field (looked for {looked})")
        prompt, response = prompt or "", response or ""
        extra = record.get("input") if pkey == "instruction" else None
        if isinstance(extra, str) and extra.strip():  # Alpaca: the instruction and its input are one request
            prompt = f"{prompt}\n\n{extra}"
    if not prompt.strip():  # a response with no request is not a training pair either
        return Row(index, record, problem="empty text" if not response.strip() else "empty prompt")
    return Row(index, record, prompt, response)


# --- readers -----------------------------------------------------------------------------------


def _lines(fh) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line; ``None`` for a line longer than ``MAX_LINE_BYTES`` (skipped)."""
    n = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (more := fh.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                pass
            yield n, None
            continue
        yield n, raw


def _jsonl(path: Path) -> Iterator[tuple[Any, str | None]]:
    with path.open("rb") as fh:
        for n, raw in _lines(fh):
            if raw is None:
                yield {"_line": n}, f"line {n} is longer than {MAX_LINE_BYTES} bytes"
                continue
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    {"_raw": raw.decode("utf-8", "replace").rstrip("\r\n"), "_line": n},
                    f"line {n} is not valid UTF-8 (byte {exc.start})",
                )
                continue
            try:
                yield json.loads(line), None
            except json.JSONDecodeError as exc:
                yield {"_raw": line.rstrip("\r\n"), "_line": n}, f"line {n} is not valid JSON ({exc.msg})"
            except RecursionError:
                yield {"_raw": line[:1000], "_line": n}, f"line {n} is nested too deeply"


def _starts_array(path: Path) -> bool:
    """A ``.json`` file whose first non-blank character is ``[``: one JSON array, not JSON lines."""
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] == b"["


def _json_array(path: Path) -> Iterator[tuple[Any, str | None]]:
    raw = read_bounded(path, MAX_JSON_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise UserError(f"{path}:1: JSON nested too deeply") from None
    if not isinstance(data, list):
        raise UserError(f"{path}:1: expected a JSON array of objects")
    for item in data:
        yield item, None


def _csv(path: Path) -> Iterator[tuple[Any, str | None]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # invalid bytes become lone surrogates, which field validation reports as "not valid UTF-8"
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.DictReader(fh)
        try:
            for record in reader:
                if None in record:
                    extra = record.pop(None)
                    yield (
                        {**record, "_extra": extra},
                        f"line {reader.line_num} has more columns than the header",
                    )
                elif any(v is None for v in record.values()):
                    yield record, f"line {reader.line_num} has fewer columns than the header"
                else:
                    yield record, None
        except csv.Error as exc:
            yield {"_line": reader.line_num}, f"line {reader.line_num} is not valid CSV ({exc})"


def _batches_of_dicts(batches: Iterable[dict[str, list]]) -> Iterator[tuple[Any, str | None]]:
    for batch in batches:
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        for i in range(n):
            yield {k: batch[k][i] for k in keys}, None


def _parquet(path: Path) -> Iterator[tuple[Any, str | None]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield record, None


def _hf_disk(path: Path) -> Iterator[tuple[Any, str | None]]:
    from datasets import load_from_disk

    ds = load_from_disk(str(path))
    if hasattr(ds, "keys") and not hasattr(ds, "iter"):
        raise UserError(f"{path}: a DatasetDict ({', '.join(ds.keys())}); give the folder of one split")
    yield from _batches_of_dicts(ds.iter(batch_size=1024))


def open_source(path: str | Path) -> Iterator[tuple[Any, str | None]]:
    """(record, problem) pairs from a JSONL / CSV / Parquet file or a saved HF dataset folder, streamed."""
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return _hf_disk(path)
        raise UserError(f"{path}: a folder, but not a saved Hugging Face dataset (no dataset_info.json)")
    regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".json" and _starts_array(path):
        return _json_array(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(path)
    if suffix == ".csv":
        return _csv(path)
    if suffix in (".parquet", ".pq"):
        return _parquet(path)
    raise UserError(
        f"{path}: unknown input format {suffix!r} (use .jsonl, .csv, .parquet or a saved HF dataset)"
    )


def rows(source: Iterable[tuple[Any, str | None]], fields: Fields, max_chars: int) -> Iterator[Row]:
    """Validated rows, numbered from 1, in input order."""
    for index, (record, problem) in enumerate(source, 1):
        yield Row(index, record, problem=problem) if problem else extract(index, record, fields, max_chars)


def count_lines(path: Path) -> int | None:
    """Non-blank lines of a JSONL file (a cheap total for progress bars); None for other inputs."""
    if not path.is_file() or path.suffix.lower() not in (".jsonl", ".ndjson", ".json") or _starts_array(path):
        return None
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            n += bool(line.strip())
    return n


def dumps(record: Any) -> str:
    """One JSONL line (non-JSON values such as dates or bytes written with ``str``)."""
    line = json.dumps(record, ensure_ascii=False, default=str)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (bad bytes kept from the input): escape them
        line = json.dumps(record, ensure_ascii=True, default=str)
    return line
