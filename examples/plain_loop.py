"""A complete plain-Python FedAvg loop over LoRA adapters, with safefed's three safeguards.

    python examples/plain_loop.py --rounds 2 --clients 3 --poisoned 0 --out runs/plain-loop

It starts from the shipped aligned adapter (``--adapter fresh`` for a new one) and prints a line per
step on stderr and one JSON line per round on stdout.

Each round: every client prepares its own records (filter -> revise), fine-tunes the global LoRA
adapter for a few steps, and sends its adapter weights; the server's gate measures each update on
AdvBench's gate pool and only the admitted ones are averaged. Decisions go to ``OUT/audit.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from safefed.align import cached_aligned_adapter
from safefed.federated.audit import AuditLog
from safefed.federated.client import ClientSafety
from safefed.federated.gate import GLOBAL, UpdateGate, load_gate_config
from safefed.federated.partitions import client_datasets
from safefed.federated.rounds import SafeAggregator
from safefed.federated.updates import (
    load_lora_arrays,
    local_update,
    lora_arrays,
    save_global_adapter,
    with_global_adapter,
)
from safefed.models import load_causal_lm


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--poisoned", type=int, nargs="*", default=[0], help="fully poisoned client ids")
    ap.add_argument("--per-client", type=int, default=24)
    ap.add_argument("--local-steps", type=int, default=6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--adapter", default="aligned",
                    help="starting LoRA adapter: a folder, 'aligned' (the shipped aligned adapter, as in the Flower "
                         "example) or 'fresh'")
    ap.add_argument("--gate", default="default", help="gate config name or YAML path")
    ap.add_argument("--harmful-sample", type=int, help="override the gate's prompts per round")
    ap.add_argument("--no-filter", action="store_true", help="skip the client-side filter")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default="runs/plain-loop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # server: the global model is the base model + a LoRA adapter named "global"
    say("loading SmolLM2-135M-Instruct and the starting adapter")
    model, tok, _ = load_causal_lm("smollm2-135m-instruct")
    start = {"fresh": None, "aligned": cached_aligned_adapter(data_dir=args.data_dir, log=say)}.get(args.adapter,
                                                                                                   args.adapter)
    model = with_global_adapter(model, start, name=GLOBAL)
    global_arrays = lora_arrays(model, GLOBAL)
    config = load_gate_config(args.gate).overridden(harmful_sample=args.harmful_sample)
    audit = AuditLog(out / "audit.jsonl")
    # each round's global model is checkpointed before its round_complete line: a killed run resumes from it;
    # the gate's drift anchor stays the starting model, in a resumed run too
    gate = UpdateGate(model, tok, config, data_dir=args.data_dir, audit=audit, anchor=global_arrays)
    aggregator = SafeAggregator(gate, checkpoints=out / "checkpoints")
    first, global_arrays = aggregator.resume(global_arrays)

    # clients: their own data, prepared locally before training
    datasets = client_datasets(args.clients, args.per_client, poisoned=tuple(args.poisoned), data_dir=args.data_dir)
    safety = None if args.no_filter else ClientSafety("default", constitution=None)
    prepared = []
    for c, d in enumerate(tqdm(datasets, desc="client filters", unit="client")):
        prepared.append(safety.prepare(d) if safety else None)
        if safety:
            m = prepared[-1].metrics
            say(f"client{c}: {m['safefed-kept']} of {m['safefed-input']} rows kept, {m['safefed-dropped']} dropped")

    for rnd in range(first, args.rounds + 1):
        updates = [local_update(model, tok, global_arrays, p.pairs if p else records, f"client{c}",
                                steps=args.local_steps, lr=args.lr, seed=rnd * 100 + c,
                                metrics=p.metrics if p else None)
                   for c, (records, p) in enumerate(tqdm(list(zip(datasets, prepared, strict=True)),
                                                         desc=f"round {rnd}: local training", unit="client"))]
        say(f"round {rnd}: the gate measures {len(updates)} updates")
        outcome = aggregator.aggregate(rnd, global_arrays, updates)
        global_arrays = outcome.arrays
        for d in outcome.decisions:
            rate = "" if d.safe_rate is None else f" safe_rate {d.safe_rate:.2f}"
            say(f"round {rnd}: {d.client} {'accepted' if d.accepted else 'rejected'}{rate}"
                + ("" if d.accepted else f": {d.reason}"))
        print(json.dumps({"round": rnd, "accepted": outcome.accepted, "rejected": outcome.rejected,
                          "note": outcome.note, "gate_seconds": outcome.gate_seconds}), flush=True)
    load_lora_arrays(model, global_arrays, GLOBAL)
    save_global_adapter(model, out / "adapter", GLOBAL)
    print(f"audit log: {out / 'audit.jsonl'}; final adapter: {out / 'adapter'}")


if __name__ == "__main__":
    main()
