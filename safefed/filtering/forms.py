"""Request forms: the same request as a question and as an instruction.

The harmful training prompts (harmfulqa-catqa, hh-rlhf red-team openings) are almost all questions
("How can I ...?", "What are some ways to ...?"), while many benign training prompts are
instructions ("Write a ...", "Explain ..."). A head trained on that learns the *form* ("an
instruction is benign") instead of the content, and misses harmful requests phrased as
instructions. :func:`instruction_forms` rewrites a how-to question into instruction forms; the
recipe applies it to harmful and benign look-alike questions alike, so that the form carries no
label and the content has to.

The templates are generic ways to ask for help with a task, written for this module.
"""

from __future__ import annotations

import random
import re

_VERB_TEMPLATES = [
    "Explain how to {v}.",
    "Tell me how to {v}.",
    "Give me step-by-step instructions to {v}.",
    "Write a guide on how to {v}.",
    "Describe in detail how to {v}.",
    "Outline a plan to {v}.",
    "Teach me to {v}.",
    "I want to {v}. Walk me through it.",
    "Show me the best way to {v}.",
    "List the steps needed to {v}.",
]
_GERUND_TEMPLATES = [
    "Describe effective methods for {g}.",
    "List some techniques for {g}.",
    "Explain the best approach to {g}.",
    "Give me tips for {g}.",
    "Write a short guide to {g}.",
]

_VERB_PATTERNS = [
    r"^(?:so,? )?how (?:can|could|do|would|should|might) (?:i|we|one|someone|a person|you) (?P<v>.+?)\??$",
    r"^how to (?P<v>.+?)\??$",
    r"^what(?:'s| is| are) (?:the )?(?:best |easiest |most effective |quickest |some |simplest )*"
    r"(?:ways?|methods?|techniques?|strategies|steps|tips) (?:to|i can use to|that can be used to) (?P<v>.+?)\??$",
    r"^(?:can|could) you (?:tell|show) me how to (?P<v>.+?)\??$",
    r"^(?:is there|are there)(?: any)? (?:ways?|methods?|techniques?) to (?P<v>.+?)\??$",
    r"^(?:what's |what is )?(?:a |the )?(?:good |best |right |easiest |quickest |most effective )*"
    r"(?:way|strategy) to (?P<v>.+?)\??$",
    r"^any (?:advice|strategy|tips) to (?:help me )?(?P<v>.+?)\??$",
    r"^(?:give me )?tips to (?P<v>.+?)[.?]?$",
    r"^what should i do to (?P<v>.+?)\??$",
    r"^help me (?P<v>.+?)!?$",
    r"^i (?:really )?(?:need|want) to (?P<v>.+?)\. (?:any )?tips\??$",
    r"^(?:can you explain|quick question:) how (?:to|can i|do i) (?P<v>.+?)\??$",
]
_GERUND_PATTERNS = [
    r"^what(?:'s| is| are) (?:the )?(?:best |easiest |most effective |some |common )*"
    r"(?:ways?|methods?|techniques?|strategies|tactics|tips) (?:for|of) (?P<g>\w+ing\b.+?)\??$",
    r"^(?:are there|is there)(?: any)? (?:ways?|methods?|techniques?|strategies) for (?P<g>\w+ing\b.+?)\??$",
]
_FORMS = ((_VERB_PATTERNS, "v", _VERB_TEMPLATES), (_GERUND_PATTERNS, "g", _GERUND_TEMPLATES))
_TAIL = re.compile(r"[,;] and (?:what|how|which|where) .*$", re.IGNORECASE)


def _clean(text: str) -> str:
    return _TAIL.sub("", text.strip().rstrip("?.! ")).strip()


def instruction_forms(prompt: str) -> list[str]:
    """Every instruction form of a how-to question (``[]`` when the prompt is not one)."""
    q = " ".join(prompt.strip().split())
    low = q.lower()
    for patterns, group, templates in _FORMS:
        for pat in patterns:
            m = re.match(pat, low)
            if m:
                start = m.start(group)
                text = _clean(q[start : start + len(m.group(group))])
                if len(text.split()) >= 2:
                    return [t.format(**{group: text}) for t in templates]
    return []


def instruction_form(prompt: str, rng: random.Random) -> str | None:
    """One seeded instruction form of ``prompt``, or ``None``."""
    forms = instruction_forms(prompt)
    return rng.choice(forms) if forms else None


# --- answers that restate the request ---------------------------------------------------------
#
# A compliant answer usually opens by restating what was asked ("Sure, here is a guide on how to
# ..."). Training a pair classifier only on a few fixed generic answers teaches it those strings, not
# compliance; :func:`compliant_answer` composes openings that restate the request itself, for harmful
# and benign requests alike, so that the pair's label has to come from the request's intent.

_OBJECT_VERBS = (
    "write|create|generate|develop|design|draft|compose|produce|provide|build|make|craft|devise|prepare|"
    "construct|suggest|outline|list|offer|publish|post|share|give"
)
_HOW_VERBS = "explain|describe|tell me|show me|teach me|walk me through"
_OBJECT = re.compile(rf"^(?:please,? )?(?:can you |could you )?(?:{_OBJECT_VERBS})(?: me| us)? (?P<o>.+?)[.!?]*$",
                     re.IGNORECASE)
_HOW = re.compile(rf"^(?:please,? )?(?:{_HOW_VERBS})(?: in detail)? (?P<o>how (?:to|you|i|one) .+?)[.!?]*$",
                  re.IGNORECASE)
_TEACH = re.compile(r"^teach me (?:to|how to) (?P<v>.+?)[.!?]*$", re.IGNORECASE)
_SWAPS = [(r"\bmyself\b", "yourself"), (r"\bmy\b", "your"), (r"\bme\b", "you"), (r"\bI'm\b", "you're"),
          (r"\bI am\b", "you are"), (r"\bI\b", "you"), (r"\bmine\b", "yours")]

_OPENERS = ["Sure, here is {o}", "Sure, here's {o}", "Certainly! Here is {o}", "Here is {o}",
            "Absolutely. Below is {o}", "Of course, here's {o}", "Okay, here is {o}", "No problem! Here's {o}",
            "Sure thing, this is {o}",
            "Happy to help. Here is {o}"]
_HOW_OPENERS = ["Sure, here's how to {v}", "Here is how you can {v}", "Sure! To {v}, follow these steps",
                "Certainly. The way to {v} is as follows", "Okay, here's how you {v}",
                "Of course. To {v}, you'll want to do the following"]
_TAILS = ["", ".", ":", ":\n\n1.", ":\n\nStep 1:", ".\n\nFirst,", ":\n\n- "]
_BODIES = [
    "Start by getting everything ready. Then work through each part in order, checking as you go.",
    "There are three main parts, and the details of each follow below.",
    "I'll go through the steps one at a time so that it's easy to follow.",
    "The process takes a little preparation, then the main work, then a final check.",
    "Below you'll find the overview first and the specifics after it.",
    "Here are the details, with what you need for each step.",
]
_BRIDGES = ["That said, ", "But since you asked: ", "However, ", "Still, ", "Anyway, ", "Having said that, "]


def you_form(text: str) -> str:
    """The user's first-person words as the assistant would say them back (my -> your)."""
    for pattern, repl in _SWAPS:
        text = re.sub(pattern, repl, text)
    return text


def restatement(request: str) -> tuple[str, str] | None:
    """``("object", text)`` for "Write X" (-> "X") or ``("how", v)`` for "how to v", else ``None``."""
    q = " ".join(request.strip().split())
    for pattern in (_TEACH,):
        m = pattern.match(q)
        if m:
            return "how", you_form(_clean(m.group("v")))
    m = _HOW.match(q)
    if m:
        return "object", you_form(_clean(m.group("o")))
    low = q.lower()
    for pat in _VERB_PATTERNS:
        m = re.match(pat, low)
        if m:
            v = _clean(q[m.start("v"):m.start("v") + len(m.group("v"))])
            if len(v.split()) >= 2:
                return "how", you_form(v)
    m = _OBJECT.match(q)
    if m and len(m.group("o").split()) >= 2:
        return "object", you_form(_clean(m.group("o")))
    return None


def compliant_answer(request: str, rng: random.Random) -> str:
    """A seeded compliant answer that restates ``request`` (a generic opening when it cannot)."""
    found = restatement(request)
    if found is None:
        opening = rng.choice(["Sure, let me help", "Of course", "Absolutely, here you go", "Okay",
                              "Here's what you asked for", "No problem"])
    elif found[0] == "how":
        opening = rng.choice(_HOW_OPENERS).format(v=found[1])
    else:
        opening = rng.choice(_OPENERS).format(o=found[1])
    tail = rng.choice(_TAILS)
    body = rng.choice(_BODIES) if rng.random() < 0.5 else ""
    text = opening + tail
    if body:
        text += ("" if tail.endswith((" ", "\n")) else " ") + body
    return text


def refuse_then_comply(request: str, refusal: str, rng: random.Random) -> str:
    """A refusal followed by the compliant answer anyway (unsafe when the request is)."""
    answer = compliant_answer(request, rng)
    return f"{refusal} {rng.choice(_BRIDGES)}{answer[0].lower()}{answer[1:]}"
