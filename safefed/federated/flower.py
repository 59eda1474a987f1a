"""Flower integration (Message API, flwr 1.41/1.42): a strategy wrapper, a client mod, a data helper.

``SafetyGate(strategy=FedAvg(...), gate=UpdateGate(...))`` wraps any strategy the way Flower's DP
wrappers do: it remembers the global arrays in ``configure_train``, judges every reply in
``aggregate_train`` and hands only admitted replies (copied, with ``num-examples`` capped) to the inner
strategy. Secure aggregation hides individual updates, so the gate cannot run under SecAgg.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from .audit import AuditLog
from .client import ClientSafety, Prepared
from .gate import UpdateGate
from .updates import Arrays, Update

log = logging.getLogger(__name__)


def record_to_arrays(record: ArrayRecord) -> Arrays:
    return {k: np.asarray(v.numpy()) for k, v in record.items()}


def arrays_to_record(arrays: Arrays) -> ArrayRecord:
    import torch

    return ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()})


class SafetyGate(Strategy):
    """Wrap ``strategy`` so that updates failing the AdvBench gate never reach its aggregation."""

    def __init__(self, strategy: Strategy, gate: UpdateGate, audit: AuditLog | None = None,
                 weighted_by_key: str = "num-examples") -> None:
        self.strategy = strategy
        self.gate = gate
        self.audit = audit if audit is not None else gate.audit
        self.weighted_by_key = getattr(strategy, "weighted_by_key", weighted_by_key)
        self._global: Arrays | None = None
        self.history: list[dict] = []

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        self._global = record_to_arrays(arrays)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _update(self, msg: Message) -> Update | str:
        """The reply as an Update, or why it is malformed."""
        content = msg.content
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            return (f"invalid: expected one ArrayRecord and one MetricRecord, got {len(content.array_records)} "
                    f"and {len(content.metric_records)}")
        metrics = next(iter(content.metric_records.values()))
        n = metrics.get(self.weighted_by_key)
        if not isinstance(n, (int, float)):
            return f"invalid: MetricRecord has no numeric {self.weighted_by_key!r}"
        arrays = record_to_arrays(next(iter(content.array_records.values())))
        return Update(str(msg.metadata.src_node_id), arrays, int(n), dict(metrics))

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        assert self._global is not None, "configure_train must run before aggregate_train"
        updates: list[Update] = []
        by_client: dict[str, Message] = {}
        for msg in replies:
            client = str(msg.metadata.src_node_id)
            if msg.has_error():
                self._log_reject(server_round, client, f"client failed: {msg.error.reason}")
                continue
            u = self._update(msg)
            if isinstance(u, str):
                self._log_reject(server_round, client, u)
                continue
            updates.append(u)
            by_client[u.client] = msg
        decisions = self.gate.review(server_round, self._global, updates) if updates else []
        admitted: list[Message] = []
        for d in decisions:
            if not d.accepted:
                continue
            msg = by_client[d.client]
            content = copy.deepcopy(msg.content)  # FedMedian & co. empty reply arrays in place
            next(iter(content.metric_records.values()))[self.weighted_by_key] = d.n_examples_used
            admitted.append(Message(content=content, metadata=msg.metadata))
        info = {"round": server_round, "replies": len(replies), "admitted": len(admitted),
                "rejected": len(replies) - len(admitted)}
        arrays, metrics = (None, None)
        if admitted:
            arrays, metrics = self.strategy.aggregate_train(server_round, admitted)
        note = "no update passed; global model unchanged" if not admitted else "aggregated admitted updates"
        if arrays is not None and self.gate.config.check_aggregate:
            keep, why, check = self.gate.check_aggregate(server_round, self._global, record_to_arrays(arrays))
            info["aggregate_check"] = {"kept": keep, "reason": why, **check}
            if not keep:
                arrays, note = None, f"aggregate failed the rule ({why}); previous global model kept"
        info["changed"] = arrays is not None
        metrics = metrics if metrics is not None else MetricRecord()
        metrics["safefed-admitted"] = len(admitted)
        metrics["safefed-rejected"] = len(replies) - len(admitted)
        if self.audit is not None:
            self.audit.complete(server_round, accepted=[d.client for d in decisions if d.accepted],
                                rejected=[d.client for d in decisions if not d.accepted], note=note,
                                changed=arrays is not None, aggregate_check=info.get("aggregate_check", {}))
        self.history.append(info)
        return arrays, metrics

    def _log_reject(self, round_: int, client: str, reason: str) -> None:
        log.warning("round %s: update of node %s rejected: %s", round_, client, reason)
        if self.audit is not None:
            self.audit.decision(round_, client=client, decision="reject", accepted=False, reason=reason,
                                n_examples=None, safe_rate=None, baseline_safe_rate=None, over_refusal=None,
                                seconds=0.0)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log.info("SafetyGate (mode %s, judge %s) wrapping:", self.gate.config.mode, self.gate.config.judge)
        self.strategy.summary()


# --- client side --------------------------------------------------------------------------------

SAFETY_CONFIG_KEYS = ("safefed-policy", "safefed-constitution")


def safety_mod(msg: Message, ctx, call_next) -> Message:
    """Client Mod: passes the run's safety settings to the train function and checks the reply.

    A mod never sees the training data (it is loaded inside the train function): the train function
    calls :func:`prepare_training_data`, which reads the settings this mod put in the context state.
    On the way out, the reply's arrays must be finite float32 (ArrayRecord rejects bf16): other replies
    become an error reply instead of poisoning the round.
    """
    state = ConfigRecord({k: str(ctx.run_config[k]) for k in SAFETY_CONFIG_KEYS if k in ctx.run_config})
    ctx.state["safefed"] = state
    reply = call_next(msg, ctx)
    if reply.has_error() or msg.metadata.message_type != "train":
        return reply
    for record in reply.content.array_records.values():
        for name, arr in record.items():
            a = arr.numpy()
            if a.dtype != np.float32 or not np.isfinite(a).all():
                from flwr.app import Error

                return Message(Error(code=0, reason=f"safefed: array {name} is not finite float32"),
                               reply_to=msg)
    return reply


def prepare_training_data(records: list[dict], ctx, *, model=None, tokenizer=None, default_policy: str = "default",
                          default_constitution: str | None = "default") -> Prepared:
    """Filter -> revise a client's records with the settings of :func:`safety_mod` (or the defaults).

    Put ``prepared.metrics`` into the reply's existing MetricRecord (Flower's strategies expect exactly
    one MetricRecord per reply).
    """
    cfg = ctx.state.config_records.get("safefed", ConfigRecord()) if hasattr(ctx, "state") else ConfigRecord()
    policy = cfg.get("safefed-policy", default_policy) or None
    constitution = cfg.get("safefed-constitution", default_constitution) or None
    if policy in ("none", "off"):
        policy = None
    if constitution in ("none", "off"):
        constitution = None
    return ClientSafety(policy, constitution, model=model, tokenizer=tokenizer).prepare(records)
