"""The safety filter: a policy's scorers run over batches of (prompt, response) pairs; each row gets a
:class:`Decision` (keep / flag / revise / drop, with its scores and reason). Nothing is lost silently:
``kept + quarantined == input`` always, in input order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import recordio as rec
from ..provenance import file_hash, package_versions
from .policy import ACTION_SEVERITY, Policy, load_policy
from .scorers import Scorer, build_scorer

QUARANTINE_ACTIONS = ("drop", "revise")
INVALID = "invalid"


@dataclass
class Decision:
    """What the filter decided about one row."""

    unsafe: bool
    action: str  # keep | flag | revise | drop
    categories: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def quarantined(self) -> bool:
        return self.action in QUARANTINE_ACTIONS

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class FilterResult:
    """``kept`` / ``quarantined`` (lists, DataFrames, Datasets or file paths, like the input) + summary."""

    kept: Any
    quarantined: Any
    summary: dict


def stream_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (or a folder's files, sorted) read in chunks: constant memory on large inputs."""
    import hashlib

    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]


def _invalid(problem: str) -> Decision:
    return Decision(False, "drop", [INVALID], {}, f"invalid: {problem}")


class SafetyFilter:
    """Score training rows with a policy's scorers and decide what happens to each."""

    def __init__(self, policy: Policy, scorers: Sequence[Scorer] | None = None) -> None:
        self.policy = policy
        self.scorers = (
            list(scorers)
            if scorers is not None
            else [build_scorer(s.type, s.options, s.reads, policy) for s in policy.scorers]
        )
        if len(self.scorers) != len(policy.scorers):
            raise ValueError("one scorer per policy scorer entry")

    @classmethod
    def from_yaml(cls, name_or_path: str | Path) -> SafetyFilter:
        """A shipped policy by name (``default``, ``strict``, ...) or a user's YAML by path."""
        return cls(load_policy(name_or_path))

    # --- deciding ------------------------------------------------------------------------------

    def check_pairs(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Decision]:
        """Decisions for (prompt, response) pairs; ``""`` stands for an absent field."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses differ in length")
        if not prompts:
            return []
        per_scorer = [s.score(list(prompts), list(responses)) for s in self.scorers]
        return [self._decide([rows[i] for rows in per_scorer]) for i in range(len(prompts))]

    def _decide(self, rows: list[dict[str, float]]) -> Decision:
        scores: dict[str, dict[str, float]] = {}
        hits: dict[str, float] = {}
        reasons = []
        n_hit = 0
        for spec, scorer, row in zip(self.policy.scorers, self.scorers, rows, strict=True):
            scores[spec.label] = {k: round(float(v), 4) for k, v in row.items()}
            mine = [(c, row[c]) for c in scorer.categories if c in row and row[c] >= spec.threshold(c)]
            if mine:
                n_hit += 1
                reasons.append(
                    f"{spec.label}: "
                    + ", ".join(
                        f"{c} {v:.2f} >= {spec.threshold(c):.2f}"
                        for c, v in sorted(mine, key=lambda x: -x[1])
                    )
                )
            for c, v in mine:
                hits[c] = max(hits.get(c, 0.0), v)
        rule = self.policy.combine
        n = len(self.scorers)
        unsafe = bool(hits) and (
            rule == "any" or (rule == "all" and n_hit == n) or (rule == "majority" and n_hit * 2 > n)
        )
        if not unsafe:
            why = (
                "no scorer above threshold"
                if not hits
                else f"{n_hit}/{n} scorers above threshold ({rule} needed)"
            )
            return Decision(False, "keep", [], scores, why)
        categories = sorted(hits, key=lambda c: -hits[c])
        action = max((self.policy.action(c) for c in categories), key=ACTION_SEVERITY.__getitem__)
        return Decision(True, action, categories, scores, "; ".join(reasons))

    # --- streaming -----------------------------------------------------------------------------

    def decide_rows(self, rows: Iterable[rec.Row]) -> Iterator[tuple[rec.Row, Decision]]:
        """(row, decision) in input order, scoring ``policy.batch_size`` valid rows at a time."""
        batch: list[rec.Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.policy.batch_size:
                yield from self._decide_batch(batch)
                batch = []
        if batch:
            yield from self._decide_batch(batch)

    def _decide_batch(self, batch: list[rec.Row]) -> list[tuple[rec.Row, Decision]]:
        valid = [r for r in batch if r.problem is None]
        decided = iter(self.check_pairs([r.prompt for r in valid], [r.response for r in valid]))
        return [(r, _invalid(r.problem) if r.problem else next(decided)) for r in batch]

    @staticmethod
    def marked(row: rec.Row, decision: Decision) -> Any:
        """The original record plus a ``safefed`` object (records that are not objects are wrapped)."""
        record = row.record if isinstance(row.record, dict) else {"_record": row.record}
        return {**record, "safefed": {"row": row.index, **decision.to_json()}}

    def run(
        self,
        rows: Iterable[rec.Row],
        sink: Callable[[rec.Row, Decision], None],
        progress: Callable[[int], None] | None = None,
    ) -> dict:
        """Stream rows through the filter into ``sink(row, decision)``; returns the summary counts."""
        start = time.perf_counter()
        counts = Counter()
        by_category: Counter = Counter()
        by_action: Counter = Counter()
        since = 0
        for row, d in self.decide_rows(rows):
            counts["input"] += 1
            by_action[d.action] += 1
            by_category.update(d.categories)
            sink(row, d)
            counts["quarantined" if d.quarantined else "kept"] += 1
            counts["flagged"] += d.action == "flag"
            counts["invalid"] += INVALID in d.categories
            since += 1
            if progress and since >= self.policy.batch_size:
                progress(since)
                since = 0
        if progress and since:
            progress(since)
        elapsed = time.perf_counter() - start
        return {
            "input": counts["input"],
            "kept": counts["kept"],
            "quarantined": counts["quarantined"],
            "flagged": counts["flagged"],
            "invalid": counts["invalid"],
            "by_category": dict(by_category.most_common()),
            "by_action": dict(by_action),
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(counts["input"] / elapsed, 1) if elapsed else None,
        }

    def describe(self) -> dict:
        p = self.policy
        return {
            "name": p.name,
            "path": str(p.path) if p.path else None,
            "hash": file_hash(p.path) if p.path else None,
            "combine": p.combine,
            "actions": p.actions,
            "scorers": [
                {**s.describe(), "label": spec.label, "thresholds": spec.thresholds}
                for spec, s in zip(p.scorers, self.scorers, strict=True)
            ],
        }

    # --- the public entry point ----------------------------------------------------------------

    def apply(
        self, data: Any, out: str | Path | None = None, progress: Callable[[int], None] | None = None
    ) -> FilterResult:
        """Filter a list of dicts, a pandas DataFrame, a HF ``datasets.Dataset``, or a file path.

        A path (JSONL, CSV, Parquet, saved HF dataset) is streamed in constant memory into
        ``out/kept.jsonl``, ``out/quarantine.jsonl`` and ``out/summary.json``; the other inputs return
        objects of their own kind.
        """
        if isinstance(data, (str, Path)):
            if out is None:
                raise ValueError(
                    "filtering a file needs `out`, the folder for kept.jsonl and quarantine.jsonl"
                )
            return self.apply_file(data, out, progress)
        kind = type(data).__module__.split(".")[0]
        if kind == "pandas":
            return self._apply_dataframe(data, progress)
        if kind == "datasets":
            return self._apply_dataset(data)
        kept: list = []
        quarantined: list = []

        def sink(row: rec.Row, d: Decision) -> None:
            if d.quarantined:
                quarantined.append(self.marked(row, d))
            else:
                kept.append(self.marked(row, d) if d.action == "flag" else row.record)

        source = ((r, None) for r in data)
        summary = self.run(rec.rows(source, self.policy.fields, self.policy.max_chars), sink, progress)
        return FilterResult(kept, quarantined, self._summary(summary, "records"))

    def output(self, row: rec.Row, d: Decision) -> Any:
        """What goes to kept.jsonl (the record as it was; marked when flagged) or quarantine.jsonl."""
        return self.marked(row, d) if d.quarantined or d.action == "flag" else row.record

    def _summary(self, counts: dict, source: str, extra: dict | None = None) -> dict:
        return {
            **counts,
            "source": source,
            **(extra or {}),
            "policy": self.describe(),
            "versions": package_versions(),
        }

    def apply_file(
        self, path: str | Path, out: str | Path, progress: Callable[[int], None] | None = None
    ) -> FilterResult:
        """Stream ``path`` into ``out/kept.jsonl``, ``out/quarantine.jsonl`` and ``out/summary.json``.

        ``out`` is checked before anything is read (an input inside it is refused) and the files are
        written into a temporary folder inside it, moved into place only when the run completes.
        """
        import json

        from ..safeio import output_dir

        path, out = Path(path), Path(out)
        source = rec.open_source(path)
        kept_path, q_path = out / "kept.jsonl", out / "quarantine.jsonl"
        with output_dir(out, inputs=[path]) as tmp:
            with (tmp / kept_path.name).open("w", encoding="utf-8") as kf, \
                    (tmp / q_path.name).open("w", encoding="utf-8") as qf:

                def sink(row: rec.Row, d: Decision) -> None:
                    (qf if d.quarantined else kf).write(rec.dumps(self.output(row, d)) + "\n")

                counts = self.run(rec.rows(source, self.policy.fields, self.policy.max_chars), sink, progress)
            summary = self._summary(
                counts,
                str(path),
                {"input_hash": stream_hash(path), "outputs": {"kept": str(kept_path), "quarantine": str(q_path)}},
            )
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
        return FilterResult(kept_path, q_path, summary)

    def _apply_dataframe(self, df, progress) -> FilterResult:
        import pandas as pd

        kept_pos: list[int] = []
        marks: list[Any] = []
        quarantined: list = []

        def sink(row: rec.Row, d: Decision) -> None:
            if d.quarantined:
                quarantined.append(self.marked(row, d))
            else:
                kept_pos.append(row.index - 1)
                marks.append(self.marked(row, d)["safefed"] if d.action == "flag" else None)

        source = ((r, None) for r in df.to_dict("records"))
        counts = self.run(rec.rows(source, self.policy.fields, self.policy.max_chars), sink, progress)
        kept = df.iloc[kept_pos].copy()
        kept["safefed"] = marks
        return FilterResult(kept, pd.DataFrame(quarantined), self._summary(counts, "pandas.DataFrame"))

    def _apply_dataset(self, ds) -> FilterResult:
        """A HF ``datasets.Dataset``: ``map(batched=True)`` adds a ``safefed`` JSON column."""
        import json

        fields, max_chars = self.policy.fields, self.policy.max_chars

        def mark(batch: dict[str, list]) -> dict[str, list]:
            keys = list(batch)
            records = [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))] if keys else []
            rows = [rec.extract(i + 1, r, fields, max_chars) for i, r in enumerate(records)]
            decisions = [d for _, d in self._decide_batch(rows)]
            return {"safefed": [json.dumps(d.to_json()) for d in decisions]}

        start = time.perf_counter()
        marked = ds.map(mark, batched=True, batch_size=self.policy.batch_size, load_from_cache_file=False)
        actions = [json.loads(s)["action"] for s in marked["safefed"]]
        keep_idx = [i for i, a in enumerate(actions) if a not in QUARANTINE_ACTIONS]
        q_idx = [i for i, a in enumerate(actions) if a in QUARANTINE_ACTIONS]
        cats: Counter = Counter()
        for s in marked["safefed"]:
            cats.update(json.loads(s)["categories"])
        elapsed = time.perf_counter() - start
        counts = {
            "input": len(actions),
            "kept": len(keep_idx),
            "quarantined": len(q_idx),
            "flagged": actions.count("flag"),
            "invalid": cats.get(INVALID, 0),
            "by_category": dict(cats.most_common()),
            "by_action": dict(Counter(actions)),
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(len(actions) / elapsed, 1) if elapsed else None,
        }
        return FilterResult(
            marked.select(keep_idx), marked.select(q_idx), self._summary(counts, "datasets.Dataset")
        )
