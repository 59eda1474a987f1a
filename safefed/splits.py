"""Data roles: seeded, deterministic splits, recorded in every report (see the README, "Data roles").

AdvBench is split once into a *gate pool* (the server-side gate samples from it each round) and an
*evaluation pool* (final reports, the demo's headline numbers). Neither is ever trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .data import Record, content_hash

SPLIT_SEED = 20251124
ADVBENCH_GATE_FRACTION = 0.4


@dataclass(frozen=True)
class Split:
    """A named subset of a data set, with what made it."""

    dataset: str
    name: str
    seed: int
    records: list[Record]

    def provenance(self) -> dict:
        return {"dataset": self.dataset, "split": self.name, "seed": self.seed, "n": len(self.records),
                "content_hash": content_hash(self.records)}


def _rank(seed: int, key: str) -> str:
    """Order-independent pseudo-random rank: the same record lands in the same pool whatever the order."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def advbench_pools(records: Sequence[Record], seed: int = SPLIT_SEED,
                   gate_fraction: float = ADVBENCH_GATE_FRACTION) -> dict[str, Split]:
    """AdvBench -> ``{"gate": …, "eval": …, "all": …}``, disjoint and deterministic."""
    ranked = sorted(records, key=lambda r: _rank(seed, r["prompt"]))
    n_gate = round(len(ranked) * gate_fraction)
    gate_ids = {r["id"] for r in ranked[:n_gate]}
    keep = list(records)
    return {
        "gate": Split("advbench", "gate", seed, [r for r in keep if r["id"] in gate_ids]),
        "eval": Split("advbench", "eval", seed, [r for r in keep if r["id"] not in gate_ids]),
        "all": Split("advbench", "all", seed, keep),
    }


HH_FILTER_FRACTION = 0.5


def in_fraction(key: str, fraction: float, seed: int = SPLIT_SEED, salt: str = "") -> bool:
    """True for a deterministic ``fraction`` of keys (by hash): a per-row split independent of order."""
    h = int(_rank(seed, f"{salt}:{key}")[:12], 16)
    return h / float(16**12) < fraction


def hh_key(record: Record) -> str:
    """Rows that open with the same user turn stay in the same half."""
    return " ".join(str(record.get("prompt", "")).lower().split())


def hh_halves(records: Sequence[Record], seed: int = SPLIT_SEED,
              filter_fraction: float = HH_FILTER_FRACTION) -> dict[str, Split]:
    """hh-rlhf-harmless-base -> ``{"filter-train": …, "client-data": …}``, disjoint and deterministic.

    The filter-training half may train filters and judges; the client-data half is what (poisoned)
    clients hold in simulations and what the filter's hh-rlhf figures are measured on.
    """
    picked = [in_fraction(hh_key(r), filter_fraction, seed, "hh") for r in records]
    return {
        "filter-train": Split("hh-rlhf-harmless-base", "filter-train", seed,
                              [r for r, p in zip(records, picked, strict=True) if p]),
        "client-data": Split("hh-rlhf-harmless-base", "client-data", seed,
                             [r for r, p in zip(records, picked, strict=True) if not p]),
    }


def split_records(dataset: str, records: Sequence[Record], split: str | None) -> Split:
    """The named split of a data set's records (``all`` / None = everything)."""
    if dataset == "advbench" and split in ("gate", "eval"):
        return advbench_pools(records)[split]
    if split not in (None, "all"):
        raise ValueError(f"data set {dataset!r} has no split {split!r} (only advbench has gate/eval)")
    return Split(dataset, "all", SPLIT_SEED, list(records))


def sample(records: Sequence[Record], n: int | None, seed: int) -> list[Record]:
    """A seeded random sample of ``n`` records, kept in their original order (all when n is None)."""
    if n is None or n >= len(records):
        return list(records)
    picked = set(random.Random(seed).sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in picked]
