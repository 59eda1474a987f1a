"""One gated aggregation step, framework-agnostic: review -> aggregate the admitted -> re-check -> log.

:func:`gated_round` is the one routine: the plain-Python loop reaches it through
:meth:`SafeAggregator.aggregate`, the Flower strategy wrapper (:class:`~safefed.federated.flower.SafetyGate`)
with the inner strategy's own ``aggregate_train`` as the aggregation. Whatever the clients send, a round
ends with a ``round_complete`` line in the audit log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import UserError
from .audit import AuditLog
from .gate import GateDecision, UpdateGate
from .updates import Arrays, Update, fedavg

log = logging.getLogger(__name__)

AggregateFn = Callable[[Sequence[Arrays], Sequence[float]], Arrays]
# the admitted updates and their decisions -> the new global arrays (None: the aggregation kept none)
Admit = Callable[[Sequence[Update], Sequence[GateDecision]], "Arrays | None"]


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


def gated_round(gate: UpdateGate, audit: AuditLog | None, round_: int, global_arrays: Arrays,
                updates: Sequence[Update], aggregate: Admit,
                before_complete: Callable[[RoundOutcome], None] | None = None) -> RoundOutcome:
    """Review ``updates``, aggregate the admitted ones with ``aggregate``, check the aggregate, log the round.

    An aggregation that raises (a user's function, or an inner strategy choking on what clients reported)
    keeps the previous global model and says why in the ``round_complete`` line. ``before_complete`` runs
    just before that line is written (a checkpoint of the round's arrays, so a resumed run never finds a
    complete round without its model).
    """
    started = time.perf_counter()
    decisions = gate.review(round_, global_arrays, updates)
    admitted = [(u, d) for u, d in zip(updates, decisions, strict=True) if d.accepted]
    outcome = RoundOutcome(global_arrays, decisions, False, "no update passed; global model unchanged")
    if admitted:
        try:
            new = aggregate([u for u, _ in admitted], [d for _, d in admitted])
        except Exception as exc:  # noqa: BLE001 - the round must still end, with the reason logged
            log.exception("round %s: aggregation failed", round_)
            new = None
            outcome.note = f"aggregation failed ({type(exc).__name__}: {str(exc)[:200]}); previous global model kept"
        else:
            if new is None:
                outcome.note = "the aggregation returned no model; global model unchanged"
        if new is not None:
            outcome = RoundOutcome(new, decisions, True, "aggregated admitted updates")
            if gate.config.check_aggregate:
                keep, why, info = gate.check_aggregate(round_, global_arrays, new)
                outcome.aggregate_check = {"kept": keep, "reason": why, **info}
                if not keep:
                    outcome = RoundOutcome(global_arrays, decisions, False,
                                           f"aggregate failed the rule ({why}); previous global model kept",
                                           outcome.aggregate_check)
    outcome.gate_seconds = round(time.perf_counter() - started, 2)
    if before_complete is not None:
        before_complete(outcome)
    if audit is not None:
        audit.complete(round_, accepted=outcome.accepted, rejected=outcome.rejected, changed=outcome.changed,
                       note=outcome.note, aggregate_check=outcome.aggregate_check,
                       gate_seconds=outcome.gate_seconds)
    return outcome


def _is_torch(arrays) -> bool:
    return isinstance(arrays, dict) and any(type(v).__module__.startswith("torch") for v in arrays.values())


def _to_numpy(arrays):
    """A torch state dict as numpy arrays (float32 where it was floating point); anything else as it is."""
    if not _is_torch(arrays):
        return arrays
    out = {}
    for k, v in arrays.items():
        if type(v).__module__.startswith("torch"):
            v = v.detach().cpu()
            v = (v.float() if v.is_floating_point() else v).numpy()
        out[k] = v
    return out


class SafeAggregator:
    """Gate the round's updates, average the admitted ones, and keep the previous model if needed.

    With ``checkpoints`` (a folder), each round's resulting global arrays are saved there (safetensors,
    written atomically) before its ``round_complete`` line; :meth:`resume` then continues a killed run
    from the last complete round's model.
    """

    def __init__(self, gate: UpdateGate, audit: AuditLog | None = None, aggregate_fn: AggregateFn = fedavg,
                 checkpoints: str | Path | None = None) -> None:
        self.gate = gate
        self.audit = audit if audit is not None else gate.audit
        self.aggregate_fn = aggregate_fn
        self.checkpoints = Path(checkpoints) if checkpoints is not None else None

    def aggregate(self, round_: int, global_arrays: Arrays, updates: Sequence[Update]) -> RoundOutcome:
        """Numpy or torch state dicts in (``global_arrays`` and each update's); the outcome's arrays come
        back in the kind ``global_arrays`` came in."""
        torch_in = _is_torch(global_arrays)
        global_arrays = _to_numpy(global_arrays)
        updates = [replace(u, arrays=_to_numpy(u.arrays)) if _is_torch(u.arrays) else u for u in updates]

        def average(admitted: Sequence[Update], decided: Sequence[GateDecision]) -> Arrays:
            return self.aggregate_fn([u.arrays for u in admitted], [d.n_examples_used for d in decided])

        save = (lambda o: self._save(round_, o.arrays)) if self.checkpoints is not None else None
        outcome = gated_round(self.gate, self.audit, round_, global_arrays, updates, average, save)
        if torch_in:
            import torch

            outcome.arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in outcome.arrays.items()}
        return outcome

    # --- checkpoints -----------------------------------------------------------------------------

    def _path(self, round_: int) -> Path:
        assert self.checkpoints is not None
        return self.checkpoints / f"round-{round_:04d}.safetensors"

    def _save(self, round_: int, arrays: Arrays) -> None:
        from safetensors.numpy import save_file

        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self._path(round_)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        os.replace(tmp, final)

    def resume(self, initial: Arrays) -> tuple[int, Arrays]:
        """(the first round still to run, the global arrays to run it from): the model saved with the last
        round the audit log records as complete, or ``initial`` when no round is complete."""
        done = self.audit.completed_rounds() if self.audit is not None else set()
        if not done:
            return 1, initial
        last = max(done)
        if self.checkpoints is None or not self._path(last).is_file():
            where = self.checkpoints or "(no checkpoints folder given)"
            raise UserError(f"{self.audit.path}: round {last} is complete but its model is not in {where}; "
                            "start with a fresh output folder")
        from safetensors.numpy import load_file

        return last + 1, load_file(str(self._path(last)))
