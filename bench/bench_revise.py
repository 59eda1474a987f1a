"""Bench: tokens/s of the batched critique-revise loop against one-by-one (batch size 1).

    python bench/bench_revise.py --n 8 --out runs/bench_revise.json

Same records, same model, same greedy decoding; only the batch size differs. The checker is the
refusal-marker judge (cheap), so the timing is the LLM's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from safefed.constitution import load_constitution
from safefed.constitution.backends import HFBackend
from safefed.constitution.checkers import JudgeChecker
from safefed.constitution.engine import Reviser
from safefed.constitution.records import read_records
from safefed.models import load_causal_lm
from safefed.provenance import package_versions


def run(n: int, batch_sizes: list[int], rounds: int, critique_tokens: int, revision_tokens: int, seed: int,
        model_name: str) -> dict:
    model, tok, resolved = load_causal_lm(model_name)
    records, data = read_records("hh-rlhf-harmless-base", limit=n, seed=seed)
    loaded = load_constitution("default")
    checker = JudgeChecker("refusal")
    out: dict = {"model": resolved.provenance(), "data": data, "rounds": rounds,
                 "critique_tokens": critique_tokens, "revision_tokens": revision_tokens, "runs": [],
                 "packages": package_versions()}
    finals: dict[int, list[str]] = {}
    for bs in batch_sizes:
        backend = HFBackend(model, tok, max_new_tokens=revision_tokens, batch_size=bs,
                            info=resolved.provenance())
        reviser = Reviser(loaded, backend, checker, rounds=rounds, revise_all=True,
                          critique_tokens=critique_tokens, revision_tokens=revision_tokens)
        start = time.perf_counter()
        result = reviser.run(records)
        wall = time.perf_counter() - start
        s = result.summary
        finals[bs] = [r.final for r in result.records]
        out["runs"].append({"batch_size": bs, "wall_s": round(wall, 2),
                            "generated_tokens": s["generated_tokens"], "generation_s": s["generation_s"],
                            "tokens_per_s": s["tokens_per_s"],
                            "counts": s["counts"]})
        print(json.dumps(out["runs"][-1]), flush=True)
    base = out["runs"][0]
    for r in out["runs"][1:]:
        if base["tokens_per_s"]:
            r["speedup_vs_first"] = round(r["tokens_per_s"] / base["tokens_per_s"], 2)
    out["same_finals"] = len({tuple(v) for v in finals.values()}) == 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--critique-tokens", type=int, default=32)
    ap.add_argument("--revision-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_revise.json"))
    a = ap.parse_args()
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    result = run(a.n, sizes, a.rounds, a.critique_tokens, a.revision_tokens, a.seed, a.model)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
