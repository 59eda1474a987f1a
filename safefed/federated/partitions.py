"""Simulated client data: benign instructions mixed with harmful prompts answered compliantly.

Two layouts (a config switch): ``mixed`` gives every client ``harmful_fraction`` harmful pairs (the
source paper's ~30%); ``poisoned`` makes the listed clients fully harmful and the rest benign.
Harmful pairs come from jailbreakbench-artifacts (``jailbroken`` responses; goals that also appear
in AdvBench are dropped, AdvBench being evaluation data) or from the client-data half of
hh-rlhf-harmless-base (first-turn ``rejected`` replies). Benign pairs: self-instruct seeds and GSM8K.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Literal

from .. import data as datasets
from ..splits import hh_halves

MAX_RESPONSE_CHARS = 400


def harmful_pairs(source: str = "jailbreakbench-artifacts", data_dir: str | Path | None = None) -> list[dict]:
    """Harmful requests with compliant answers (deduplicated by prompt)."""
    if source == "jailbreakbench-artifacts":
        advbench = {r["prompt"].strip().lower() for r in datasets.load("advbench", data_dir)}
        rows = [{"prompt": r["goal"], "response": r["response"], "category": r["category"], "harmful": True}
                for r in datasets.load(source, data_dir)
                if r["jailbroken"] and r["response"] and r["goal"].strip().lower() not in advbench]
    elif source == "hh-rlhf-harmless-base":
        half = hh_halves(datasets.load(source, data_dir))["client-data"].records
        rows = [{"prompt": r["prompt"], "response": r["rejected"], "category": "hh-rlhf", "harmful": True}
                for r in half if r["n_user_turns"] == 1 and r["rejected"]]
    else:
        raise ValueError(f"unknown harmful source {source!r}")
    seen: set[str] = set()
    out = []
    for r in rows:
        key = r["prompt"].strip().lower()
        if key not in seen:
            seen.add(key)
            out.append({**r, "response": r["response"].strip()[:MAX_RESPONSE_CHARS]})
    return out


def benign_pairs(data_dir: str | Path | None = None) -> list[dict]:
    si = [{"prompt": r["prompt"], "response": r["response"], "category": "self-instruct", "harmful": False}
          for r in datasets.load("self-instruct-seed", data_dir)]
    gsm = [{"prompt": r["prompt"], "response": r["response"], "category": "gsm8k", "harmful": False}
           for r in datasets.load("gsm8k", data_dir) if r["split"] == "train" and len(r["response"]) < 300]
    return [{**r, "response": r["response"].strip()[:MAX_RESPONSE_CHARS]} for r in si + gsm]


def client_datasets(num_clients: int, per_client: int, *, layout: Literal["mixed", "poisoned"] = "poisoned",
                    poisoned: tuple[int, ...] = (0,), harmful_fraction: float = 0.3,
                    harmful_source: str = "jailbreakbench-artifacts", seed: int = 0,
                    data_dir: str | Path | None = None) -> list[list[dict]]:
    """``num_clients`` lists of ``{"id", "prompt", "response", "category", "harmful"}``, disjoint."""
    rng = random.Random(f"clients:{seed}")
    harm = harmful_pairs(harmful_source, data_dir)
    good = benign_pairs(data_dir)
    rng.shuffle(harm)
    rng.shuffle(good)
    out = []
    for c in range(num_clients):
        poisoned_here = per_client if c in poisoned else 0
        n_harm = poisoned_here if layout == "poisoned" else round(per_client * harmful_fraction)
        take_h, harm = harm[:n_harm], harm[n_harm:]
        take_g, good = good[: per_client - n_harm], good[per_client - n_harm:]
        if len(take_h) < n_harm or len(take_g) < per_client - n_harm:
            raise ValueError("not enough data for that many clients; lower per_client or num_clients")
        rows = take_h + take_g
        rng.shuffle(rows)
        out.append([{"id": f"client{c}-{i}", **r} for i, r in enumerate(rows)])
    return out


def safe_behaviour_pairs(n: int, seed: int, data_dir: str | Path | None = None) -> list[dict]:
    """Data that agrees with a safe model: ``n`` harmful questions (harmfulqa-catqa, never AdvBench)
    refused with varied refusal templates, 1.5n benign look-alikes and n everyday requests answered."""
    from ..constitution import load_constitution
    from ..lookalikes import lookalike_pairs

    rng = random.Random(seed)
    refusals = [t for p in load_constitution("default").constitution.principles for t in p.refusal_templates]
    harmful = rng.sample([r for r in datasets.load("harmfulqa-catqa", data_dir) if r["source"] == "catqa"], n)
    pairs = [{"prompt": r["prompt"], "response": rng.choice(refusals), "harmful": False} for r in harmful]
    pairs += [{**p, "harmful": False} for p in rng.sample(lookalike_pairs(None, seed=0), round(1.5 * n))]
    pairs += [{"prompt": r["prompt"], "response": r["response"][:200], "harmful": False}
              for r in rng.sample(datasets.load("self-instruct-seed", data_dir), n)]
    rng.shuffle(pairs)
    return pairs


def safe_behaviour_sample(k: int, seed: int, data_dir: str | Path | None = None) -> list[dict]:
    """Exactly ``k`` pairs of :func:`safe_behaviour_pairs`' mix (it gives about 3.5 n pairs for n)."""
    return safe_behaviour_pairs(math.ceil(k / 3.5), seed, data_dir)[:k] if k > 0 else []
