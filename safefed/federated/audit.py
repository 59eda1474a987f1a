"""Append-only JSONL audit log: one decision per line, ``round`` and ``attempt`` on every line.

A ``round_complete`` line closes a round. A resumed run starts a new attempt of an unfinished round,
so no decision is silently counted twice and no line is ever rewritten. Each line is written with one
``os.write`` on an ``O_APPEND`` descriptor and fsync'd, so a killed run leaves at most one torn last
line, which readers skip and the next writer terminates before appending.

Several runs may share one file (the demo's arms): ``tags`` (e.g. ``{"arm": "gate"}``) go on every
line a log writes, and its rounds and attempts count only lines that carry the same tags.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def read_audit(path: str | Path) -> list[dict]:
    """All complete lines of an audit log (a torn last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class AuditLog:
    """Appends decisions for rounds; knows which rounds are complete and which attempt this is."""

    def __init__(self, path: str | Path, tags: dict | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tags = dict(tags or {})
        self._attempts: dict[int, int] = {}

    def _mine(self) -> list[dict]:
        return [r for r in read_audit(self.path) if all(r.get(k) == v for k, v in self.tags.items())]

    def completed_rounds(self) -> set[int]:
        return {int(r["round"]) for r in self._mine() if r.get("event") == "round_complete"}

    def attempt(self, round_: int) -> int:
        """The attempt number for ``round_`` in this run: one more than any earlier attempt's."""
        if round_ not in self._attempts:
            seen = [int(r.get("attempt", 0)) for r in self._mine() if r.get("round") == round_]
            self._attempts[round_] = max(seen, default=0) + 1
        return self._attempts[round_]

    def write(self, round_: int, event: str, **fields) -> dict:
        row = {**self.tags, "round": round_, "attempt": self.attempt(round_), "event": event,
               "time": round(time.time(), 3), **fields}
        data = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size and not self._ends_with_newline():
                data = b"\n" + data  # terminate a torn line left by a killed run; never rewrite it
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return row

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def decision(self, round_: int, **fields) -> dict:
        return self.write(round_, "decision", **fields)

    def complete(self, round_: int, **fields) -> dict:
        return self.write(round_, "round_complete", **fields)
