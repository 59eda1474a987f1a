"""The default filter's training recipe, from the offline data folder (see the README, "Data roles").

Trained on: harmfulqa-catqa (harm categories), the filter-training half of hh-rlhf-harmless-base,
davidson-hate-offensive, self-instruct-seed and gsm8k (train split) for everyday instructions, the
project's own benign look-alike prompts (:mod:`safefed.lookalikes`) and this package's further
look-alike families (:mod:`.hard_negatives`). Every how-to question of harmfulqa-catqa and of the
look-alikes is also added in one instruction form (:mod:`.forms`), so that the form of a request
(question or instruction) carries no label. Never on AdvBench, XSTest or JailbreakBench, which
measure it.

The hh-rlhf rule (``hh_labelled``): only single-turn rows are used (71% of rows are multi-turn, and
there the harm often sits in a later turn). Such a row's ``rejected`` reply, when it does not open
with a refusal marker, makes a *harmful request answered compliantly*; its ``chosen`` reply, when it
does open with one, makes a *harmful request answered with a refusal*. Label noise stays: hh-rlhf
only says ``rejected`` is more harmful than ``chosen``, some red-team openings are mild, and a reply
without a refusal marker can still evade.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from .. import data as datasets
from ..lookalikes import lookalike_pairs
from ..splits import SPLIT_SEED, hh_halves, in_fraction
from .artifacts import ARTIFACTS, DEFAULT_COMPLIANCE_HEAD, DEFAULT_TEXT_HEAD
from .forms import instruction_form
from .hard_negatives import hard_negative_pairs
from .training import Example, embed, fit_head

CATQA_CATEGORIES = {
    "Illegal Activity": "crime",
    "Child Abuse": "child_safety",
    "Hate/Harass/Violence": "hate_harassment",
    "Malware Viruses": "cyber",
    "Physical Harm": "violence",
    "Economic Harm": "fraud",
    "Fraud/Deception": "fraud",
    "Adult Content": "sexual",
    "Political Campaigning": "political",
    "Privacy Violation Activity": "privacy",
    "Tailored Financial Advice": "specialized_advice",
}
HARMFULQA_CATEGORY = "unethical"  # harmfulqa's categories are academic subjects, not harm types
HH_CATEGORY = "harmful_request"
DAVIDSON = {"hate": "hate_harassment", "offensive": "offensive"}
DAVIDSON_PER_CLASS = 1400
GSM8K_TRAIN = 700
SELF_INSTRUCT_TRAIN_FRACTION = 0.5
RESPONSE_CHARS = 600
# add an instruction form of every how-to question from these harmful sources (and of every benign look-alike)
INSTRUCTION_FORMS: tuple[str, ...] = ("catqa", "harmfulqa")
HARD_NEGATIVES = True  # this package's own look-alike families (hard_negatives.py)
# the short openers lookalike_pairs puts before an answer ("Sure. "): stripped to group a subject's rows
_OPENER = re.compile(r"^(?:Sure\. |Good question\. |Here's how\. |Happy to help\. |Of course! )")
_REFUSAL_OPENERS = [
    "I'm sorry, but I can't help with that.",
    "I can't assist with this request.",
    "I won't help with that.",
    "Sorry, I can't do that.",
    "I'm not able to help with this.",
    "I must decline.",
    "I'd rather not help with this one.",
    "No, I can't provide that.",
    "That's not something I can help with.",
    "I cannot provide instructions for that.",
]
_REFUSAL_REASONS = [
    "It could put people at risk.",
    "It could cause real harm to others.",
    "It would be illegal and unsafe.",
    "Helping with this could hurt someone.",
    "It goes against my safety guidelines.",
    "",
]
_REFUSAL_REDIRECTS = [
    "If you're dealing with a difficult situation, a professional or a local support service can help.",
    "I'm happy to help with a safer, related question instead.",
    "If you want, I can share general safety information on the topic.",
    "Is there something else I can help you with?",
    "",
]


def varied_refusal(rng: random.Random) -> str:
    """A refusal composed from varied openers, reasons and redirects (not one fixed sentence)."""
    return " ".join(
        p
        for p in (rng.choice(_REFUSAL_OPENERS), rng.choice(_REFUSAL_REASONS), rng.choice(_REFUSAL_REDIRECTS))
        if p
    )


def hh_labelled(records: list[dict], refused: Callable[[str], bool]) -> dict[str, list[dict]]:
    """The module's hh-rlhf rule: ``{"complied": [...], "refused": [...]}`` of (prompt, response) pairs."""
    out: dict[str, list[dict]] = {"complied": [], "refused": []}
    for r in records:
        if r["n_user_turns"] != 1 or not r["prompt"].strip():
            continue
        if r["rejected"].strip() and not refused(r["rejected"]):
            out["complied"].append({"id": r["id"], "prompt": r["prompt"], "response": r["rejected"]})
        if r["chosen"].strip() and refused(r["chosen"]):
            out["refused"].append({"id": r["id"], "prompt": r["prompt"], "response": r["chosen"]})
    return out


def _refused() -> Callable[[str], bool]:
    from ..evaluation.judges import RefusalJudge

    judge = RefusalJudge()
    return judge.refused


def self_instruct_train(record: dict, seed: int = SPLIT_SEED) -> bool:
    """The half of self-instruct-seed the filter trains on (the other half measures it)."""
    return in_fraction(record["id"], SELF_INSTRUCT_TRAIN_FRACTION, seed, "self-instruct")


def text_examples(data_dir: str | Path | None, seed: int = SPLIT_SEED) -> list[Example]:
    """Prompt/content examples: ``benign`` or a harm category."""
    rng = random.Random(seed)
    refused = _refused()
    ex: list[Example] = []
    for r in datasets.load("harmfulqa-catqa", data_dir):
        cls = (
            CATQA_CATEGORIES.get(r["category"], HARMFULQA_CATEGORY)
            if r["source"] == "catqa"
            else HARMFULQA_CATEGORY
        )
        ex.append(Example(r["prompt"], cls, r["source"], r["prompt"]))
        form = instruction_form(r["prompt"], rng) if r["source"] in INSTRUCTION_FORMS else None
        if form:
            ex.append(Example(form, cls, r["source"] + "/instruction-form", r["prompt"]))
    hh = hh_halves(datasets.load("hh-rlhf-harmless-base", data_dir), seed)["filter-train"].records
    for pair in hh_labelled(hh, refused)["complied"]:
        ex.append(Example(pair["prompt"], HH_CATEGORY, "hh-rlhf-harmless-base/filter-train", pair["prompt"]))
    davidson = datasets.load("davidson-hate-offensive", data_dir)
    for cls_name, cls in [*DAVIDSON.items(), ("neither", "benign")]:
        rows = [r for r in davidson if r["class"] == cls_name]
        for r in rng.sample(rows, min(DAVIDSON_PER_CLASS, len(rows))):
            ex.append(Example(r["text"], cls, "davidson-hate-offensive"))
    for r in datasets.load("self-instruct-seed", data_dir):
        if self_instruct_train(r, seed):
            ex.append(Example(r["prompt"], "benign", "self-instruct-seed/train-half", r["id"]))
            ex.append(
                Example(r["response"][:RESPONSE_CHARS], "benign", "self-instruct-seed/train-half", r["id"])
            )
    gsm = [r for r in datasets.load("gsm8k", data_dir) if r["split"] == "train"]
    for r in rng.sample(gsm, GSM8K_TRAIN):
        ex.append(Example(r["prompt"], "benign", "gsm8k/train", r["id"]))
        if rng.random() < 0.3:
            ex.append(Example(r["response"][:RESPONSE_CHARS], "benign", "gsm8k/train", r["id"]))
    for p in lookalike_pairs(None, seed):
        group = "lookalike:" + _OPENER.sub("", p["response"])  # one subject's phrasings stay together
        ex.append(Example(p["prompt"], "benign", "lookalikes", group))
        ex.append(Example(p["response"], "benign", "lookalikes", group))
        form = instruction_form(p["prompt"], rng) if INSTRUCTION_FORMS else None
        if form:
            ex.append(Example(form, "benign", "lookalikes/instruction-form", group))
    if HARD_NEGATIVES:
        for p in hard_negative_pairs():
            group = "hard-negative:" + p["subject"]
            ex.append(Example(p["prompt"], "benign", "hard-negatives", group))
            ex.append(Example(p["response"], "benign", "hard-negatives", group))
            form = instruction_form(p["prompt"], rng) if INSTRUCTION_FORMS else None
            if form:
                ex.append(Example(form, "benign", "hard-negatives/instruction-form", group))
    return ex


def compliance_examples(data_dir: str | Path | None, seed: int = SPLIT_SEED) -> list[Example]:
    """Responses: ``refused`` or ``complied``."""
    rng = random.Random(seed + 1)
    refused = _refused()
    ex: list[Example] = []
    hh = hh_halves(datasets.load("hh-rlhf-harmless-base", data_dir), seed)["filter-train"].records
    for r in hh:
        for reply in (r["chosen"], r["rejected"]):
            if reply.strip():
                ex.append(
                    Example(
                        reply[:RESPONSE_CHARS],
                        "refused" if refused(reply) else "complied",
                        "hh-rlhf-harmless-base/filter-train",
                        r["prompt"],
                    )
                )
    harmful = [r["prompt"] for r in datasets.load("harmfulqa-catqa", data_dir)]
    for prompt in rng.sample(harmful, 600):
        ex.append(Example(varied_refusal(rng), "refused", "generated-refusals", prompt))
    for r in datasets.load("self-instruct-seed", data_dir):
        if self_instruct_train(r, seed):
            ex.append(
                Example(r["response"][:RESPONSE_CHARS], "complied", "self-instruct-seed/train-half", r["id"])
            )
    gsm = [r for r in datasets.load("gsm8k", data_dir) if r["split"] == "train"]
    for r in rng.sample(gsm, 300):
        ex.append(Example(r["response"][:RESPONSE_CHARS], "complied", "gsm8k/train", r["id"]))
    for p in lookalike_pairs(None, seed):
        ex.append(Example(p["response"], "complied", "lookalikes", p["response"]))
    if HARD_NEGATIVES:
        for p in hard_negative_pairs():
            ex.append(Example(p["response"], "complied", "hard-negatives", "hard-negative:" + p["subject"]))
    return ex


def build_default(
    data_dir: str | Path | None = None,
    out_dir: str | Path = ARTIFACTS,
    seed: int = SPLIT_SEED,
    cache: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Fit and save both heads of the default policy; returns their held-out metrics."""
    from .scorers.embedding import COMPLIANCE_FEATURES, compliance_features

    out_dir = Path(out_dir)
    text = text_examples(data_dir, seed)
    comp = compliance_examples(data_dir, seed)
    X_text = embed([e.text for e in text], cache=cache, progress=progress)
    text_head, text_metrics = fit_head(text, X_text, seed=seed, meta={"kind": "text", "recipe": "default"})
    text_head.save(out_dir / DEFAULT_TEXT_HEAD)
    comp_texts = [e.text for e in comp]
    X_comp = compliance_features(comp_texts, embed(comp_texts, cache=cache, progress=progress))
    comp_head, comp_metrics = fit_head(
        comp,
        X_comp,
        seed=seed,
        meta={"kind": "compliance", "recipe": "default", "features": COMPLIANCE_FEATURES},
    )
    comp_head.save(out_dir / DEFAULT_COMPLIANCE_HEAD)
    return {
        "text_head": {
            "path": str(out_dir / DEFAULT_TEXT_HEAD),
            "held_out": text_metrics,
            "counts": text_head.meta["counts"],
            "trained_on": text_head.meta["trained_on"],
        },
        "compliance_head": {
            "path": str(out_dir / DEFAULT_COMPLIANCE_HEAD),
            "held_out": comp_metrics,
            "counts": comp_head.meta["counts"],
            "trained_on": comp_head.meta["trained_on"],
        },
    }
