"""Records in and out of the revise step: JSONL/JSON/CSV files or a data set by name; the output files.

Files are read by the shared reader (:mod:`safefed.recordio`, the filter's): a file that cannot be read
at all exits 2 as ``FILE:LINE: what is wrong``; a row that cannot be read or whose fields are not text
is passed on marked ``_invalid`` (the engine quarantines it with that reason); a record that only lacks
a response is revised from its prompt alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..data import REGISTRY, content_hash, load
from ..errors import UserError
from ..recordio import FieldNames, dumps, extract, open_source
from ..splits import sample
from .engine import ReviseResult

# data sets whose natural response field is not ``response``
DATASET_FIELDS = {"hh-rlhf-harmless-base": ("last_prompt", "rejected")}
# rows a data set contributes: hh-rlhf's multi-turn rows need the whole transcript as context, so only
# single-turn rows are read; their `rejected` reply is the harmful candidate (the less harmless of two)
DATASET_ROWS: dict[str, Callable[[dict], bool]] = {"hh-rlhf-harmless-base": lambda r: r["n_user_turns"] == 1}
MAX_TEXT_CHARS = 100_000  # a longer prompt or response is an invalid row


def _read_file(path: Path) -> list[dict]:
    """Every row of a JSONL / JSON / CSV / Parquet file through the shared reader; a row that cannot be
    read keeps its reason in ``_invalid`` (the step quarantines it) instead of failing the file."""
    out = []
    for index, (record, problem) in enumerate(open_source(path), 1):
        if isinstance(record, dict) and problem is None:
            out.append({**record, "_row": index})
        else:
            why = problem or f"record is {type(record).__name__}, expected an object"
            out.append({"_record": record, "_row": index, "_invalid": why})
    return out


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
    fields = FieldNames(prompt=[pf], response=[rf])
    out = []
    for i, row in enumerate(rows):
        rec = dict(row)
        rid = row.get("id")
        rec["id"] = str(rid) if isinstance(rid, (str, int)) else f"{stem}-{row.get('_row', i + 1)}"
        problem = row.get("_invalid")
        if problem is None:
            checked = extract(i + 1, row, fields, max_chars=MAX_TEXT_CHARS)
            problem = checked.problem
            rec["prompt"], rec["response"] = (None, None) if problem else (checked.prompt, checked.response)
        if problem is not None:
            rec["_invalid"] = problem if problem.startswith("invalid") else f"invalid: {problem}"
        out.append(rec)
    out = sample(out, limit, seed)
    prov = {**origin, "prompt_field": pf, "response_field": rf, "n": len(out), "limit": limit, "seed": seed,
            "content_hash": content_hash(out, ("id", "prompt", "response"))}
    return out, prov


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(dumps(r) + "\n")


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
