"""K adapters' answers to the same prompts: stacked LoRA deltas vs PEFT's mixed-adapter batches vs one at a time.

    python bench/bench_lora_stack.py [--clients 8] [--local-steps 6] [--repeats 2] [--out runs/bench-lora-stack]

From the shipped aligned adapter, ``--clients`` clients fine-tune real updates (a quarter poisoned, as in
bench_gate.py); the global adapter and every update then answer one gate round's prompts (32 gate-pool +
16 look-alikes, 24 new tokens, the gate's batch size) three ways, alternated ``--repeats`` times in one run:
``Generator.generate_per_adapter`` (what the gate runs), PEFT ``adapter_names`` rows, and each adapter on
its own. Prints each one's best seconds, the ratios, and whether all three give the same text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import aligned_global_model, client_updates

from safefed.federated.gate import GLOBAL, UpdateGate, load_gate_config
from safefed.federated.updates import load_lora_arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--local-steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default="runs/bench-lora-stack")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, tok = aligned_global_model(args.data_dir)
    gate = UpdateGate(model, tok, load_gate_config("default"), data_dir=args.data_dir)
    updates = client_updates(model, tok, args.clients, max(1, args.clients // 4), steps=args.local_steps,
                             data_dir=args.data_dir)
    slots = [GLOBAL]
    for u in updates:
        slot = f"c{len(slots) - 1}"
        model.add_adapter(slot, gate.lora_config)
        load_lora_arrays(model, u.arrays, slot)
        slots.append(slot)
    model.eval()
    harmful, benign = gate.prompts_for(1)
    prompts = harmful + benign
    gen, n = gate.generator, len(prompts)

    def stacked() -> list[list[str]]:
        return [[x.text for x in row] for row in gen.generate_per_adapter(prompts, slots)]

    def mixed() -> list[list[str]]:
        rows = gen.generate([p for _ in slots for p in prompts], [s for s in slots for _ in prompts])
        return [[x.text for x in rows[j * n:(j + 1) * n]] for j in range(len(slots))]

    def one_at_a_time() -> list[list[str]]:
        texts = []
        for s in slots:
            model.set_adapter(s)
            texts.append([x.text for x in gen.generate(prompts)])
        model.set_adapter(GLOBAL)
        return texts

    ways = {"stacked": stacked, "peft_mixed": mixed, "one_at_a_time": one_at_a_time}
    best: dict[str, float] = {}
    texts: dict[str, list[list[str]]] = {}
    for _ in range(args.repeats):
        for name, fn in ways.items():
            t = time.perf_counter()
            texts[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
    figures = {
        "adapters": len(slots), "prompts": n, "rows": n * len(slots), "max_new_tokens": gen.max_new_tokens,
        "batch_size": gen.batch_size, "seconds": {k: round(v, 2) for k, v in best.items()},
        "stacked_vs_peft_mixed": round(best["peft_mixed"] / best["stacked"], 2),
        "stacked_vs_one_at_a_time": round(best["one_at_a_time"] / best["stacked"], 2),
        "same_text_as_peft_mixed": texts["stacked"] == texts["peft_mixed"],
        "same_text_as_one_at_a_time": texts["stacked"] == texts["one_at_a_time"],
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    for k, v in figures.items():
        print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
