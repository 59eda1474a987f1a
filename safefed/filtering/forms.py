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
