"""The Flower app safefed runs: LoRA fine-tuning of a causal LM across clients, safeguards switchable.

It lives inside the package (``flwr run`` would ``uv sync`` safefed from a registry where it is not
published). :func:`make_apps` builds a (ServerApp, ClientApp) pair from a :class:`FedConfig` for
in-process simulation (``flwr.simulation.run_simulation``); ``server_app`` / ``client_app`` are the
same apps configured from the run config (``[tool.flwr.app.config]``) for ``flwr run`` and the
deployment engine (see ``examples/flower``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

STRATEGIES = ("fedavg", "fedprox", "median", "trimmed", "krum")


class FedConfig(BaseModel):
    """One federated run. Keys may also come from the Flower run config (dashes or underscores)."""

    model_config = ConfigDict(extra="forbid")
    model: str = "smollm2-135m-instruct"
    initial_adapter: str | None = None  # a LoRA folder, "aligned" (safefed align, cached) or None (fresh)
    num_clients: int = Field(3, ge=1)
    fraction_train: float = Field(1.0, gt=0, le=1)
    rounds: int = Field(1, ge=1)
    local_steps: int = Field(4, ge=1)
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(96, ge=16)
    per_client: int = Field(24, ge=1)
    layout: Literal["mixed", "poisoned"] = "poisoned"
    poisoned: list[int] = [0]
    harmful_fraction: float = Field(0.3, ge=0, le=1)
    harmful_source: str = "jailbreakbench-artifacts"
    seed: int = 0
    filter_policy: str | None = None
    constitution: str | None = None
    gate: str | None = "default"
    gate_harmful_sample: int | None = None
    gate_benign_sample: int | None = None
    strategy: Literal["fedavg", "fedprox", "median", "trimmed", "krum"] = "fedavg"
    # server-side Constitutional AI after each round's aggregation (the source paper's placement)
    cai_constitution: str | None = None
    cai_prompts: int = Field(8, ge=1)   # fresh red-team prompts per round (harmfulqa-catqa, never evaluation data)
    cai_benign: int = Field(8, ge=0)    # benign pairs mixed in (look-alikes + general tasks)
    cai_steps: int = Field(4, ge=1)
    cai_lr: float = Field(2e-4, gt=0)
    cai_instruction_share: float = Field(0.0, ge=0, le=1)  # red-team questions recast as instructions
    client_data: str | None = None  # JSONL of prepared client records (field `client` = partition id)
    update_cache: str | None = None  # folder: a client update is computed once per (global adapter, pairs, settings)
    fail_clients: list[int] = []  # fault injection: these partitions raise mid-round (tests, drills)
    out: str = "runs/flower"
    data_dir: str | None = None

    @classmethod
    def from_run_config(cls, run_config: dict, base: FedConfig | None = None) -> FedConfig:
        values = base.model_dump() if base else {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name in cls.model_fields:
                if name == "poisoned" and isinstance(value, str):
                    value = [int(x) for x in value.split(",") if x.strip()]
                if value in ("", "none") and name in ("initial_adapter", "filter_policy", "constitution", "gate",
                                                     "cai_constitution", "client_data", "update_cache"):
                    value = None
                values[name] = value
        return cls.model_validate(values)


# --- shared model cache (one per process: a simulation actor or a SuperNode's ClientApp) ----------

_MODELS: dict = {}


def global_model(cfg: FedConfig):
    """(peft model with adapter "global", tokenizer), loaded once per process."""
    from ..models import load_causal_lm
    from .gate import GLOBAL
    from .updates import with_global_adapter

    key = (cfg.model, cfg.initial_adapter)
    if key not in _MODELS:
        base, tok, _ = load_causal_lm(cfg.model)
        _MODELS[key] = (with_global_adapter(base, resolve_initial_adapter(cfg), name=GLOBAL), tok)
    return _MODELS[key]


def resolve_initial_adapter(cfg: FedConfig) -> str | None:
    if cfg.initial_adapter == "aligned":
        from ..align import cached_aligned_adapter

        return str(cached_aligned_adapter(data_dir=cfg.data_dir, log=log.info))
    return cfg.initial_adapter


# --- client ---------------------------------------------------------------------------------------

_CLIENT_DATA: dict = {}
_PREPARED: dict = {}


def client_records(cfg: FedConfig, pid: int) -> list[dict]:
    """Partition ``pid``'s records: from ``cfg.client_data`` (prepared once for many runs) or built here."""
    from .partitions import client_datasets

    if cfg.client_data:
        path = Path(cfg.client_data)
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in _CLIENT_DATA:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            by_client: dict[int, list[dict]] = {}
            for r in rows:
                by_client.setdefault(int(r["client"]), []).append(r)
            _CLIENT_DATA[key] = by_client
        return _CLIENT_DATA[key].get(pid, [])
    return client_datasets(cfg.num_clients, cfg.per_client, layout=cfg.layout, poisoned=tuple(cfg.poisoned),
                           harmful_fraction=cfg.harmful_fraction, harmful_source=cfg.harmful_source,
                           seed=cfg.seed, data_dir=cfg.data_dir)[pid]


def client_train(msg: Message, context: Context, cfg: FedConfig) -> Message:
    """Local round: prepare this client's data (filter -> revise), fine-tune the global adapter, reply."""
    from ..training import train_lora
    from .flower import SAFETY_CONFIG_KEYS, arrays_to_record, prepare_training_data, record_to_arrays
    from .gate import GLOBAL
    from .updates import load_lora_arrays, lora_arrays

    cfg = FedConfig.from_run_config(context.run_config, cfg)
    pid = int(context.node_config.get("partition-id", 0))
    if pid in cfg.fail_clients:
        raise RuntimeError(f"partition {pid} fails by configuration (fail_clients)")
    records = client_records(cfg, pid)
    model, tok = global_model(cfg)
    global_arrays = record_to_arrays(msg.content["arrays"])
    load_lora_arrays(model, global_arrays, GLOBAL)
    model.set_adapter(GLOBAL)
    prepared = None
    if cfg.filter_policy:
        # filtering alone is a pure function of the records and the policy: once per client and process
        key = (pid, cfg.filter_policy, json.dumps(records, sort_keys=True, default=str),
               tuple(str(context.run_config.get(k)) for k in SAFETY_CONFIG_KEYS))
        prepared = _PREPARED.get(key) if cfg.constitution is None else None
        if prepared is None:
            prepared = prepare_training_data(records, context, model=model, tokenizer=tok,
                                             default_policy=cfg.filter_policy, default_constitution=cfg.constitution)
            if cfg.constitution is None:
                _PREPARED[key] = prepared
    pairs = prepared.pairs if prepared else records
    server_round = int(msg.content["config"].get("server-round", 1))
    seed = cfg.seed * 1000 + server_round * 10 + pid
    cached = UpdateCache(cfg.update_cache).key(global_arrays, pairs, cfg, seed) if cfg.update_cache else None
    found = UpdateCache(cfg.update_cache).get(cached) if cached else None
    if found:
        arrays, loss = found
    else:
        loss = 0.0
        if pairs:
            model, stats = train_lora(model, tok, pairs, steps=cfg.local_steps, lr=cfg.lr, batch_size=cfg.batch_size,
                                      max_length=cfg.max_length, seed=seed)
            loss = stats.losses[-1]
        arrays = lora_arrays(model, GLOBAL)
        if cached:
            UpdateCache(cfg.update_cache).put(cached, arrays, loss)
    metrics = {"num-examples": max(1, len(pairs)), "train-loss": float(loss), "partition-id": pid,
               "harmful-records": sum(bool(r.get("harmful")) for r in records), "reused-update": int(bool(found))}
    if prepared:
        metrics.update(prepared.metrics)
    content = RecordDict({"arrays": arrays_to_record(arrays), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


class UpdateCache:
    """Client updates computed once: local training is a pure function of the global adapter it starts
    from, the pairs, the training settings and the seed, so runs that share a starting point (the demo's
    arms in their first round) can share its result. Entries are written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def key(self, global_arrays: dict, pairs: list[dict], cfg: FedConfig, seed: int) -> str:
        import hashlib

        import numpy as np

        h = hashlib.sha256()
        for name in sorted(global_arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(global_arrays[name], dtype=np.float32).tobytes())
        settings = [cfg.model, cfg.initial_adapter, cfg.local_steps, cfg.lr, cfg.batch_size, cfg.max_length, seed]
        h.update(json.dumps([settings, [[p["prompt"], p["response"]] for p in pairs]]).encode())
        return h.hexdigest()[:32]

    def get(self, key: str) -> tuple[dict, float] | None:
        import numpy as np

        path = self.folder / f"{key}.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != "__loss__"}
            return arrays, float(data["__loss__"])

    def put(self, key: str, arrays: dict, loss: float) -> None:
        import os

        import numpy as np

        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, __loss__=np.float64(loss), **arrays)
        os.replace(tmp, self.folder / f"{key}.npz")


# --- server ---------------------------------------------------------------------------------------

def make_strategy(cfg: FedConfig, n_clients: int):
    import flwr.serverapp.strategy as s

    common = {"fraction_train": cfg.fraction_train, "fraction_evaluate": 0.0,
              "min_train_nodes": max(1, round(cfg.fraction_train * n_clients)), "min_available_nodes": n_clients}
    if cfg.strategy == "fedprox":
        return s.FedProx(proximal_mu=0.01, **common)
    if cfg.strategy == "median":
        return s.FedMedian(**common)
    if cfg.strategy == "trimmed":
        return s.FedTrimmedAvg(beta=0.2, **common)
    if cfg.strategy == "krum":
        return s.Krum(num_malicious_nodes=len(cfg.poisoned) if cfg.layout == "poisoned" else 0, **common)
    return s.FedAvg(**common)


@dataclass
class ServerHooks:
    """What a caller running the app in-process (the demo) adds to :func:`server_main`.

    ``initial_arrays`` / ``first_round``: resume from a checkpoint of the global adapter taken after
    round ``first_round - 1``. ``audit``: the audit log to write instead of ``out/audit.jsonl`` (e.g.
    one file shared by several tagged runs). ``evaluate(round, global_arrays, train_metrics)`` is
    Flower's centralized evaluation (``Strategy.start(evaluate_fn=...)``): called with the starting
    point (round ``first_round - 1``) and after every round, with that round's train metrics
    (``{"aggregated": {...}, "clients": [{...}, ...]}``); it returns numeric metrics (or None).
    ``anchor``: the adapter the gate holds every new global model to (``max_drift``); by default the gate
    takes the first global model it reviews, so a resumed run should pass its starting adapter.
    """

    initial_arrays: dict | None = None
    anchor: dict | None = None
    first_round: int = 1
    audit: object | None = None
    evaluate: Callable[[int, dict, dict], dict | None] | None = None


def server_main(grid: Grid, context: Context, cfg: FedConfig, hooks: ServerHooks | None = None) -> dict:
    """Run the rounds; writes ``out/audit.jsonl``, ``out/adapter`` and ``out/server.json``.

    Strategy stack, inside out: Flower's strategy (``cfg.strategy``) -> :class:`SafetyGate` (``cfg.gate``)
    -> :class:`ServerConstitution` (``cfg.cai_constitution``: after aggregation, as the source paper
    placed it) -> :class:`Resumable` (round numbering, seeded client sampling when not every client
    trains).
    """
    from .audit import AuditLog
    from .flower import (
        PartitionOrderedGrid,
        Resumable,
        SafetyGate,
        ServerConstitution,
        arrays_to_record,
        record_to_arrays,
    )
    from .gate import GLOBAL, UpdateGate, load_gate_config
    from .updates import load_lora_arrays, lora_arrays, save_global_adapter

    cfg = FedConfig.from_run_config(context.run_config, cfg)
    hooks = hooks or ServerHooks()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = global_model(cfg)
    initial = hooks.initial_arrays if hooks.initial_arrays is not None else lora_arrays(model, GLOBAL)
    strategy = make_strategy(cfg, cfg.num_clients)
    gate = cai = None
    if cfg.gate:
        gcfg = load_gate_config(cfg.gate).overridden(harmful_sample=cfg.gate_harmful_sample or None,
                                                     benign_sample=cfg.gate_benign_sample)
        audit = hooks.audit if hooks.audit is not None else AuditLog(out / "audit.jsonl")
        gate = SafetyGate(strategy, UpdateGate(model, tok, gcfg, data_dir=cfg.data_dir, audit=audit,
                                               anchor=hooks.anchor))
    stack = gate or strategy
    if cfg.cai_constitution:
        cai = ServerConstitution(stack, model, tok, cfg.cai_constitution, prompts=cfg.cai_prompts,
                                 benign=cfg.cai_benign, steps=cfg.cai_steps, lr=cfg.cai_lr,
                                 instruction_share=cfg.cai_instruction_share,
                                 max_length=cfg.max_length, seed=cfg.seed, data_dir=cfg.data_dir, adapter=GLOBAL)
        stack = cai
    sampled = cfg.fraction_train < 1
    outer = Resumable(stack, first_round=hooks.first_round, sample_seed=cfg.seed if sampled else None)
    evaluate_fn = None
    if hooks.evaluate is not None:
        def evaluate_fn(server_round: int, record):
            r = server_round + outer.offset
            found = hooks.evaluate(r, record_to_arrays(record), {"aggregated": outer.train_metrics.get(r, {}),
                                                                 "clients": outer.client_metrics.get(r, [])})
            return MetricRecord(found) if found else None

    final = initial
    remaining = cfg.rounds - hooks.first_round + 1
    result = None
    if remaining > 0:
        run_grid = PartitionOrderedGrid(grid) if sampled else grid
        result = outer.start(grid=run_grid, initial_arrays=arrays_to_record(initial), num_rounds=remaining,
                             evaluate_fn=evaluate_fn)
        if result.arrays is not None:
            final = record_to_arrays(result.arrays)
    load_lora_arrays(model, final, GLOBAL)
    save_global_adapter(model, out / "adapter", GLOBAL)
    summary = {"config": cfg.model_dump(), "rounds": cfg.rounds, "first_round": hooks.first_round,
               "train_metrics": {str(k): v for k, v in outer.train_metrics.items()},
               "gate_history": gate.history if gate else [], "constitution_history": cai.history if cai else []}
    (out / "server.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def make_apps(cfg: FedConfig, hooks: ServerHooks | None = None) -> tuple[ServerApp, ClientApp]:
    """A (ServerApp, ClientApp) pair bound to ``cfg`` (run config keys still override)."""
    from .flower import partition_reply, safety_mod

    server = ServerApp()
    client = ClientApp(mods=[safety_mod])

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        server_main(grid, context, cfg, hooks)

    @client.train()
    def _train(msg: Message, context: Context) -> Message:
        return client_train(msg, context, cfg)

    @client.query()
    def _query(msg: Message, context: Context) -> Message:
        return partition_reply(msg, int(context.node_config.get("partition-id", 0)))

    return server, client


def run_simulation(cfg: FedConfig, num_cpus_per_client: int = 2, hooks: ServerHooks | None = None,
                   num_gpus_per_client: float = 0.0) -> dict:
    """Run ``cfg`` on Flower's simulation engine, in this process; returns ``out/server.json``'s content."""
    import os

    from flwr.simulation import run_simulation as flwr_run_simulation

    # Ray renices its workers to 15: beside any other CPU-bound process the simulated clients (who do the
    # training) would then get a few percent of the CPU while the server waits on them.
    os.environ.setdefault("RAY_worker_niceness", "0")
    server_json = Path(cfg.out) / "server.json"
    server_json.unlink(missing_ok=True)
    server, client = make_apps(cfg, hooks)
    init_args = {"num_cpus": num_cpus_per_client, "include_dashboard": False}
    if num_gpus_per_client:
        init_args["num_gpus"] = 1
    flwr_run_simulation(server_app=server, client_app=client, num_supernodes=cfg.num_clients,
                        backend_config={"client_resources": {"num_cpus": num_cpus_per_client,
                                                             "num_gpus": num_gpus_per_client},
                                        "init_args": init_args})
    if not server_json.exists():
        raise RuntimeError(f"the Flower simulation ended without a result ({server_json} missing); "
                           "see the log above")
    return json.loads(server_json.read_text())


# One name per assignment: `flwr run` checks the components statically (ast.Name targets, not tuples).
_APPS = make_apps(FedConfig())
server_app = _APPS[0]
client_app = _APPS[1]
