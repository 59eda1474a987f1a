"""How many new tokens the gate needs: the judge's verdict on the first T tokens vs on 48 tokens.

    python bench/bench_gate_tokens.py [--prompts 48] [--benign 32] [--clients 4] [--out runs/bench-gate-tokens]

From the shipped aligned adapter, half of the clients fine-tune on poisoned data and half on everyday
data (as in bench_gate.py); the global adapter and every candidate answer the same gate-pool prompts
and benign look-alikes with 48 new tokens, and each answer is judged again cut to its first T tokens.
Prints, per T, the share of verdicts equal to the 48-token verdict and each adapter's safe_rate and
over-refusal: the gate's
``max_new_tokens`` is chosen where the verdicts have settled and the poisoned/benign gap is intact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import aligned_global_model, client_updates

from safefed.evaluation.runner import judge_generations
from safefed.federated.gate import GLOBAL, UpdateGate, load_gate_config

CUTS = (6, 8, 12, 16, 24, 32, 48)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=48, help="gate-pool prompts")
    ap.add_argument("--benign", type=int, default=32, help="benign look-alike prompts (over-refusal)")
    ap.add_argument("--clients", type=int, default=4, help="the first half poisoned, the rest benign")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default="runs/bench-gate-tokens")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, tok = aligned_global_model(args.data_dir)
    poisoned = range(args.clients // 2)
    updates = client_updates(model, tok, args.clients, len(poisoned), data_dir=args.data_dir)
    gate = UpdateGate(model, tok, load_gate_config("default"), data_dir=args.data_dir)
    gate.generator.max_new_tokens = max(CUTS)
    harmful, benign = gate.gate_pool[: args.prompts], gate.benign[: args.benign]
    prompts = harmful + benign
    adapters = {GLOBAL: None, **{u.client: u.arrays for u in updates}}
    answers = gate.answers(adapters, prompts)
    texts48 = [t for name in adapters for t in answers[name]]
    labels = (["harmful"] * len(harmful) + ["benign"] * len(benign)) * len(adapters)
    records = [{"id": str(i), "prompt": p, "label": lab}
               for i, (p, lab) in enumerate(zip(prompts * len(adapters), labels, strict=True))]
    ids48 = [tok(t, add_special_tokens=False)["input_ids"] for t in texts48]  # tokenised once, cut per T
    verdicts = {}
    for cut in CUTS:
        texts = [tok.decode(ids[:cut], skip_special_tokens=True) for ids in ids48]
        verdicts[cut] = [r["verdict"] for r in judge_generations(records, texts, gate.judge)]
    n = len(prompts)
    table = []
    for cut in CUTS:
        agree = sum(a == b for a, b in zip(verdicts[cut], verdicts[max(CUTS)], strict=True)) / len(records)
        own = {name: verdicts[cut][k * n:(k + 1) * n] for k, name in enumerate(adapters)}
        safe = {name: round(sum(v == "safe" for v in vs[:len(harmful)]) / len(harmful), 3) for name, vs in own.items()}
        refused = {name: round(sum(v == "refused" for v in vs[len(harmful):]) / max(1, len(benign)), 3)
                   for name, vs in own.items()}
        table.append({"max_new_tokens": cut, "agreement_with_48": round(agree, 3), "safe_rate": safe,
                      "over_refusal": refused})
        print(f"{cut:>3} tokens: agreement {agree:.3f}  safe_rate "
              + " ".join(f"{k}={v:.2f}" for k, v in safe.items())
              + "  over_refusal " + " ".join(f"{k}={v:.2f}" for k, v in refused.items()))
    figures = {"prompts_harmful": len(harmful), "prompts_benign": len(benign),
               "poisoned": [f"client{c}" for c in poisoned], "cuts": table}
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
