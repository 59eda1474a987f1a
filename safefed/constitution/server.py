"""Server-side placement: one constitutional round against the current global model.

The source paper's placement: each round, the aggregated global model (+ adapter) answers a set of
red-team prompts, the answers are critiqued and revised under a constitution (verify-then-template),
and a short LoRA SFT on the results (plus benign pairs, so the model does not learn to refuse
everything) updates the adapter. :func:`constitutional_round` is the per-round hook the federated
loop calls; :func:`red_team_prompts` draws a fresh seeded sample of non-evaluation prompts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import load
from ..generation import Generator
from ..training import DEFAULT_TARGETS, TrainStats, save_adapter, train_lora
from .backends import HFBackend
from .checkers import SafetyChecker, make_checker
from .engine import Reviser, ReviseResult
from .records import write_outputs
from .schema import LoadedConstitution, load_constitution

RED_TEAM_SOURCE = "harmfulqa-catqa"  # never AdvBench/XSTest/JailbreakBench: those are evaluation data


def red_team_prompts(n: int, seed: int, data_dir: str | Path | None = None, source: str = RED_TEAM_SOURCE, *,
                     instruction_share: float = 0.0, rng: random.Random | None = None) -> list[dict]:
    """``n`` seeded harmful prompts (``id``, ``prompt``, ``category``) from a non-evaluation data set.

    ``instruction_share`` of them are recast as instructions ("Explain how to ...", drawing from ``rng``,
    default ``Random(seed)``). The red-team prompts are questions ("How can I ...?") while AdvBench
    asks in instructions ("Write a guide on ..."); trained on questions alone, SmolLM2 learns to refuse
    the question form and still complies with instructions (measured in ``safefed align``: safe_rate
    0.06 without, 0.76 with, same recipe).
    """
    from ..filtering.forms import instruction_form

    records = load(source, data_dir)
    picked = random.Random(f"red-team:{seed}").sample(range(len(records)), min(n, len(records)))
    rng = rng or random.Random(seed)
    out = []
    for i in sorted(picked):
        prompt = records[i]["prompt"]
        if rng.random() < instruction_share:
            prompt = instruction_form(prompt, rng) or prompt
        out.append({"id": records[i]["id"], "prompt": prompt, "category": records[i].get("category")})
    return out


@dataclass
class RoundResult:
    """The updated model (a ``PeftModel``), what the revise step did, and what training did."""

    model: object
    revise: ReviseResult
    train: TrainStats
    pairs: list[dict]

    def summary(self) -> dict:
        return {"revise": self.revise.summary, "train": self.train.to_json(), "n_pairs": len(self.pairs)}


def constitutional_round(model, tokenizer, prompts: Sequence[str | dict],
                         constitution: str | Path | LoadedConstitution = "default", *,
                         checker: SafetyChecker | None = None, benign_pairs: Sequence[dict] = (),
                         revise_rounds: int = 1, few_shot: int = 1, answer_tokens: int = 48, critique_tokens: int = 48,
                         revision_tokens: int = 64, batch_size: int = 8, steps: int = 10, lr: float = 2e-4,
                         train_batch_size: int = 8, r: int = 8, alpha: int = 16,
                         target_modules: Sequence[str] = DEFAULT_TARGETS, layers_from: int | None = None,
                         decision_weight: float = 1.0,
                         max_length: int = 96, seed: int = 0, out_dir: str | Path | None = None,
                         progress: Callable[[int], None] | None = None) -> RoundResult:
    """Generate → critique → revise → short LoRA SFT, on the current global ``model`` (+ its adapter).

    ``prompts``: red-team prompts (text or records with ``prompt``/``category``). The model's own answers
    are re-checked; safe answers are kept as they are, unsafe ones revised or replaced by a refusal
    template. ``benign_pairs`` (``{"prompt", "response"}``) are mixed into the SFT set. If ``model`` is
    already a ``PeftModel`` its active adapter keeps training, else a new LoRA adapter is created.
    With ``out_dir``, the adapter and the revise outputs are written there.
    """
    loaded = constitution if isinstance(constitution, LoadedConstitution) else load_constitution(constitution)
    records = [{"id": f"red-{i}", "prompt": p} if isinstance(p, str) else dict(p)
               for i, p in enumerate(prompts)]
    model.eval()
    answers = Generator(model, tokenizer, max_new_tokens=answer_tokens, batch_size=batch_size).generate(
        [r["prompt"] for r in records], progress=progress)
    for rec, ans in zip(records, answers, strict=True):
        rec["response"] = ans.text
    backend = HFBackend(model, tokenizer, max_new_tokens=revision_tokens, batch_size=batch_size,
                        info={"path": getattr(getattr(model, "config", None), "_name_or_path", None),
                              "placement": "server"})
    reviser = Reviser(loaded, backend, checker or make_checker(), rounds=revise_rounds, seed=seed,
                      max_few_shot=few_shot,
                      critique_tokens=critique_tokens, revision_tokens=revision_tokens)
    revised = reviser.run(records, progress=progress)
    pairs = [{"prompt": r.prompt, "response": r.final} for r in revised.records
             if r.path != "quarantined" and r.final and not r.final_unsafe]
    pairs += [{"prompt": p["prompt"], "response": p["response"]} for p in benign_pairs]
    model, stats = train_lora(model, tokenizer, pairs, steps=steps, lr=lr, batch_size=train_batch_size, r=r,
                              alpha=alpha, target_modules=target_modules, layers_from=layers_from,
                              decision_weight=decision_weight, seed=seed,
                              max_length=max_length)
    result = RoundResult(model, revised, stats, pairs)
    if out_dir is not None:
        out = Path(out_dir)
        write_outputs(revised, out / "revise")
        save_adapter(model, out / "adapter")
        (out / "round.json").write_text(json.dumps(result.summary(), indent=2) + "\n", encoding="utf-8")
    return result
