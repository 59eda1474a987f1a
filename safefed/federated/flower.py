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
from .gate import GateDecision, UpdateGate
from .rounds import gated_round
from .updates import Arrays, Update, check_examples

log = logging.getLogger(__name__)


def record_to_arrays(record: ArrayRecord) -> Arrays:
    return {k: np.asarray(v.numpy()) for k, v in record.items()}


def arrays_to_record(arrays: Arrays) -> ArrayRecord:
    import torch

    return ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()})


class StrategyWrapper(Strategy):
    """A strategy that wraps another the way Flower's DP wrappers do: everything is delegated to
    ``strategy`` unless a subclass overrides it; ``_global`` holds the arrays last sent out for training."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.weighted_by_key = getattr(strategy, "weighted_by_key", "num-examples")
        self._global: Arrays | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        self._global = record_to_arrays(arrays)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()


def _shared_metric_keys(records: list[MetricRecord]) -> set[str]:
    """Metric names every record carries in the same form (a number, or a list of one length): Flower's
    strategies refuse to aggregate records whose keys or forms differ."""
    def form(value) -> object:
        return len(value) if isinstance(value, list) else "scalar"

    keys = set.intersection(*(set(r) for r in records)) if records else set()
    return {k for k in keys if len({form(r[k]) for r in records}) == 1}


class SafetyGate(StrategyWrapper):
    """Wrap ``strategy`` so that updates failing the AdvBench gate never reach its aggregation."""

    def __init__(self, strategy: Strategy, gate: UpdateGate, audit: AuditLog | None = None,
                 weighted_by_key: str = "num-examples") -> None:
        super().__init__(strategy)
        self.gate = gate
        self.audit = audit if audit is not None else gate.audit
        self.weighted_by_key = getattr(strategy, "weighted_by_key", weighted_by_key)
        self.history: list[dict] = []

    def _update(self, msg: Message) -> Update:
        """The reply as an Update; a failed or malformed reply carries its ``problem`` (rejected and logged
        by the gate like any invalid update). The reported count is validated by the gate."""
        client = str(msg.metadata.src_node_id)
        if msg.has_error():
            return Update(client, None, None, problem=f"client failed: {msg.error.reason}")
        content = msg.content
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            return Update(client, None, None, problem=(
                f"invalid: expected one ArrayRecord and one MetricRecord, got {len(content.array_records)} "
                f"and {len(content.metric_records)}"))
        metrics = next(iter(content.metric_records.values()))
        try:
            arrays = record_to_arrays(next(iter(content.array_records.values())))
        except (ValueError, TypeError) as exc:
            return Update(client, None, None, problem=f"invalid: arrays cannot be read ({exc})")
        return Update(client, arrays, metrics.get(self.weighted_by_key), dict(metrics))

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The round of :func:`~safefed.federated.rounds.gated_round`, with the inner strategy's
        ``aggregate_train`` over the admitted replies (copied, ``num-examples`` capped) as the aggregation."""
        replies = list(replies)
        assert self._global is not None, "configure_train must run before aggregate_train"
        updates = [self._update(msg) for msg in replies]
        inner_metrics: list[MetricRecord | None] = [None]

        def inner(admitted: list[Update], decided: list[GateDecision]) -> Arrays | None:
            by_update = {id(u): msg for u, msg in zip(updates, replies, strict=True)}
            contents = [copy.deepcopy(by_update[id(u)].content) for u in admitted]  # FedMedian & co. empty
            records = [next(iter(c.metric_records.values())) for c in contents]  # reply arrays in place
            keep = _shared_metric_keys(records)
            messages = []
            for u, d, content, record in zip(admitted, decided, contents, records, strict=True):
                for key in set(record) - keep:  # one client's odd metric must not fail everyone's round
                    log.warning("round %s: metric %r of node %s left out of the aggregation (not reported "
                                "alike by every admitted client)", server_round, key, u.client)
                    del record[key]
                record[self.weighted_by_key] = d.n_examples_used
                messages.append(Message(content=content, metadata=by_update[id(u)].metadata))
            arrays, inner_metrics[0] = self.strategy.aggregate_train(server_round, messages)
            return record_to_arrays(arrays) if arrays is not None else None

        outcome = gated_round(self.gate, self.audit, server_round, self._global, updates, inner)
        for d in outcome.decisions:
            measured = "" if d.safe_rate is None else f" (safe_rate {d.safe_rate:.2f}"
            measured += "" if d.baseline_safe_rate is None or not measured else f" vs {d.baseline_safe_rate:.2f}"
            measured += ")" if measured else ""
            if d.accepted:
                log.info("round %s: node %s accepted%s", server_round, d.client, measured)
            else:
                log.warning("round %s: node %s rejected%s: %s", server_round, d.client, measured, d.reason)
        admitted = len(outcome.accepted)
        info = {"round": server_round, "replies": len(replies), "admitted": admitted,
                "rejected": len(replies) - admitted, "changed": outcome.changed}
        if outcome.aggregate_check:
            info["aggregate_check"] = outcome.aggregate_check
        self.history.append(info)
        metrics = inner_metrics[0] if inner_metrics[0] is not None and outcome.changed else MetricRecord()
        # counts are summed over the admitted clients, not averaged by example weight; ids are not metrics
        accepted = set(outcome.accepted)
        admitted_records = [u.metrics or {} for u in updates if u.client in accepted]
        for key in [k for k in metrics if k.startswith("safefed-") or k == "partition-id"]:
            del metrics[key]
        for key in sorted({k for r in admitted_records for k in r if k.startswith("safefed-")}):
            values = [r[key] for r in admitted_records if isinstance(r.get(key), (int, float))]
            if values and all(isinstance(v, int) for v in values):
                metrics[key] = int(sum(values))
        metrics["safefed-admitted"] = admitted
        metrics["safefed-rejected"] = len(replies) - admitted
        return (arrays_to_record(outcome.arrays) if outcome.changed else None), metrics

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
                          default_constitution: str | None = "default", replay: float = 0.0, seed: int = 0,
                          data_dir: str | None = None) -> Prepared:
    """Filter -> revise a client's records with the settings of :func:`safety_mod` (or the defaults).

    ``replay`` and ``seed`` are :class:`~safefed.federated.client.ClientSafety`'s. Put ``prepared.metrics``
    into the reply's existing MetricRecord (Flower's strategies expect exactly
    one MetricRecord per reply).
    """
    cfg = ctx.state.config_records.get("safefed", ConfigRecord()) if hasattr(ctx, "state") else ConfigRecord()
    policy = cfg.get("safefed-policy", default_policy) or None
    constitution = cfg.get("safefed-constitution", default_constitution) or None
    if policy in ("none", "off"):
        policy = None
    if constitution in ("none", "off"):
        constitution = None
    return ClientSafety(policy, constitution, model=model, tokenizer=tokenizer, replay=replay, seed=seed,
                        data_dir=data_dir).prepare(records)


# --- server side: constitutional round after aggregation, resumable rounds, seeded sampling ---------

class ServerConstitution(StrategyWrapper):
    """Wrap ``strategy`` so that every round's global model goes through one constitutional round.

    The source paper's placement of Constitutional AI: on the server, after aggregation. Each round
    the new global adapter (or the previous one, when the inner strategy kept it) answers a fresh
    seeded sample of red-team prompts (never evaluation data), unsafe answers are critiqued and revised
    under ``constitution``, and a short LoRA SFT on the results plus benign pairs (look-alikes and
    general tasks, so the model does not learn to refuse everything) updates the adapter that is sent
    out next. ``instruction_share`` of the red-team questions are recast as instructions
    (:func:`~safefed.constitution.server.red_team_prompts`, as in ``safefed align``); off by default:
    in the ``quick`` demo, 0.5 raised the ``all`` arm's safe_rate from 0.73 to 0.90 but cut its utility
    from 0.50 to 0.19 (docs/demo.md). ``model`` is a ``PeftModel`` whose adapter ``adapter`` the
    server may overwrite.
    """

    def __init__(self, strategy: Strategy, model, tokenizer, constitution: str = "default", *, prompts: int = 8,
                 benign: int = 8, steps: int = 4, lr: float = 2e-4, max_length: int = 96, seed: int = 0,
                 instruction_share: float = 0.0, data_dir=None, adapter: str = "global") -> None:
        from ..constitution import load_constitution

        super().__init__(strategy)
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter
        self.constitution = load_constitution(constitution)
        self.prompts, self.benign, self.steps, self.lr = prompts, benign, steps, lr
        self.max_length, self.seed, self.data_dir = max_length, seed, data_dir
        self.instruction_share = instruction_share
        self.history: list[dict] = []

    def _round_seed(self, server_round: int) -> int:
        return self.seed * 7919 + server_round

    def benign_pairs(self, server_round: int) -> list[dict]:
        """Half benign look-alikes (risky words, harmless intent), half general tasks; fresh each round."""
        from ..align import benign_pairs
        from ..lookalikes import lookalike_pairs

        seed = self._round_seed(server_round)
        n_look = (self.benign + 1) // 2
        looks = [{"prompt": p["prompt"], "response": p["response"]} for p in lookalike_pairs(n_look, seed)]
        general = [{"prompt": p["prompt"], "response": p["response"]}
                   for p in benign_pairs(self.benign - n_look, seed, self.data_dir)]
        return looks + general

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        import time

        from ..constitution.server import constitutional_round, red_team_prompts
        from .updates import load_lora_arrays, lora_arrays

        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        start = record_to_arrays(arrays) if arrays is not None else self._global
        assert start is not None, "configure_train must run before aggregate_train"
        started = time.perf_counter()
        load_lora_arrays(self.model, start, self.adapter)
        self.model.set_adapter(self.adapter)
        prompts = red_team_prompts(self.prompts, self._round_seed(server_round), self.data_dir,
                                   instruction_share=self.instruction_share)
        result = constitutional_round(self.model, self.tokenizer, prompts, self.constitution,
                                      benign_pairs=self.benign_pairs(server_round), few_shot=0, answer_tokens=32,
                                      critique_tokens=32, revision_tokens=40, steps=self.steps, lr=self.lr,
                                      max_length=self.max_length, seed=self._round_seed(server_round))
        self.model.set_adapter(self.adapter)
        summary = result.revise.summary
        info = {"round": server_round, "prompts": len(prompts), "pairs": len(result.pairs),
                "paths": dict(summary.get("counts", {})), "loss_last": result.train.losses[-1],
                "seconds": round(time.perf_counter() - started, 1)}
        self.history.append(info)
        metrics = metrics if metrics is not None else MetricRecord()
        metrics["safefed-cai-prompts"] = len(prompts)
        metrics["safefed-cai-pairs"] = len(result.pairs)
        for path, n in info["paths"].items():
            metrics[f"safefed-cai-{path}"] = int(n)
        return arrays_to_record(lora_arrays(self.model, self.adapter)), metrics

    def summary(self) -> None:
        log.info("ServerConstitution (%s, %d red-team prompts, %d benign pairs, %d steps per round) wrapping:",
                 self.constitution.constitution.name, self.prompts, self.benign, self.steps)
        self.strategy.summary()


class Resumable(StrategyWrapper):
    """Round numbering that continues from a checkpoint, seeded client sampling, per-round metrics.

    ``Strategy.start`` numbers rounds from 1; a run resumed after round k starts the wrapped strategy
    at ``first_round = k + 1`` so that everything keyed by the round (client seeds, the gate's prompt
    sample, the audit log) continues where it stopped. With ``sample_seed``, the inner strategy's
    client sampling (``random.sample`` over the grid's node ids) is seeded per round: over a grid that
    lists nodes in partition order (:class:`PartitionOrderedGrid`), every run picks the same clients.
    The inner strategy's aggregated train metrics are kept per round in ``train_metrics``, each
    client's own metrics (before any wrapper or strategy touches them) in ``client_metrics``.
    """

    def __init__(self, strategy: Strategy, first_round: int = 1, sample_seed: int | None = None) -> None:
        super().__init__(strategy)
        self.offset = first_round - 1
        self.sample_seed = sample_seed
        self.train_metrics: dict[int, dict] = {}
        self.client_metrics: dict[int, list[dict]] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        import random

        r = server_round + self.offset
        if self.sample_seed is None:
            return self.strategy.configure_train(r, arrays, config, grid)
        state = random.getstate()
        random.seed(f"sample:{self.sample_seed}:{r}")
        try:
            return list(self.strategy.configure_train(r, arrays, config, grid))
        finally:
            random.setstate(state)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        r = server_round + self.offset
        replies = list(replies)
        self.client_metrics[r] = [dict(next(iter(m.content.metric_records.values()), {})) for m in replies
                                  if not m.has_error()]
        arrays, metrics = self.strategy.aggregate_train(r, replies)
        self.train_metrics[r] = dict(metrics) if metrics is not None else {}
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                           ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round + self.offset, replies)


PARTITION_QUERY = "safefed.partition"


class PartitionOrderedGrid:
    """A Grid whose ``get_node_ids`` lists nodes in partition order (Flower's node ids are random).

    The order is asked once: a ``query`` message to every node, answered by the ClientApp with its
    ``partition-id`` (:func:`partition_reply`). Everything else is the wrapped grid's.
    """

    def __init__(self, grid: Grid, timeout: float = 600) -> None:
        from flwr.app import RecordDict

        self._grid = grid
        nodes = sorted(grid.get_node_ids())
        config = ConfigRecord({"safefed-ask": PARTITION_QUERY})
        msgs = [Message(RecordDict({"config": config}), dst_node_id=n, message_type="query") for n in nodes]
        order = {}
        for reply in grid.send_and_receive(msgs, timeout=timeout):
            if reply.has_error():
                continue
            raw = next(iter(reply.content.metric_records.values()), {}).get("partition-id")
            pid, problem = check_examples(raw)  # a client's word: a whole number, or the node goes last
            if problem is not None:
                log.warning("node %s: partition-id %r is not a whole number; ordered last",
                            reply.metadata.src_node_id, raw)
                continue
            order[reply.metadata.src_node_id] = pid
        self.partitions = order
        self._order = sorted(nodes, key=lambda n: (order.get(n, 1 << 30), n))

    def get_node_ids(self) -> list[int]:
        live = set(self._grid.get_node_ids())
        return [n for n in self._order if n in live] + sorted(live - set(self._order))

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def partition_reply(msg: Message, partition_id: int) -> Message:
    """The ClientApp's answer to :class:`PartitionOrderedGrid`'s query."""
    from flwr.app import RecordDict

    return Message(RecordDict({"metrics": MetricRecord({"partition-id": int(partition_id)})}), reply_to=msg)
