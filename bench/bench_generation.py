"""Batched vs one-by-one generation on AdvBench with SmolLM2-135M-Instruct, and FLOP/s vs matmul peak.

    python bench/bench_generation.py [--prompts 64] [--new-tokens 32] [--batch-size 64] [--dtype float32]

Prints ratios measured in one run (the machine is shared; absolute times drift):
tokens/s batched / one-by-one (target >= 8x); achieved FLOP/s = 2 x params x (prompt tokens run +
generated tokens) / s against a torch matmul peak measured in the same run and dtype (target >= 50%),
``effective_*`` counting the prompt tokens the shared-prefix cache saved as well; and the batched run's
time without that cache over its time with it (same text checked).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from safefed import data as datasets
from safefed.generation import Generator
from safefed.models import load_causal_lm
from safefed.splits import sample


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype`` (after warm-up)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def naive(model, tok, prompts: list[str], new_tokens: int) -> tuple[float, int, int]:
    """The plain loop people write first: one prompt, one generate call."""
    gen = Generator(model, tok, max_new_tokens=new_tokens, batch_size=1)
    t = time.perf_counter()
    prompt_toks = new = 0
    for p in prompts:
        ids = torch.tensor([gen.encode(p)[0]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        prompt_toks += ids.shape[1]
        new += out.shape[1] - ids.shape[1]
    return time.perf_counter() - t, prompt_toks, new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--data-dir", default=os.environ.get("SAFEFED_DATA"))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    model, tok, _ = load_causal_lm("smollm2-135m-instruct", dtype=args.dtype)
    prompts = [r["prompt"] for r in sample(datasets.load("advbench", args.data_dir), args.prompts, seed=0)]
    params = model.num_parameters()
    dtype = getattr(torch, args.dtype)

    gen = Generator(model, tok, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    gen.generate(prompts[: min(4, len(prompts))])  # warm-up
    gen = Generator(model, tok, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    t = time.perf_counter()
    outs = gen.generate(prompts)
    batched_s = time.perf_counter() - t
    b_prompt = sum(o.prompt_tokens for o in outs)
    b_new = sum(o.new_tokens for o in outs)
    uncached = Generator(model, tok, max_new_tokens=args.new_tokens, batch_size=args.batch_size, prefix_cache=False)
    t = time.perf_counter()
    same_text = [o.text for o in uncached.generate(prompts)] == [o.text for o in outs]
    uncached_s = time.perf_counter() - t

    naive_s, n_prompt, n_new = naive(model, tok, prompts, args.new_tokens)
    peak = matmul_peak(dtype)
    achieved = 2 * params * (b_prompt - gen.stats.cached_prompt_tokens + b_new) / batched_s  # tokens actually run
    effective = 2 * params * (b_prompt + b_new) / batched_s  # as if every prompt token were run
    figures = {
        "prompts": len(prompts), "new_tokens": args.new_tokens, "batch_size": args.batch_size, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "params": params,
        "batched_s": round(batched_s, 2), "batched_tokens_per_s": round(b_new / batched_s, 1),
        "naive_s": round(naive_s, 2), "naive_tokens_per_s": round(n_new / naive_s, 1),
        "speedup_tokens_per_s": round((b_new / batched_s) / (n_new / naive_s), 2),
        "achieved_gflops": round(achieved / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "effective_gflops": round(effective / 1e9, 1), "effective_fraction_of_peak": round(effective / peak, 3),
        "prefix_cached_tokens": gen.stats.cached_prompt_tokens, "prompt_tokens": b_prompt,
        "uncached_s": round(uncached_s, 2), "prefix_cache_speedup": round(uncached_s / batched_s, 2),
        "prefix_cache_same_text": same_text,
    }
    for k, v in figures.items():
        print(f"{k:>24}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
