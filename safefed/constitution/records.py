"""Records in and out of the revise step: JSONL/JSON/CSV files or a data set by name; the output files.

Input problems that make a file unreadable exit 2 as ``FILE:ROW: what is wrong``; a record that only
lacks a field is passed on (the engine revises it from its prompt alone or quarantines it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from ..data import REGISTRY, content_hash, load
from ..errors import UserError
from ..splits import sample
from .engine import ReviseResult

# data sets whose natural response field is not ``response``
DATASET_FIELDS = {"hh-rlhf-harmless-base": ("last_prompt", "rejected")}
# rows a data set contributes: hh-rlhf's multi-turn rows need the whole transcript as context, so only
# single-turn rows are read; their `rejected` reply is the harmful candidate (the less harmless of two)
DATASET_ROWS: dict[str, Callable[[dict], bool]] = {"hh-rlhf-harmless-base": lambda r: r["n_user_turns"] == 1}
MAX_INPUT_BYTES = 2_000_000_000


def _read_file(path: Path) -> list[dict]:
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise UserError(f"{path}:1: file larger than {MAX_INPUT_BYTES} bytes")
    suffix = path.suffix.lower()
    problems: list[str] = []
    rows: list[dict] = []
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                rows = [dict(r) for r in csv.DictReader(fh)]
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise UserError(f"{path}:1: expected a JSON list of objects")
            rows = data
        else:
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        problems.append(f"{path}:{n}: invalid JSON ({exc.msg})")
                        continue
                    if not isinstance(row, dict):
                        problems.append(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                        continue
                    row.setdefault("_row", n)
                    rows.append(row)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}:1: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if problems:
        more = [f"{path}: … and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise UserError(*problems[:20], *more)
    return rows


def _split(source: str, rows: list[dict], split: str) -> list[dict]:
    """The project's named split of a data set (hh-rlhf: ``filter-train`` / ``client-data``)."""
    from .. import splits

    if source == "hh-rlhf-harmless-base" and hasattr(splits, "hh_halves"):
        halves = splits.hh_halves(rows)
        if split in halves:
            return halves[split].records
        raise UserError(f"--split {split!r}: hh-rlhf-harmless-base has {', '.join(halves)}")
    try:
        return splits.split_records(source, rows, split).records
    except ValueError as exc:
        raise UserError(f"--split {split!r}: {exc}") from None


def read_records(source: str, *, data_dir: str | Path | None = None, prompt_field: str | None = None,
                 response_field: str | None = None, limit: int | None = None, seed: int = 0,
                 split: str | None = None) -> tuple[list[dict], dict]:
    """Records with ``id``, ``prompt``, ``response`` (maybe missing) and any other fields; plus provenance."""
    path = Path(source).expanduser()
    if path.is_file():
        rows, origin = _read_file(path), {"file": str(path)}
        stem = path.stem
    elif source in REGISTRY:
        rows, origin, stem = load(source, data_dir), {"dataset": source}, source
        if split not in (None, "all"):
            rows = _split(source, rows, split)
            origin["split"] = split
        keep = DATASET_ROWS.get(source)
        if keep is not None:
            rows = [r for r in rows if keep(r)]
            origin["rows"] = "single-turn rows only"
    else:
        raise UserError(f"{source}: no such file and not a data set name (known: {', '.join(REGISTRY)})")
    pf, rf = DATASET_FIELDS.get(source, ("prompt", "response"))
    pf, rf = prompt_field or pf, response_field or rf
    out = []
    for i, row in enumerate(rows):
        rec = dict(row)
        rec["id"] = str(row.get("id", f"{stem}-{row.get('_row', i + 1)}"))
        rec["prompt"] = row.get(pf)
        rec["response"] = row.get(rf)
        out.append(rec)
    out = sample(out, limit, seed)
    prov = {**origin, "prompt_field": pf, "response_field": rf, "n": len(out), "limit": limit, "seed": seed,
            "content_hash": content_hash(out, ("id", "prompt", "response"))}
    return out, prov


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_outputs(result: ReviseResult, out: Path, extra: dict | None = None) -> dict:
    """``revised.jsonl``, ``sft.jsonl``, ``dpo_pairs.jsonl`` and ``summary.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "revised.jsonl", [r.to_json() for r in result.records])
    kept = [r for r in result.records if r.path != "quarantined" and r.final]
    write_jsonl(out / "sft.jsonl", [{"id": r.id, "prompt": r.prompt, "response": r.final, "path": r.path}
                                    for r in kept])
    pairs = [{"id": r.id, "prompt": r.prompt, "chosen": r.final, "rejected": r.original, "path": r.path}
             for r in kept if r.original and r.final != r.original and not r.final_unsafe]
    write_jsonl(out / "dpo_pairs.jsonl", pairs)
    summary = {**result.summary, **(extra or {}), "files": {"revised": "revised.jsonl", "sft": "sft.jsonl",
                                                            "dpo_pairs": "dpo_pairs.jsonl"},
               "n_sft": len(kept), "n_dpo_pairs": len(pairs)}
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    (out / "summary.json").write_text(text, encoding="utf-8")
    return summary
