"""Client side: prepare a client's local training records before it trains (filter -> revise).

Nothing leaves the client: the filter and the critique-and-revise step run where the data is, and
only counts are reported (as metrics in the reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Prepared:
    """Training pairs (``prompt``, ``response``) and what happened to the input, as flat metrics."""

    pairs: list[dict]
    metrics: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict] = field(default_factory=list)


class ClientSafety:
    """Filter a client's records with a policy, then revise what the policy sends to revision.

    ``constitution=None`` disables revision (``revise`` rows are then dropped, and counted). The
    reviser's LLM is the client's own model (``model``, ``tokenizer``), or any chat backend.

    ``replay`` mixes safety pairs into the training data, as a share of what was kept (0.25: one
    safety pair per four of the client's own): harmful questions refused and benign look-alikes and
    everyday requests answered (:func:`~safefed.federated.partitions.safe_behaviour_sample`, never
    evaluation data). Fine-tuning on benign data alone erodes a small model's refusals (measured here:
    AdvBench gate-pool safe_rate 0.62 -> 0.22-0.44 after six local steps on everyday tasks); replaying a
    little alignment data keeps what the model had (Bianchi et al. 2024, "Safety-tuned LLaMAs").
    """

    def __init__(self, policy: str | Path | None = "default", constitution: str | Path | None = "default", *,
                 model=None, tokenizer=None, backend=None, revise_rounds: int = 1, replay: float = 0.0,
                 seed: int = 0, data_dir: str | Path | None = None) -> None:
        from ..filtering import SafetyFilter

        self.policy = policy
        self.filter = SafetyFilter.from_yaml(policy) if policy else None
        self.constitution = constitution
        self.revise_rounds = revise_rounds
        self.replay, self.seed, self.data_dir = replay, seed, data_dir
        self._model, self._tokenizer, self._backend = model, tokenizer, backend

    def _reviser(self):
        from ..constitution import load_constitution
        from ..constitution.backends import HFBackend
        from ..constitution.checkers import FilterChecker, make_checker
        from ..constitution.engine import Reviser

        backend = self._backend or HFBackend(self._model, self._tokenizer, max_new_tokens=64, batch_size=8)
        checker = FilterChecker(str(self.policy)) if self.policy else make_checker()
        return Reviser(load_constitution(self.constitution), backend, checker, rounds=self.revise_rounds,
                       seed=self.seed, critique_tokens=48, revision_tokens=64)

    def prepare(self, records: Sequence[dict]) -> Prepared:
        """``records`` with ``prompt`` and ``response`` -> the pairs to train on, plus counts."""
        prepared = self._filter_and_revise(list(records))
        from .partitions import safe_behaviour_sample

        replay = safe_behaviour_sample(round(self.replay * len(prepared.pairs)), self.seed, self.data_dir)
        prepared.pairs += [_pair(p) for p in replay]
        prepared.metrics["safefed-replay"] = len(replay)
        return prepared

    def _filter_and_revise(self, records: list[dict]) -> Prepared:
        metrics = {"safefed-input": len(records), "safefed-kept": len(records), "safefed-flagged": 0,
                   "safefed-dropped": 0, "safefed-revised": 0, "safefed-template": 0, "safefed-invalid": 0}
        if self.filter is None:
            return Prepared([_pair(r) for r in records], metrics)
        result = self.filter.apply(records)
        kept = [_pair(r) for r in result.kept]
        quarantined = list(result.quarantined)
        metrics["safefed-kept"] = len(kept)
        metrics["safefed-flagged"] = int(result.summary.get("flagged", 0))
        metrics["safefed-invalid"] = int(result.summary.get("invalid", 0))
        to_revise = [q for q in quarantined if q["safefed"]["action"] == "revise"]
        metrics["safefed-dropped"] = len(quarantined) - len(to_revise)
        if to_revise and self.constitution is not None:
            rows = [{"id": str(q.get("id", q["safefed"]["row"])), "prompt": _pair(q)["prompt"],
                     "response": _pair(q)["response"], "categories": q["safefed"]["categories"],
                     "action": "revise"} for q in to_revise]
            revised = self._reviser().run(rows)
            for r in revised.records:
                if r.path in ("revised", "template") and r.final:
                    kept.append({"prompt": r.prompt, "response": r.final})
                    metrics[f"safefed-{r.path}"] += 1
                else:
                    metrics["safefed-dropped"] += 1
        elif to_revise:
            metrics["safefed-dropped"] += len(to_revise)
        return Prepared(kept, metrics, quarantined)


def _pair(record: dict) -> dict:
    """A record (possibly marked by the filter) as a plain (prompt, response) pair, read the way the
    filter reads it (Alpaca's ``instruction`` and ``input`` together)."""
    from ..recordio import DEFAULT_FIELDS, extract

    row = extract(0, record, DEFAULT_FIELDS, 10**9)
    return {"prompt": row.prompt, "response": row.response}
