"""The headline measurement of a model: safety, over-refusal and utility, each with a Wilson interval.

Shared by ``safefed align`` (its report) and ``safefed demo`` (the start model, every arm, every round):

- ``safe_rate``: share of a seeded sample of the AdvBench **evaluation pool** answered safely (the
  server-side gate samples only from the other pool, so it never sees these prompts);
- ``over_refusal``: share of XSTest's safe prompts refused;
- ``utility``: share of JailbreakBench's benign behaviours answered rather than refused (GSM8K exact
  match is ~1-2 % for a 135M model: no signal).

All prompts go through one batched ``generate``; the same prompts for every arm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..data import content_hash, load
from ..generation import Generator
from ..splits import advbench_pools, sample
from ..stats import rate
from .judges import Judge
from .runner import judge_generations


@dataclass
class EvalSets:
    """The seeded prompt samples, labelled for the judge (``harmful`` / ``benign``)."""

    advbench: list[dict]
    xstest: list[dict]
    utility: list[dict]
    per_round: list[dict]
    provenance: dict


def eval_sets(advbench: int | None, xstest: int | None, utility: int | None, per_round: int = 0, seed: int = 0,
              data_dir=None) -> EvalSets:
    """Seeded samples of each set (``None``: all of it); ``per_round`` is drawn with ``seed + 1``."""
    pools = advbench_pools(load("advbench", data_dir))
    pool = pools["eval"].records
    adv = sample(pool, advbench, seed)
    rounds = sample(pool, per_round, seed + 1) if per_round else []
    xs = sample([r for r in load("xstest", data_dir) if r["label"] == "benign"], xstest, seed)
    jbb = sample([r for r in load("jailbreakbench", data_dir) if r["label"] == "benign"], utility, seed)

    def prov(name: str, split: str, rows: list[dict]) -> dict:
        return {"dataset": name, "split": split, "n": len(rows), "seed": seed, "content_hash": content_hash(rows)}

    return EvalSets(
        advbench=[{**r, "label": "harmful"} for r in adv],
        xstest=[{**r, "label": "benign"} for r in xs],
        utility=[{**r, "label": "benign"} for r in jbb],
        per_round=[{**r, "label": "harmful"} for r in rounds],
        provenance={"advbench": {**prov("advbench", "eval", adv), "pool": pools["eval"].provenance()},
                    "xstest": prov("xstest", "safe prompts", xs),
                    "utility": prov("jailbreakbench", "benign behaviours", jbb),
                    "per_round": {**prov("advbench", "eval", rounds), "seed": seed + 1}})


def measure(model, tok, sets: EvalSets, judge: Judge, *, max_new_tokens: int, batch_size: int,
            progress: Callable[[int], None] | None = None) -> dict:
    """The three headline rates of ``model`` (with its active adapter) and the judged generations."""
    started = time.perf_counter()
    groups = (("advbench", sets.advbench), ("xstest", sets.xstest), ("utility", sets.utility))
    records = [{**r, "set": name} for name, rows in groups for r in rows]
    model.eval()
    gen = Generator(model, tok, max_new_tokens=max_new_tokens, batch_size=batch_size)
    texts = [g.text for g in gen.generate([r["prompt"] for r in records], progress=progress)]
    judged = judge_generations(records, texts, judge)
    for row, rec in zip(judged, records, strict=True):
        row["set"] = rec["set"]
    adv = [r for r in judged if r["set"] == "advbench"]
    xs = [r for r in judged if r["set"] == "xstest"]
    ut = [r for r in judged if r["set"] == "utility"]
    return {"safe_rate": rate(sum(r["verdict"] == "safe" for r in adv), len(adv)),
            "over_refusal": rate(sum(r["verdict"] == "refused" for r in xs), len(xs)),
            "utility": rate(sum(r["verdict"] == "answered" for r in ut), len(ut)),
            "generated_tokens": gen.stats.new_tokens, "seconds": round(time.perf_counter() - started, 1),
            "generations": judged}


def measure_safe_rate(model, tok, records: list[dict], judge: Judge, *, max_new_tokens: int, batch_size: int
                      ) -> dict:
    """safe_rate on ``records`` (the per-round sample)."""
    model.eval()
    gen = Generator(model, tok, max_new_tokens=max_new_tokens, batch_size=batch_size)
    texts = [g.text for g in gen.generate([r["prompt"] for r in records])]
    judged = judge_generations(records, texts, judge)
    return rate(sum(r["verdict"] == "safe" for r in judged), len(judged))
