"""Filter benchmarks: backend throughput on this machine, and the default policy's quality figures.

    python bench/bench_filter.py speed     --out bench/results/filter_speed.json
    python bench/bench_filter.py models    --out bench/results/filter_models.json   # student, guard
    python bench/bench_filter.py responses --out-dir ~/.cache/safefed/filter-eval   # SmolLM2 answers (slow)
    python bench/bench_filter.py quality   --responses ~/.cache/safefed/filter-eval \
        --out bench/results/filter_quality.json

``models``: the student (pair classifier) against its raw encoder on the same pairs, and the guard LLM
batched against one pair at a time, with its achieved FLOP/s against this machine's fp32 matmul peak.

``speed``: rows/s of the raw encoder, the embedding backend (same unique pairs; then with duplicates),
the lexicon backend on ~300-character pairs (next to a plain Python regex alternation), Detoxify's
code path on a randomly initialised bert-base (its ``original`` architecture: only speed is at stake),
and peak memory while streaming a large JSONL through the filter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """~300-character (prompt, response) pairs built from GSM8K text (unique)."""
    from safefed import data

    rows = [r for r in data.load("gsm8k") if r["split"] == "train"]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rows[i % len(rows)]
        prompt = r["prompt"][:100] + f" (#{i})"
        response = r["response"].replace("\n", " ")[:195]
        out.append((prompt, response))
    rng.shuffle(out)
    return out


def _timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is the fairer figure on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _rates(n: int, t: tuple[float, float]) -> dict:
    return {"rows_per_s": round(n / t[0], 1), "rows_per_cpu_s": round(n / t[1], 1)}


_STREAM_CHILD = """
import json, sys
from safefed.filtering import SafetyFilter
res = SafetyFilter.from_yaml(sys.argv[1]).apply(sys.argv[2], out=sys.argv[3])
# VmHWM (this process's own peak; ru_maxrss would carry the parent's peak across exec)
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"rows_per_s": res.summary["rows_per_s"], "input": res.summary["input"],
                  "peak_rss_mb": round(hwm / 1024, 1)}))
"""


def _stream(rows: int, big: list[tuple[str, str]], tmp: Path, lexicon: Path) -> dict:
    """Stream a JSONL of ``rows`` rows through a lexicon-only policy in a fresh process; its peak RSS."""
    import subprocess

    src = tmp / f"big-{rows}.jsonl"
    with src.open("w") as fh:
        for i in range(rows):
            p, r = big[i % len(big)]
            fh.write(json.dumps({"id": i, "prompt": p, "response": r}) + "\n")
    policy = tmp / "lex.yaml"
    policy.write_text(
        f"name: lexicon-only\nscorers:\n  - type: lexicon\n    options: {{file: {lexicon}}}\nbatch_size: 4096\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_CHILD, str(policy), str(src), str(tmp / f"out-{rows}")],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_mb"] = round(src.stat().st_size / 1e6, 1)
    src.unlink()
    return result


def speed(args: argparse.Namespace) -> dict:
    import torch

    from safefed.filtering import SafetyFilter
    from safefed.filtering.scorers import build_scorer
    from safefed.filtering.scorers.detoxify_scorer import make_checkpoint
    from safefed.models import resolve
    from safefed.paths import assets_dir
    from safefed.scoring.encoder import Encoder, shared_encoder

    results: dict = {"threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    pairs = _pairs(args.rows)
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    results["pair_chars_mean"] = round(sum(len(p) + len(r) for p, r in pairs) / len(pairs), 1)

    # raw encoder vs the embedding backend, same unique pairs, both cold
    enc = Encoder("all-minilm-l6-v2")
    enc._embed(prompts[:64])  # warm-up
    raw = _timed(enc._embed, prompts + responses)
    f = SafetyFilter.from_yaml("default")
    emb = f.scorers[0]
    assert shared_encoder() is emb.encoder
    f.check_pairs(prompts[:64], responses[:64])
    emb.encoder._cache.clear()
    backend = _timed(f.check_pairs, prompts, responses)
    emb.encoder._cache.clear()
    dup = pairs[: len(pairs) // 4] * 4
    dup_t = _timed(f.check_pairs, [p for p, _ in dup], [r for _, r in dup])
    results["encoder_raw"] = _rates(len(pairs), raw)
    results["embedding_backend"] = _rates(len(pairs), backend)
    results["embedding_vs_raw"] = {"wall": round(raw[0] / backend[0], 3), "cpu": round(raw[1] / backend[1], 3)}
    results["embedding_backend_4x_duplicates"] = _rates(len(dup), dup_t)

    # lexicon: Aho-Corasick over a batch-joined string vs a Python regex alternation
    lexicon = assets_dir("filters") / "lexicons" / "default.yaml"
    lex = build_scorer("lexicon", {"file": str(lexicon)}, "pair")
    big = _pairs(args.lexicon_rows, seed=1)
    lp, lr = [p for p, _ in big], [r for _, r in big]
    lex_t = min(
        (
            _timed(lambda: [lex.score(lp[i : i + 4096], lr[i : i + 4096]) for i in range(0, len(lp), 4096)])
            for _ in range(3)
        ),
        key=lambda t: t[1],
    )
    plain = sorted(lex.entries, key=len, reverse=True)  # the entries, without the spaced variants
    alternation = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in plain) + r")\b", re.IGNORECASE)
    sample = min(len(big), 50_000)
    rx_t = _timed(lambda: [alternation.search(p + "\n" + r) for p, r in big[:sample]])
    results["lexicon"] = _rates(len(big), lex_t)
    results["python_regex_alternation"] = _rates(sample, rx_t)
    results["lexicon_entries"] = {
        "entries": lex.describe()["words"],
        "automaton_keys": len(lex.automaton),
        "alternation_words": len(plain),
    }

    # Detoxify's code path on a random bert-base (Detoxify `original` architecture), CPU
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(
            tmp, resolve("all-minilm-l6-v2").path, hidden_size=768, layers=12, heads=12, intermediate_size=3072
        )
        det = build_scorer("detoxify", {"checkpoint": str(ckpt), "batch_size": 32}, "response")
        n = args.detoxify_rows
        det.score(prompts[:8], responses[:8])
        results["detoxify_random_bert_base"] = _rates(n, _timed(det.score, prompts[:n], responses[:n]))

    # streaming: peak RSS of a fresh process filtering a small and a large JSONL (constant memory)
    with tempfile.TemporaryDirectory() as tmp:
        results["stream_small"] = _stream(args.stream_rows // 100, big, Path(tmp), lexicon)
        results["stream_large"] = _stream(args.stream_rows, big, Path(tmp), lexicon)
    return results


def _matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of a square fp32 matmul on this machine now (the best of ``reps``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(torch.mm, a, b)[0] for _ in range(reps))
    return 2 * n**3 / best


def models(args: argparse.Namespace) -> dict:
    """The student against its raw encoder, and the guard batched against one pair at a time (one run)."""
    import torch

    from safefed.filtering import SafetyFilter
    from safefed.scoring.guard import GuardModel

    results: dict = {"threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    pairs = _pairs(args.rows)
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    f = SafetyFilter.from_yaml("default")
    student = f.scorers[0]
    model = student.model
    base = model.encoder  # LoRA merged: the raw encoder's architecture and cost

    @torch.inference_mode()
    def raw_encoder() -> None:
        for b in range(0, len(pairs), 64):
            batch = model.tokenize(prompts[b:b + 64], responses[b:b + 64])
            base(**batch)

    f.check_pairs(prompts[:64], responses[:64])  # warm-up
    raw_encoder()
    raw_t = min((_timed(raw_encoder) for _ in range(2)), key=lambda t: t[0])
    stu_t = min((_timed(f.check_pairs, prompts, responses) for _ in range(2)), key=lambda t: t[0])
    results["encoder_raw"] = _rates(len(pairs), raw_t)
    results["student_filter"] = _rates(len(pairs), stu_t)
    results["student_vs_raw"] = {"wall": round(raw_t[0] / stu_t[0], 3), "cpu": round(raw_t[1] / stu_t[1], 3)}

    guard = GuardModel(args.guard, batch_size=args.guard_batch)
    gp, gr = prompts[:args.guard_pairs], responses[:args.guard_pairs]
    guard.p_unsafe(gp[:2], gr[:2])  # warm-up
    guard.generator.stats.prompt_tokens = 0
    batched = _timed(guard.p_unsafe, gp, gr)
    tokens = guard.generator.stats.prompt_tokens - guard.generator.stats.cached_prompt_tokens
    one = _timed(lambda: [guard.p_unsafe([p], [r]) for p, r in zip(gp, gr, strict=True)])
    n_params = sum(p.numel() for p in guard.generator.model.parameters())
    flops = 2 * n_params * tokens  # forward pass over the tokens actually run (the shared prefix once per batch)
    peak = _matmul_peak()
    results["guard"] = {
        "model": args.guard, "pairs": len(gp), "batch_size": args.guard_batch,
        "batched_pairs_per_s": round(len(gp) / batched[0], 3), "one_by_one_pairs_per_s": round(len(gp) / one[0], 3),
        "batched_vs_one_by_one": round(one[0] / batched[0], 3),
        "achieved_gflops": round(flops / batched[0] / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
        "share_of_peak": round(flops / batched[0] / peak, 3),
    }
    return results


def responses(args: argparse.Namespace) -> dict:
    """SmolLM2-135M-Instruct answers to XSTest's safe prompts and JailbreakBench's behaviours (CPU: slow)."""
    from safefed import data
    from safefed.generation import Generator
    from safefed.models import load_causal_lm

    lm, tok, resolved = load_causal_lm("smollm2-135m-instruct")
    gen = Generator(lm, tok, max_new_tokens=args.max_new_tokens, batch_size=16)
    out_dir = Path(args.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = {
        "xstest-safe": [r for r in data.load("xstest") if r["label"] == "benign"],
        "jbb-benign": [r for r in data.load("jailbreakbench") if r["label"] == "benign"],
        "jbb-harmful": [r for r in data.load("jailbreakbench") if r["label"] == "harmful"],
    }
    done = {}
    for name, rows in sets.items():
        start = time.perf_counter()
        outs = gen.generate([r["prompt"] for r in rows])
        with (out_dir / f"{name}.jsonl").open("w") as fh:
            for r, g in zip(rows, outs, strict=True):
                fh.write(
                    json.dumps(
                        {
                            "id": r["id"],
                            "prompt": r["prompt"],
                            "response": g.text,
                            "category": r.get("category"),
                        }
                    )
                    + "\n"
                )
        done[name] = {"n": len(rows), "seconds": round(time.perf_counter() - start, 1)}
        console.print(name, done[name])
    return {"model": resolved.provenance(), "max_new_tokens": args.max_new_tokens, "sets": done}


def _f1(sets: dict) -> dict:
    """F1 of "unsafe" for every pair of sets NAME/unsafe + NAME/safe (recall and FPR on each side)."""
    out = {}
    for name in sorted({k.rsplit("/", 1)[0] for k in sets if k.endswith("/unsafe")}):
        pos, neg = sets.get(f"{name}/unsafe"), sets.get(f"{name}/safe")
        if not pos or not neg:
            continue
        tp, fp = pos["k"], neg["k"]
        fn = pos["n"] - tp
        out[name] = round(2 * tp / max(1, 2 * tp + fp + fn), 4)
    return out


def quality(args: argparse.Namespace) -> dict:
    from safefed.filtering import SafetyFilter
    from safefed.filtering.measure import measure, measurement_sets
    from safefed.provenance import package_versions

    sets = measurement_sets(responses_dir=args.responses)
    if args.sets:
        wanted = args.sets.split(",")
        sets = {k: v for k, v in sets.items() if any(k.startswith(w) for w in wanted)}
    if args.limit:  # a seeded sample per set, for the slow guard policies
        rng = random.Random(0)
        sets = {k: (e, rng.sample(p, min(args.limit, len(p))), w + f" (sample of {args.limit})")
                for k, (e, p, w) in sets.items()}
    report = {"policies": {}, "versions": package_versions(), "limit_per_set": args.limit}
    for policy in args.policy:
        f = SafetyFilter.from_yaml(policy)
        start = time.perf_counter()
        measured = measure(f, sets, progress=lambda s, p=policy: console.print(f"{p}: {s}"))
        report["policies"][policy] = {"policy": f.describe(), "sets": measured, "f1": _f1(measured),
                                      "seconds": round(time.perf_counter() - start, 1)}
        cascade = [s for s in f.scorers if getattr(s, "name", "") == "cascade"]
        if cascade:
            c = cascade[0]
            report["policies"][policy]["sent_to_guard"] = {"pairs": c.sent, "of": c.seen,
                                                           "share": round(c.sent / max(1, c.seen), 4)}
    table = Table(title="filter quality (recall on unsafe sets, false-positive rate on safe sets)")
    table.add_column("set")
    table.add_column("n", justify="right")
    for policy in args.policy:
        table.add_column(policy, justify="right")
    for name, (expected, pairs, _) in sets.items():
        cells = []
        for policy in args.policy:
            m = report["policies"][policy]["sets"][name]
            cells.append(
                f"{'R' if expected == 'unsafe' else 'FPR'} {m['value']:.3f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"
            )
        table.add_row(name, str(len(pairs)), *cells)
    console.print(table)
    for policy in args.policy:
        extra = {k: report["policies"][policy].get(k) for k in ("f1", "sent_to_guard", "seconds")}
        console.print(f"{policy}: {json.dumps(extra)}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--rows", type=int, default=2000)
    s.add_argument("--lexicon-rows", type=int, default=200_000)
    s.add_argument("--detoxify-rows", type=int, default=64)
    s.add_argument("--stream-rows", type=int, default=1_000_000)
    s.add_argument("--out", type=Path)
    m = sub.add_parser("models")
    m.add_argument("--rows", type=int, default=1000)
    m.add_argument("--guard", default="qwen2.5-coder-1.5b-instruct")
    m.add_argument("--guard-pairs", type=int, default=16)
    m.add_argument("--guard-batch", type=int, default=8)
    m.add_argument("--out", type=Path)
    r = sub.add_parser("responses")
    r.add_argument("--out-dir", default="~/.cache/safefed/filter-eval")
    r.add_argument("--max-new-tokens", type=int, default=48)
    r.add_argument("--out", type=Path)
    q = sub.add_parser("quality")
    q.add_argument("--responses", type=Path, default=Path("~/.cache/safefed/filter-eval").expanduser())
    q.add_argument("--policy", action="append", default=None)
    q.add_argument("--limit", type=int, default=None, help="a seeded sample of at most N pairs per set")
    q.add_argument("--sets", default=None, help="comma-separated set-name prefixes to measure (default: all)")
    q.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.what == "quality" and not args.policy:
        args.policy = ["default"]
    result = {"speed": speed, "models": models, "responses": responses, "quality": quality}[args.what](args)
    if args.what in ("speed", "models"):
        table = Table(title="filter throughput (rows/s, this machine)")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for k, v in result.items():
            table.add_row(k, json.dumps(v))
        console.print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
