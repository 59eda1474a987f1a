"""How well a policy separates unsafe from safe training pairs, on data it was not trained on.

Unsafe sets (recall): harmful requests answered compliantly. Safe sets (false-positive rate):
harmful requests answered with a refusal, benign-but-risky prompts answered helpfully (XSTest's 250
safe prompts and JailbreakBench's benign behaviours, measured only, never trained on), everyday
instructions with their answers. Responses to XSTest/JailbreakBench prompts come from a real model
(``responses_dir``: JSONL files written by ``bench/bench_filter.py responses``); without them those
sets are measured on the prompt alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from .. import data as datasets
from ..splits import SPLIT_SEED, advbench_pools, hh_halves
from ..stats import rate
from .engine import SafetyFilter
from .pairs import safetext_held_out
from .recipe import _refused, hh_labelled, self_instruct_train

Pairs = list[tuple[str, str]]
GSM8K_TEST_SAMPLE = 500
# measurement wordings, kept apart from the training ones (pairs.py, recipe.py)
GENERIC_ANSWERS = [
    "Sure, I can help with that. Here is a brief explanation and a couple of practical pointers.",
    "Certainly! Below is a short answer, followed by the details you might need.",
    "Glad you asked. Here's a quick rundown of what matters most.",
    "Yes. Here is a simple way to think about it, with an example.",
]
REFUSALS = [
    "I can't help with that request.",
    "Sorry, but I won't provide that. Is there something else I can do for you?",
    "I'm not able to assist with this, as it could cause harm.",
    "That's something I have to decline.",
]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def measurement_sets(
    data_dir: str | Path | None = None, responses_dir: str | Path | None = None, seed: int = SPLIT_SEED
) -> dict[str, tuple[str, Pairs, str]]:
    """``name -> (expected "unsafe"|"safe", pairs, what it is)``."""
    refused = _refused()
    sets: dict[str, tuple[str, Pairs, str]] = {}
    hh = hh_labelled(
        hh_halves(datasets.load("hh-rlhf-harmless-base", data_dir), seed)["client-data"].records, refused
    )
    sets["hh-client/complied"] = (
        "unsafe",
        [(p["prompt"], p["response"]) for p in hh["complied"]],
        "hh-rlhf client-data half, single-turn, `rejected` without refusal marker",
    )
    sets["hh-client/refused"] = (
        "safe",
        [(p["prompt"], p["response"]) for p in hh["refused"]],
        "hh-rlhf client-data half, single-turn, `chosen` opening with a refusal marker",
    )
    art = datasets.load("jailbreakbench-artifacts", data_dir)
    seen: set[tuple[str, str]] = set()
    jail, ref = [], []
    for r in art:
        if (
            not isinstance(r["response"], str)
            or not r["response"].strip()
            or (r["goal"], r["response"]) in seen
        ):
            continue
        seen.add((r["goal"], r["response"]))
        if r["jailbroken"]:
            jail.append((r["goal"], r["response"]))
        elif refused(r["response"]):
            ref.append((r["goal"], r["response"]))
    sets["jbb-artifacts/jailbroken"] = (
        "unsafe",
        jail,
        "JailbreakBench artifacts labelled jailbroken (goal, response)",
    )
    sets["jbb-artifacts/refused"] = (
        "safe",
        ref,
        "JailbreakBench artifacts not jailbroken, response a refusal",
    )
    adv = advbench_pools(datasets.load("advbench", data_dir))["eval"].records
    sets["advbench-eval/target"] = (
        "unsafe",
        [(r["prompt"], r["target"]) for r in adv],
        "AdvBench eval pool: goal + its compliant `target` opening",
    )
    responses_dir = Path(responses_dir) if responses_dir else None
    for name, dataset, label, expected in (
        ("xstest-safe", "xstest", "benign", "safe"),
        ("jbb-benign", "jailbreakbench", "benign", "safe"),
        ("jbb-harmful", "jailbreakbench", "harmful", "unsafe"),
    ):
        prompts = [r["prompt"] for r in datasets.load(dataset, data_dir) if r["label"] == label]
        if expected == "safe":
            sets[f"{name}/prompt-only"] = (
                expected,
                [(p, "") for p in prompts],
                f"{dataset} {label} prompts alone",
            )
        gen = responses_dir / f"{name}.jsonl" if responses_dir else None
        if gen and gen.is_file():
            rows = _read_jsonl(gen)
            pairs = [
                (r["prompt"], r["response"]) for r in rows if expected == "safe" or not refused(r["response"])
            ]
            sets[f"{name}/smollm2"] = (
                expected,
                pairs,
                f"{dataset} {label} prompts + SmolLM2-135M-Instruct answers"
                + (" (refusals left out)" if expected == "unsafe" else ""),
            )
    for name, dataset, label in (("xstest-safe", "xstest", "benign"), ("jbb-benign", "jailbreakbench", "benign")):
        prompts = [r["prompt"] for r in datasets.load(dataset, data_dir) if r["label"] == label]
        sets[f"{name}/generic-answer"] = (
            "safe",
            [(p, GENERIC_ANSWERS[i % len(GENERIC_ANSWERS)]) for i, p in enumerate(prompts)],
            f"{dataset} {label} prompts, each with a short generic helpful answer",
        )
    sets["advbench-eval/refusal"] = (
        "safe",
        [(r["prompt"], REFUSALS[i % len(REFUSALS)]) for i, r in enumerate(adv)],
        "AdvBench eval pool goals, each answered with a refusal",
    )
    fuzz = [r for r in datasets.load("gptfuzz-labeled", data_dir)
            if r["split"] == "evaluate" and not r["in_hh_rlhf_test"]]
    sets["gptfuzz-evaluate/harmful"] = (
        "unsafe",
        [(r["prompt"], r["response"]) for r in fuzz if r["label"] == "harmful"],
        "GPTFuzz evaluate split (questions 80-99, none in hh-rlhf test), labelled harmful compliance",
    )
    sets["gptfuzz-evaluate/not-harmful"] = (
        "safe",
        [(r["prompt"], r["response"]) for r in fuzz if r["label"] == "benign"],
        "GPTFuzz evaluate split labelled not harmful (refusals and harmless answers)",
    )
    dia = [r for r in datasets.load("diasafety", data_dir) if r["split"] == "test"]
    st = [r for r in datasets.load("safetext", data_dir) if safetext_held_out(r, seed)]
    for name, rows, what in (("diasafety-test", dia, "DiaSafety test split"),
                             ("safetext-held-out", st, "SafeText scenarios held out from training")):
        for expected, label in (("unsafe", "harmful"), ("safe", "benign")):
            sets[f"{name}/{expected}"] = (
                expected,
                [(r["prompt"], r["response"]) for r in rows if r["label"] == label],
                f"{what}, labelled {expected}",
            )
    si = [r for r in datasets.load("self-instruct-seed", data_dir) if not self_instruct_train(r, seed)]
    sets["self-instruct/held-out"] = (
        "safe",
        [(r["prompt"], r["response"]) for r in si],
        "self-instruct-seed half not trained on",
    )
    gsm = [r for r in datasets.load("gsm8k", data_dir) if r["split"] == "test"]
    gsm = random.Random(seed).sample(gsm, GSM8K_TEST_SAMPLE)
    sets["gsm8k-test"] = ("safe", [(r["prompt"], r["response"]) for r in gsm], "GSM8K test sample (500)")
    return sets


def measure(
    f: SafetyFilter, sets: dict[str, tuple[str, Pairs, str]], progress: Callable[[str], None] | None = None
) -> dict:
    """Per set: recall (unsafe sets) or false-positive rate (safe sets), with Wilson intervals."""
    out = {}
    for name, (expected, pairs, what) in sets.items():
        if progress:
            progress(name)
        decisions = []
        for b in range(0, len(pairs), 256):
            chunk = pairs[b : b + 256]
            decisions += f.check_pairs([p for p, _ in chunk], [r for _, r in chunk])
        k = sum(d.unsafe for d in decisions)
        metric = "recall" if expected == "unsafe" else "false_positive_rate"
        top = [_top_score(d) for d in decisions]
        sweep = {f"{t:.1f}": rate(sum(v >= t for v in top), len(top))["value"] for t in SWEEP}
        cats: dict[str, int] = {}
        for d in decisions:
            for c in d.categories[:1]:
                cats[c] = cats.get(c, 0) + 1
        out[name] = {
            "expected": expected,
            "metric": metric,
            **rate(k, len(pairs)),
            "what": what,
            "top_categories": dict(sorted(cats.items(), key=lambda x: -x[1])[:5]),
            "rate_at_threshold": sweep,
        }
    return out


SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_DIAGNOSTICS = {"prompt_harm", "response_harm", "complied", "p_unsafe", "guard_p_unsafe", "by_guard"}


def _top_score(d) -> float:
    """The highest category score of a decision (for threshold sweeps of one-scorer policies)."""
    return max((v for row in d.scores.values() for k, v in row.items() if k not in _DIAGNOSTICS), default=0.0)
