"""One gated aggregation step, framework-agnostic: review -> aggregate the admitted -> re-check -> log.

The plain-Python loop calls :meth:`SafeAggregator.aggregate` directly; the Flower strategy wrapper
calls the same pieces around the inner strategy's own ``aggregate_train``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .audit import AuditLog
from .gate import GateDecision, UpdateGate
from .updates import Arrays, Update, fedavg

AggregateFn = Callable[[Sequence[Arrays], Sequence[float]], Arrays]


@dataclass
class RoundOutcome:
    arrays: Arrays
    decisions: list[GateDecision]
    changed: bool
    note: str
    aggregate_check: dict = field(default_factory=dict)
    gate_seconds: float = 0.0

    @property
    def accepted(self) -> list[str]:
        return [d.client for d in self.decisions if d.accepted]

    @property
    def rejected(self) -> list[str]:
        return [d.client for d in self.decisions if not d.accepted]


class SafeAggregator:
    """Gate the round's updates, average the admitted ones, and keep the previous model if needed."""

    def __init__(self, gate: UpdateGate, audit: AuditLog | None = None, aggregate_fn: AggregateFn = fedavg) -> None:
        self.gate = gate
        self.audit = audit if audit is not None else gate.audit
        self.aggregate_fn = aggregate_fn

    def aggregate(self, round_: int, global_arrays: Arrays, updates: Sequence[Update]) -> RoundOutcome:
        started = time.perf_counter()
        decisions = self.gate.review(round_, global_arrays, updates)
        admitted = [(u, d) for u, d in zip(updates, decisions, strict=True) if d.accepted]
        if not admitted:
            outcome = RoundOutcome(global_arrays, decisions, False, "no update passed; global model unchanged")
        else:
            new = self.aggregate_fn([u.arrays for u, _ in admitted], [d.n_examples_used for _, d in admitted])
            outcome = RoundOutcome(new, decisions, True, "aggregated admitted updates")
            if self.gate.config.check_aggregate:
                keep, why, info = self.gate.check_aggregate(round_, global_arrays, new)
                outcome.aggregate_check = {"kept": keep, "reason": why, **info}
                if not keep:
                    outcome = RoundOutcome(global_arrays, decisions, False,
                                           f"aggregate failed the rule ({why}); previous global model kept",
                                           outcome.aggregate_check)
        outcome.gate_seconds = round(time.perf_counter() - started, 2)
        if self.audit is not None:
            self.audit.complete(round_, accepted=outcome.accepted, rejected=outcome.rejected,
                                changed=outcome.changed, note=outcome.note, aggregate_check=outcome.aggregate_check,
                                gate_seconds=outcome.gate_seconds)
        return outcome
