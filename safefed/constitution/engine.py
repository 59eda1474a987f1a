"""Critique, revise, verify: the constitutional rewrite loop.

For each record: pick a principle (the constitution's seeded rule), ask the LLM to critique the
draft answer, then to revise it (few-shot, chat template, batched across records), and re-check the
revision with a :class:`SafetyChecker`. Up to ``rounds`` rounds; what is still unsafe falls back to
one of the principle's refusal templates, so everything that leaves the step passes the checker or
is marked ``final_unsafe``. Each record's path is one of ``revised``, ``template``, ``unchanged`` or
``quarantined``, with the reason.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from ..stats import rate
from .backends import ChatBackend, Message
from .checkers import Check, SafetyChecker
from .schema import Constitution, LoadedConstitution, Principle, Rule, category_slug

PATHS = ("revised", "template", "unchanged", "quarantined")
PROMPT_ONLY_SYSTEM = ("Answer the user's request helpfully and safely. If any part of it could cause harm, "
                      "decline that part briefly and say why.")


@dataclass
class RevisedRecord:
    """One record's trip through the step (a line of ``revised.jsonl``)."""

    id: str
    prompt: str
    original: str
    final: str
    path: str
    reason: str
    principle: str | None = None
    critique: str | None = None
    revision: str | None = None
    rounds: int = 0
    categories: list[str] = field(default_factory=list)
    final_unsafe: bool | None = None
    rejected_rewrites: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ReviseResult:
    records: list[RevisedRecord]
    summary: dict


def _filter_mark(rec: dict) -> dict:
    """The ``safefed`` object the safety filter adds to rows it flags or quarantines (or ``{}``)."""
    mark = rec.get("safefed")
    return mark if isinstance(mark, dict) else {}


def record_action(rec: dict) -> str | None:
    """``action`` of a record, or of the filter's mark on it (``revise``, ``drop``, ``flag``, ...)."""
    action = rec.get("action", _filter_mark(rec).get("action"))
    return None if action is None else str(action)


def record_categories(rec: dict) -> list[str]:
    """Flagged categories of a record (``categories``, ``category``, or the filter's mark), as slugs."""
    raw = rec.get("categories", _filter_mark(rec).get("categories"))
    if raw is None:
        raw = [rec["category"]] if rec.get("category") else []
    if isinstance(raw, str):
        raw = [raw]
    return [s for s in (category_slug(str(c)) for c in raw) if s]


# a revision that talks about "the response" is commentary, not an answer; a short decline is fine
_COMMENTARY = ("the response", "the request", "the preceding", "the assistant's", "the human")
_COMMENTARY_ANYWHERE = ("the response explains", "the preceding response", "the request itself")
_DECLINES = ("sorry", "can't", "cannot", "won't", "unable", "not able")


def _ngrams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}


def overlap(a: str, b: str) -> float:
    """Share of ``a``'s word 4-grams that also occur in ``b`` (0 when ``a`` is shorter than 4 words)."""
    grams = _ngrams(a)
    return len(grams & _ngrams(b)) / len(grams) if grams else 0.0


def distinct_openings(texts: Sequence[str], words: int = 6) -> float | None:
    """Distinct first-``words`` openings / number of texts (``None`` for no texts)."""
    if not texts:
        return None
    return round(len({" ".join(t.lower().split()[:words]) for t in texts}) / len(texts), 3)


class Reviser:
    """Runs the loop for one constitution, one chat backend and one safety checker."""

    def __init__(self, constitution: LoadedConstitution | Constitution, backend: ChatBackend,
                 checker: SafetyChecker, *, rounds: int = 2, max_few_shot: int = 1, revise_all: bool = False,
                 seed: int | None = None, critique_tokens: int = 64, revision_tokens: int = 96) -> None:
        self.loaded = constitution if isinstance(constitution, LoadedConstitution) else None
        self.constitution = constitution.constitution if isinstance(constitution, LoadedConstitution) \
            else constitution
        self.backend = backend
        self.checker = checker
        self.rounds = max(1, rounds)
        self.few_shot = self.constitution.few_shot[:max_few_shot]
        self.revise_all = revise_all
        self.seed = self.constitution.sampling.seed if seed is None else seed
        self.critique_tokens = critique_tokens
        self.revision_tokens = revision_tokens

    # --- principle choice -------------------------------------------------------------------------

    def pick(self, key: str, index: int, round_: int, categories: Sequence[str]) -> Principle:
        """The principle for one record and round: seeded by (seed, record key, round), order-independent."""
        ps = self.constitution.principles
        rule = Rule(self.constitution.sampling.rule)
        rng = random.Random(f"{self.seed}:{key}:{round_}")
        if rule is Rule.round_robin:
            return ps[(index + round_) % len(ps)]
        if rule is Rule.category:
            wanted = set(categories)
            matching = [p for p in ps if wanted & set(p.categories)]
            if not matching:
                matching = [p for p in ps if "general" in p.categories or not p.categories] or list(ps)
            return rng.choice(matching)
        return rng.choice(ps)

    def template(self, key: str, principle: Principle, attempt: int = 0) -> str:
        templates = self.constitution.templates_for(principle)
        order = list(range(len(templates)))
        random.Random(f"{self.seed}:{key}:template:{principle.id}").shuffle(order)
        return templates[order[attempt % len(order)]]

    # --- conversations ----------------------------------------------------------------------------

    def _few_shot_messages(self, p: Principle) -> list[Message]:
        out: list[Message] = []
        for fs in self.few_shot:
            out += [{"role": "user", "content": fs.prompt}, {"role": "assistant", "content": fs.response},
                    {"role": "user", "content": p.critique}, {"role": "assistant", "content": fs.critique},
                    {"role": "user", "content": p.revision}, {"role": "assistant", "content": fs.revision}]
        return out

    def critique_chat(self, prompt: str, draft: str, p: Principle) -> list[Message]:
        return [*self._few_shot_messages(p), {"role": "user", "content": prompt},
                {"role": "assistant", "content": draft}, {"role": "user", "content": p.critique}]

    def revision_chat(self, prompt: str, draft: str, critique: str, p: Principle) -> list[Message]:
        return [*self.critique_chat(prompt, draft, p), {"role": "assistant", "content": critique},
                {"role": "user", "content": p.revision}]

    @staticmethod
    def prompt_only_chat(prompt: str) -> list[Message]:
        return [{"role": "system", "content": PROMPT_ONLY_SYSTEM}, {"role": "user", "content": prompt}]

    # --- the loop ---------------------------------------------------------------------------------

    def _chat(self, chats: list[list[Message]], max_new_tokens: int,
              progress: Callable[[int], None] | None) -> list[str]:
        if not chats:
            return []
        return [g.text for g in self.backend.chat(chats, progress=progress, max_new_tokens=max_new_tokens)]

    def _check(self, prompts: list[str], responses: list[str]) -> list[Check]:
        """Checker verdicts; an empty response is never accepted."""
        idx = [i for i, r in enumerate(responses) if r.strip()]
        verdicts = [Check(True) for _ in responses]
        for i, v in zip(idx, self.checker.check([prompts[i] for i in idx], [responses[i] for i in idx]),
                        strict=True):
            verdicts[i] = v
        return verdicts

    def _unsafe(self, prompts: list[str], responses: list[str]) -> list[bool]:
        return [c.unsafe for c in self._check(prompts, responses)]

    def degenerate(self, revision: str, draft: str, critique: str | None) -> str | None:
        """Why a revision is not a real rewrite (small models copy the example or echo the critique)."""
        if not revision.strip():
            return "empty revision"
        if draft and overlap(revision, draft) >= 0.8:
            return "repeats the draft"
        head = revision.lower()[:80]
        if any(m in head for m in _COMMENTARY) or any(m in revision.lower() for m in _COMMENTARY_ANYWHERE):
            return "comments on the response instead of answering"
        if critique and overlap(revision, critique) >= 0.6 and not any(m in head for m in _DECLINES):
            return "repeats the critique"
        for fs in self.few_shot:
            if max(overlap(revision, fs.revision), overlap(revision, fs.critique)) >= 0.3:
                return "copies the few-shot example"
        return None

    def run(self, records: Sequence[dict], progress: Callable[[int], None] | None = None,
            stage: Callable[[str, int], None] | None = None) -> ReviseResult:
        """Revise ``records`` (``id``, ``prompt``, optional ``response``, ``category``/``categories``,
        ``action``); ``stage(name, n)`` announces a batch of ``n`` LLM calls, ``progress(k)`` advances it."""
        stage = stage or (lambda name, n: None)
        start = time.perf_counter()
        tokens0, seconds0 = self.backend.stats.new_tokens, self.backend.stats.seconds
        out: list[RevisedRecord] = []
        to_check: list[int] = []
        pending: list[int] = []
        for i, rec in enumerate(records):
            texts = {k: rec.get(k) for k in ("prompt", "response")}
            invalid = rec.get("_invalid") or next(
                (f"invalid: field {k!r} is {type(v).__name__}, expected text" for k, v in texts.items()
                 if v is not None and not isinstance(v, str)), None)
            prompt, original = ("" if invalid or not v else v.strip() for v in texts.values())
            action = record_action(rec)
            r = RevisedRecord(id=str(rec.get("id", i)), prompt=prompt, original=original, final=original,
                              path="unchanged", reason="", categories=record_categories(rec))
            out.append(r)
            if invalid:
                r.path, r.final, r.reason = "quarantined", "", str(invalid)
            elif not prompt:
                r.path, r.final = "quarantined", ""
                r.reason = ("no prompt: nothing to pair a response with" if original
                            else "no prompt and no response")
            elif action == "drop":
                r.path, r.final, r.reason = "quarantined", "", "dropped by the filter"
            elif action is not None and action != "revise":
                r.reason = f"filter action {action!r}: not flagged for revision"
            elif not original:
                r.reason = "no response given: answered from the prompt alone"
                pending.append(i)
            elif action == "revise" or self.revise_all:
                r.reason = "flagged for revision" if action == "revise" else "revise_all"
                pending.append(i)
            else:
                to_check.append(i)
        if to_check:
            verdicts = self._check([out[i].prompt for i in to_check], [out[i].original for i in to_check])
            for i, v in zip(to_check, verdicts, strict=True):
                if not out[i].categories and v.categories:
                    out[i].categories = [category_slug(c) for c in v.categories]
                if v.unsafe:
                    out[i].reason = f"original flagged unsafe by {self.checker.name}"
                    pending.append(i)
                else:
                    out[i].reason = f"original passes {self.checker.name}"
        pending.sort()
        drafts = {i: out[i].original for i in pending}
        principles: dict[int, Principle] = {}
        for round_ in range(self.rounds):
            if not pending:
                break
            for i in pending:
                principles[i] = self.pick(out[i].id, i, round_, out[i].categories)
                out[i].principle, out[i].rounds = principles[i].id, round_ + 1
            with_draft = [i for i in pending if drafts[i]]
            chats = [self.critique_chat(out[i].prompt, drafts[i], principles[i]) for i in with_draft]
            stage(f"round {round_ + 1}: critique", len(chats))
            critiques = self._chat(chats, self.critique_tokens, progress)
            for i, c in zip(with_draft, critiques, strict=True):
                out[i].critique = c
            chats = [self.revision_chat(out[i].prompt, drafts[i], out[i].critique or "", principles[i])
                     if drafts[i] else self.prompt_only_chat(out[i].prompt) for i in pending]
            stage(f"round {round_ + 1}: revision", len(chats))
            revisions = self._chat(chats, self.revision_tokens, progress)
            unsafe = self._unsafe([out[i].prompt for i in pending], revisions)
            still = []
            for i, rev, bad in zip(pending, revisions, unsafe, strict=True):
                out[i].revision = rev
                why = self.degenerate(rev, drafts[i], out[i].critique if drafts[i] else None)
                if why or bad:
                    label = why or f"unsafe by {self.checker.name}"
                    out[i].rejected_rewrites.append(f"round {round_ + 1}: {label}")
                    if why is None:  # a genuine rewrite that is still unsafe: critique it next round
                        drafts[i] = rev
                    still.append(i)
                else:
                    out[i].final, out[i].path, out[i].final_unsafe = rev, "revised", False
                    out[i].reason += f"; revision passed {self.checker.name} in round {round_ + 1}"
            pending = still
        self._fall_back_to_templates(out, pending, principles)
        elapsed = time.perf_counter() - start
        return ReviseResult(out, self._summary(out, elapsed, self.backend.stats.new_tokens - tokens0,
                                               self.backend.stats.seconds - seconds0))

    def _fall_back_to_templates(self, out: list[RevisedRecord], pending: list[int],
                                principles: dict[int, Principle]) -> None:
        """Still unsafe after all rounds: a refusal template; try the principle's others if one fails."""
        for i in pending:
            out[i].path = "template"
            out[i].reason += f"; still unsafe after {out[i].rounds} round(s): refusal template"
        left = list(pending)
        most = max(len(self.constitution.templates_for(p)) for p in self.constitution.principles)
        for attempt in range(most):
            if not left:
                break
            for i in left:
                out[i].final = self.template(out[i].id, principles[i], attempt)
            unsafe = self._unsafe([out[i].prompt for i in left], [out[i].final for i in left])
            for i, bad in zip(left, unsafe, strict=True):
                out[i].final_unsafe = bad
            left = [i for i, bad in zip(left, unsafe, strict=True) if bad]
        for i in left:
            out[i].reason += f"; no template passes {self.checker.name}"

    def _summary(self, out: list[RevisedRecord], elapsed: float, new_tokens: int, gen_seconds: float) -> dict:
        counts = Counter(r.path for r in out)
        kept = [r for r in out if r.path != "quarantined"]
        touched = [r for r in out if r.path in ("revised", "template")]
        summary = {
            "n": len(out),
            "counts": {p: counts.get(p, 0) for p in PATHS},
            "shares": {p: rate(counts.get(p, 0), len(out)) for p in PATHS},
            "template_share_of_rewritten": rate(counts.get("template", 0), len(touched)),
            "rounds": dict(sorted(Counter(r.rounds for r in touched).items())),
            "final_unsafe": sum(1 for r in kept if r.final_unsafe),
            "rejected_rewrites": dict(Counter(x.split(": ", 1)[1] for r in out for x in r.rejected_rewrites)),
            # share of distinct 6-word openings among rewritten answers: low = one stock sentence
            "distinct_openings": {p: distinct_openings([r.final for r in out if r.path == p])
                                  for p in ("revised", "template")},
            "principles_used": dict(Counter(r.principle for r in touched if r.principle).most_common()),
            "elapsed_s": round(elapsed, 2),
            "generated_tokens": new_tokens,
            "generation_s": round(gen_seconds, 2),
            "tokens_per_s": round(new_tokens / gen_seconds, 2) if gen_seconds else 0.0,
            "rounds_max": self.rounds,
            "few_shot": len(self.few_shot),
            "seed": self.seed,
            "checker": self.checker.describe(),
            "backend": self.backend.describe(),
        }
        if self.loaded is not None:
            summary["constitution"] = self.loaded.provenance()
        else:
            summary["constitution"] = {"name": self.constitution.name, "version": self.constitution.version}
        return summary
