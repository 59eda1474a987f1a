"""Labelled (prompt, response) pairs for the pair classifier (the distilled student), from the data folder.

A pair is *unsafe* when the response helps with a harmful request or is itself harmful content; a
harmful request answered with a refusal, and a benign request that only sounds risky answered
helpfully, are *safe*. Gold labels come from the sets' own annotations; pairs without one are
scored by the teacher (``label=None``, :mod:`safefed.filtering.distill`).

Sources (never AdvBench, XSTest or JailbreakBench, which measure the filter):

- ``diasafety`` train and val (Safe/Unsafe, human-labelled; its test split measures);
- ``gptfuzz-labeled`` train (questions 0-79) without the 43 questions that are also in hh-rlhf's test
  file; its ``evaluate`` split (questions 80-99) measures;
- ``safetext`` scenarios outside its held-out part (:func:`safetext_held_out` measures);
- ``coconot-pref``: benign requests with the helpful answer, the less preferred one, alone, and with the
  same composed answer shapes as the harmful requests (all safe);
- ``cyberseceval-frr``: benign security requests, alone and with the composed answers (safe);
- ``ailuminate-demo``, ``harmfulqa-catqa`` and GPTFuzz's training questions: with a refusal (safe); with a
  generic compliant answer, an answer that restates the request, a refusal followed by compliance, and
  alone (unsafe, with the hazard code); again rephrased as an instruction (:mod:`.forms`); the
  specialised-advice prompts only with a refusal;
- ``davidson-hate-offensive``: hate (unsafe, S10) and neither (safe), as a prompt or as a response;
  neutral statements that mention groups (this module's templates) are safe;
- ``gsm8k`` train, the training half of ``self-instruct-seed``, the look-alike families (with their
  answers and with a generic helpful answer): safe;
- ``hh-rlhf-harmless-base``'s filter-train half, single-turn: the v1 rule (a ``rejected`` reply without a
  refusal marker is a compliant answer, a ``chosen`` one with a marker a refusal; :mod:`.recipe`) labels
  most replies; the rest has no label and goes to the teacher.

Every pair carries a ``group`` (the normalised prompt, or a scenario): the validation split holds
whole groups, so no prompt is in both.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import data as datasets
from ..lookalikes import lookalike_pairs
from ..splits import SPLIT_SEED, hh_halves, in_fraction
from .forms import compliant_answer, instruction_form, refuse_then_comply
from .hard_negatives import hard_negative_pairs
from .recipe import _refused, hh_labelled, self_instruct_train, varied_refusal

RESPONSE_CHARS = 1200
VALIDATION_FRACTION = 0.15
SAFETEXT_HELD_OUT = 0.3
# caps per source, so that no one set's style decides the student
CAPS = {"diasafety": 3000, "gptfuzz": 2400, "davidson": 2400, "gsm8k": 500}
AILUMINATE_HAZARDS = {
    "vcr": "S1", "ncr": "S2", "src": "S3", "cse": "S4", "dfm": "S5", "prv": "S7", "ipv": "S8", "iwp": "S9",
    "hte": "S10", "ssh": "S11", "sxc_prn": "S12",
}
CATQA_HAZARDS = {
    "Illegal Activity": "S2", "Child Abuse": "S4", "Hate/Harass/Violence": "S10", "Malware Viruses": "S2",
    "Physical Harm": "S1", "Economic Harm": "S2", "Fraud/Deception": "S2", "Adult Content": "S12",
    "Political Campaigning": "S13", "Privacy Violation Activity": "S7", "Tailored Financial Advice": "S6",
}
DIASAFETY_HAZARDS = {"Risk Ignorance": "S11", "Unauthorized Expertise": "S6", "Toxicity Agreement": "S10",
                     "Biased Opinion": "S10"}

# generic answers that carry no content of their own: the pair's label is the request's intent
_COMPLY = [
    "Sure, here's how to do it. First, gather what you need. Then follow the steps in order, and check each one "
    "before moving on.",
    "Absolutely. Here is a step-by-step guide: start with the preparation, then do the main part carefully, and "
    "finish by cleaning up so nothing is left behind.",
    "Happy to help! The key steps are planning, getting the materials, and then carrying it out quietly.",
    "Of course. Here's a detailed plan you can follow from start to finish.",
    "Here you go: step 1, prepare. Step 2, carry it out. Step 3, make sure no one notices.",
    "Great question! Here are the main methods people use, with the details for each.",
]
_HELPFUL = [
    "Sure! Here's an overview to get you started, with the main points and a few tips.",
    "Good question. In short: it depends on your setup, but the usual approach is to start simple and test as "
    "you go.",
    "Happy to help. Here are the key things to know, step by step.",
    "Of course. The main idea is straightforward; here is how it works and what to watch out for.",
    "Here's a short explanation with an example you can adapt.",
    "Great question! There are a few common ways to approach this; here's the one most people use.",
]
_NEUTRAL_GROUP = [
    "{g} live in many countries and work in every kind of job.",
    "Many {g} celebrate holidays with family meals and music.",
    "There are {g} in every generation who have shaped science, art and sport.",
    "A community centre hosted an evening where {g} shared stories about their grandparents.",
    "{g} are as varied as any other group: opinions, tastes and habits differ from person to person.",
    "The museum's new exhibition covers the history of {g} in the region.",
    "My neighbours are {g}, and we trade recipes every summer.",
    "Surveys show {g} hold a wide range of political views.",
]
_GROUP_NAMES = [
    "Muslims", "Jewish people", "Black people", "Asian Americans", "Latinos", "immigrants", "gay men", "lesbians",
    "transgender people", "women", "disabled people", "Mexicans", "Christians", "Hindus", "refugees",
    "Native Americans", "Arabs", "Chinese people", "Roma", "older people", "Sikhs", "Africans",
]
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Pair:
    """One training pair; ``label`` 1.0 unsafe / 0.0 safe / None (the teacher decides)."""

    prompt: str
    response: str
    label: float | None
    source: str
    group: str
    category: str | None = None


def group_key(text: str) -> str:
    return _WS.sub(" ", text.strip().lower())[:300]


def is_validation(pair: Pair, seed: int = SPLIT_SEED) -> bool:
    """Whole groups go to validation, so no prompt is on both sides."""
    return in_fraction(pair.group, VALIDATION_FRACTION, seed, "distill-validation")


def safetext_held_out(record: dict, seed: int = SPLIT_SEED) -> bool:
    """SafeText's measured part: whole scenarios, never trained on."""
    return in_fraction(str(record["scenario"]), SAFETEXT_HELD_OUT, seed, "safetext-held-out")


def _pair(prompt: str, response: str, label: float | None, source: str, category: str | None = None,
          group: str | None = None) -> Pair:
    return Pair(prompt, response[:RESPONSE_CHARS], label, source, group or group_key(prompt), category)


def _capped(rows: list, cap: int | None, rng: random.Random) -> list:
    return rows if cap is None or len(rows) <= cap else rng.sample(rows, cap)


def _harmful_prompt_pairs(prompt: str, hazard: str | None, source: str, rng: random.Random,
                          advice: bool = False) -> Iterable[Pair]:
    """A harmful request refused (safe); complied with and alone (unsafe). The compliant answers
    restate the request, and the request also appears as an instruction, so neither the form of the
    request nor one fixed answer carries the label."""
    yield _pair(prompt, varied_refusal(rng), 0.0, f"{source}/refused")
    if advice:  # specialised advice answered with care is acceptable: only its refusal is certain
        return
    group = group_key(prompt)
    yield _pair(prompt, rng.choice(_COMPLY), 1.0, f"{source}/complied", hazard)
    yield _pair(prompt, compliant_answer(prompt, rng), 1.0, f"{source}/restated", hazard)
    yield _pair(prompt, refuse_then_comply(prompt, varied_refusal(rng), rng), 1.0, f"{source}/refuse-then-comply",
                hazard)
    yield _pair(prompt, "", 1.0, f"{source}/prompt-only", hazard)
    form = instruction_form(prompt, rng)
    if form:
        yield _pair(form, compliant_answer(form, rng), 1.0, f"{source}/instruction", hazard, group=group)
        yield _pair(form, varied_refusal(rng), 0.0, f"{source}/instruction-refused", group=group)


def _benign_prompt_pairs(prompt: str, source: str, rng: random.Random) -> Iterable[Pair]:
    """The same answer shapes on a benign request: all safe."""
    group = group_key(prompt)
    yield _pair(prompt, rng.choice(_HELPFUL), 0.0, f"{source}/helpful")
    yield _pair(prompt, compliant_answer(prompt, rng), 0.0, f"{source}/restated")
    form = instruction_form(prompt, rng)
    if form:
        yield _pair(form, compliant_answer(form, rng), 0.0, f"{source}/instruction", group=group)
    if rng.random() < 0.25:  # an unneeded refusal that then helps is still safe
        yield _pair(prompt, refuse_then_comply(prompt, varied_refusal(rng), rng), 0.0,
                    f"{source}/refuse-then-help")


def gold_pairs(data_dir: str | Path | None = None, seed: int = SPLIT_SEED) -> list[Pair]:
    """Every gold-labelled pair, in a fixed order for a given seed."""
    rng = random.Random(seed)
    out: list[Pair] = []
    dia = [r for r in datasets.load("diasafety", data_dir) if r["split"] != "test"]
    for r in _capped(dia, CAPS["diasafety"], rng):
        harmful = r["label"] == "harmful"
        out.append(_pair(r["prompt"], r["response"], float(harmful), "diasafety",
                         DIASAFETY_HAZARDS.get(r["category"]) if harmful else None))
    fuzz = [r for r in datasets.load("gptfuzz-labeled", data_dir) if r["split"] == "train" and not r["in_hh_rlhf_test"]]
    harmful = [r for r in fuzz if r["label"] == "harmful"]  # every specific harmful answer; the rest capped
    for r in harmful + _capped([r for r in fuzz if r["label"] != "harmful"], CAPS["gptfuzz"] - len(harmful), rng):
        out.append(_pair(r["prompt"], r["response"], float(r["label"] == "harmful"), "gptfuzz"))
    for question in dict.fromkeys(r["prompt"] for r in fuzz):  # its harmful questions, with composed answers
        out += _harmful_prompt_pairs(question, None, "gptfuzz-questions", rng)
    for r in datasets.load("safetext", data_dir):
        if not safetext_held_out(r, seed):
            out.append(_pair(r["prompt"], r["response"], float(r["label"] == "harmful"), "safetext",
                             group=f"safetext-{r['scenario']}"))
    for r in datasets.load("coconot-pref", data_dir):
        out.append(_pair(r["prompt"], r["chosen"], 0.0, "coconot/chosen"))
        out.append(_pair(r["prompt"], r["rejected"], 0.0, "coconot/rejected"))
        # the same generic answers that make a harmful request unsafe keep a benign one safe
        out += _benign_prompt_pairs(r["prompt"], "coconot", rng)
        out.append(_pair(r["prompt"], "", 0.0, "coconot/prompt-only"))
    for r in datasets.load("cyberseceval-frr", data_dir):
        out.append(_pair(r["prompt"], "", 0.0, "cyberseceval-frr/prompt-only"))
        out += _benign_prompt_pairs(r["prompt"], "cyberseceval-frr", rng)
    for r in datasets.load("ailuminate-demo", data_dir):
        out += _harmful_prompt_pairs(r["prompt"], AILUMINATE_HAZARDS.get(r["hazard"]), "ailuminate", rng,
                                     advice=r["hazard"].startswith("spc"))
    for r in datasets.load("harmfulqa-catqa", data_dir):
        if r["source"] == "catqa":
            out += _harmful_prompt_pairs(r["prompt"], CATQA_HAZARDS.get(r["category"]), "catqa", rng,
                                         advice=r["category"] == "Tailored Financial Advice")
        else:
            out += _harmful_prompt_pairs(r["prompt"], None, "harmfulqa", rng)
    for kind, pairs in _hh_filter_train(data_dir, seed)[1].items():  # the v1 rule: rejected = complied
        for p in pairs:
            out.append(_pair(p["prompt"], p["response"], float(kind == "complied"), f"hh-rlhf/{kind}"))
    davidson = [r for r in datasets.load("davidson-hate-offensive", data_dir) if r["class"] != "offensive"]
    for r in _capped(davidson, CAPS["davidson"], rng):
        hate = r["class"] == "hate"
        prompt, response = (r["text"], "") if rng.random() < 0.5 else ("", r["text"])
        out.append(_pair(prompt, response, float(hate), "davidson", "S10" if hate else None, group=r["id"]))
    for i, template in enumerate(_NEUTRAL_GROUP):
        for g in _GROUP_NAMES:
            text = template.format(g=g)
            text = text[0].upper() + text[1:]
            prompt, response = (text, "") if rng.random() < 0.5 else ("", text)
            out.append(_pair(prompt, response, 0.0, "neutral-groups", group=f"neutral-group-{i}"))
    gsm = [r for r in datasets.load("gsm8k", data_dir) if r["split"] == "train"]
    for r in _capped(gsm, CAPS["gsm8k"], rng):
        out.append(_pair(r["prompt"], r["response"], 0.0, "gsm8k/train"))
    for r in datasets.load("self-instruct-seed", data_dir):
        if self_instruct_train(r, seed):
            out.append(_pair(r["prompt"], r["response"], 0.0, "self-instruct-seed/train-half"))
            out += _benign_prompt_pairs(r["prompt"], "self-instruct-seed", rng)
    for p in [*lookalike_pairs(None, seed), *hard_negative_pairs()]:
        out.append(_pair(p["prompt"], p["response"], 0.0, "lookalikes"))
        out += _benign_prompt_pairs(p["prompt"], "lookalikes", rng)
    return out


@functools.lru_cache(maxsize=4)
def _hh_filter_train(data_dir: str | Path | None, seed: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """hh-rlhf's filter-train half and the v1 rule's labels on it (read and labelled once per run)."""
    hh = hh_halves(datasets.load("hh-rlhf-harmless-base", data_dir), seed)["filter-train"].records
    return hh, hh_labelled(hh, _refused())


def teacher_pool(data_dir: str | Path | None = None, seed: int = SPLIT_SEED) -> list[Pair]:
    """Pairs without a gold label: hh-rlhf's filter-train half, single-turn replies the v1 rule leaves
    unlabelled (a ``chosen`` reply that does not refuse, a ``rejected`` one that does)."""
    hh, by_rule = _hh_filter_train(data_dir, seed)
    labelled = {(p["prompt"], p["response"]) for pairs in by_rule.values() for p in pairs}
    out = []
    for r in hh:
        if r["n_user_turns"] != 1 or not r["prompt"].strip():
            continue
        for reply in dict.fromkeys((r["rejected"], r["chosen"])):
            if reply.strip() and (r["prompt"], reply) not in labelled:
                out.append(_pair(r["prompt"], reply, None, "hh-rlhf-harmless-base/filter-train"))
    return out


def generic_helpful_answers() -> list[str]:
    """The generic answers used in training (the measurement sets use other wordings)."""
    return list(_HELPFUL)
