"""How the demo measures a global model: safety, over-refusal and utility, each with a Wilson interval.

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
from ..evaluation.judges import Judge
from ..evaluation.runner import judge_generations
from ..generation import Generator
from ..splits import advbench_pools, sample
from ..stats import rate
from .config import Evaluation


@dataclass
class EvalSets:
    """The seeded prompt samples, labelled for the judge (``harmful`` / ``benign``)."""

    advbench: list[dict]
    xstest: list[dict]
    utility: list[dict]
    per_round: list[dict]
    provenance: dict


def eval_sets(ev: Evaluation, data_dir=None) -> EvalSets:
    pools = advbench_pools(load("advbench", data_dir))
    pool = pools["eval"].records
    adv = sample(pool, ev.advbench, ev.seed)
    per_round = sample(pool, ev.per_round, ev.seed + 1) if ev.per_round else []
    xs = sample([r for r in load("xstest", data_dir) if r["label"] == "benign"], ev.xstest, ev.seed)
    jbb = sample([r for r in load("jailbreakbench", data_dir) if r["label"] == "benign"], ev.utility, ev.seed)

    def prov(name: str, split: str, rows: list[dict]) -> dict:
        return {"dataset": name, "split": split, "n": len(rows), "seed": ev.seed, "content_hash": content_hash(rows)}

    return EvalSets(
        advbench=[{**r, "label": "harmful"} for r in adv],
        xstest=[{**r, "label": "benign"} for r in xs],
        utility=[{**r, "label": "benign"} for r in jbb],
        per_round=[{**r, "label": "harmful"} for r in per_round],
        provenance={"advbench": {**prov("advbench", "eval", adv), "pool": pools["eval"].provenance()},
                    "xstest": prov("xstest", "safe prompts", xs),
                    "utility": prov("jailbreakbench", "benign behaviours", jbb),
                    "per_round": {**prov("advbench", "eval", per_round), "seed": ev.seed + 1}})


def _generator(model, tok, ev: Evaluation) -> Generator:
    return Generator(model, tok, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)


def measure(model, tok, sets: EvalSets, ev: Evaluation, judge: Judge,
            progress: Callable[[int], None] | None = None) -> dict:
    """The three headline rates of ``model`` (with its active adapter) and the judged generations."""
    started = time.perf_counter()
    groups = (("advbench", sets.advbench), ("xstest", sets.xstest), ("utility", sets.utility))
    records = [{**r, "set": name} for name, rows in groups for r in rows]
    model.eval()
    gen = _generator(model, tok, ev)
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


def measure_safe_rate(model, tok, records: list[dict], ev: Evaluation, judge: Judge) -> dict:
    """safe_rate on ``records`` (the per-round sample)."""
    model.eval()
    texts = [g.text for g in _generator(model, tok, ev).generate([r["prompt"] for r in records])]
    judged = judge_generations(records, texts, judge)
    return rate(sum(r["verdict"] == "safe" for r in judged), len(judged))
