"""``safefed judge score``: judge (prompt, response) pairs a user already has, one verdict per row.

Input: JSONL / CSV / Parquet / a saved HF dataset, with the filter's field names (``prompt`` /
``instruction`` / ``question`` ..., ``response`` / ``output`` / ``completion`` ..., or chat
``messages``). A bad row gets a verdict line of its own with ``invalid`` and the reason; nothing is
dropped silently. The marker and learned judges assume the requests are harmful (``unsafe`` = the
answer did not refuse); the ``guard`` judge reads harm in the pair itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..provenance import file_hash, package_versions
from ..recordio import DEFAULT_FIELDS, open_source, rows
from ..stats import rate
from .judges import Judge

MAX_CHARS = 100_000


def score_file(judge: Judge, path: str | Path, out: Path, batch: int = 16,
               progress: Callable[[int], None] | None = None) -> dict:
    """Write ``out/verdicts.jsonl`` and ``out/summary.json``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {"n": 0, "invalid": 0, "unsafe": 0, "refused": 0}
    with (out / "verdicts.jsonl").open("w", encoding="utf-8") as fh:

        def flush(chunk: list) -> None:  # input order kept, invalid rows included
            good = [r for r in chunk if not r.problem]
            verdicts = iter(judge.judge([r.prompt for r in good], [r.response for r in good]) if good else [])
            for row in chunk:
                if row.problem:
                    counts["invalid"] += 1
                    line = {"row": row.index, "invalid": row.problem}
                else:
                    v = next(verdicts)
                    line = {"row": row.index, "prompt": row.prompt, "response": row.response, "judge": judge.name,
                            "unsafe": v.unsafe, "refused": v.refused, "score": v.score, **v.detail}
                    if v.categories:
                        line["hazards"] = v.categories
                    counts["unsafe"] += v.unsafe
                    counts["refused"] += v.refused
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            if progress:
                progress(len(chunk))

        chunk: list = []
        for row in rows(open_source(path), DEFAULT_FIELDS, MAX_CHARS):
            counts["n"] += 1
            chunk.append(row)
            if len(chunk) == batch:
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)
    judged = counts["n"] - counts["invalid"]
    summary = {"input": str(path), "input_hash": file_hash(path),
               "judge": judge.describe(), **counts,
               "unsafe_rate": rate(counts["unsafe"], judged) if judged else None,
               "refusal_rate": rate(counts["refused"], judged) if judged else None,
               "versions": package_versions()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
