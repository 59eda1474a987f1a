"""The constitution schema: principles (critique + revision requests, harm categories, refusal
templates), optional few-shot demonstrations, and the seeded rule that picks a principle per sample.

Loading goes through :mod:`safefed.yamlio` (size cap, no aliases, bounded depth, line marks), so
every problem is reported as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..errors import UserError
from ..paths import find_asset
from ..provenance import file_hash
from ..yamlio import load_yaml, validate

MIN_TEMPLATES = 5
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def _non_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _as_text(value: Any) -> Any:
    """YAML reads ``version: 1.0`` as a float: accept numbers as text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Text = Annotated[str, AfterValidator(_non_blank)]
Version = Annotated[str, BeforeValidator(_as_text), AfterValidator(_non_blank)]


def category_slug(name: str) -> str:
    """``"Malware/Hacking"`` -> ``"malware-hacking"``: how record categories meet principle categories."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Rule(str, Enum):
    """How a principle is chosen for each sample (always seeded, independent of record order)."""

    random = "random"            # one random principle per sample and round
    round_robin = "round_robin"  # all principles in turn (sample i, round r -> principle (i + r) mod n)
    category = "category"        # a random principle among those matching the sample's flagged categories


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: Rule = Rule.random
    seed: int = 0


class Principle(BaseModel):
    """One principle: what to critique, how to revise, where it applies, how to refuse."""

    model_config = ConfigDict(extra="forbid")
    id: Text
    critique: Text
    revision: Text
    categories: list[str] = Field(default_factory=list)
    refusal_templates: list[Text] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(f"id {v!r} must be lower case letters, digits, '-' or '_'")
        return v

    @field_validator("categories")
    @classmethod
    def _cats(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            slug = category_slug(c)
            if not slug:
                raise ValueError(f"category {c!r} is empty")
            out.append(slug)
        return out


class FewShot(BaseModel):
    """A worked example: request, draft answer, critique of the draft, revised answer."""

    model_config = ConfigDict(extra="forbid")
    prompt: Text
    response: Text
    critique: Text
    revision: Text


class Constitution(BaseModel):
    """A named, versioned set of principles that drive critique-and-revise."""

    model_config = ConfigDict(extra="forbid")
    name: Text
    version: Version
    description: Text
    principles: list[Principle] = Field(min_length=1)
    refusal_templates: list[Text] = Field(default_factory=list)
    few_shot: list[FewShot] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)

    def principle(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def templates_for(self, principle: Principle) -> list[str]:
        """The principle's refusal templates, topped up from the constitution's and the built-in pool
        until there are at least :data:`MIN_TEMPLATES` (one fixed sentence teaches blanket refusal)."""
        out = list(dict.fromkeys(principle.refusal_templates))
        for t in [*self.refusal_templates, *GENERIC_REFUSALS]:
            if len(out) >= MIN_TEMPLATES:
                break
            if t not in out:
                out.append(t)
        return out

    def warnings(self) -> list[str]:
        """Advice that does not make the file invalid (e.g. too few refusal templates)."""
        out = []
        few = [p.id for p in self.principles if len(p.refusal_templates) < MIN_TEMPLATES]
        if few:
            shown = ", ".join(few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
            out.append(f"{len(few)} principle(s) have fewer than {MIN_TEMPLATES} refusal templates "
                       f"({shown}): topped up from the constitution's and the built-in pool")
        if self.sampling.rule is Rule.category and not any(p.categories for p in self.principles):
            out.append("sampling rule 'category' but no principle lists categories: every pick is random")
        return out


# Used only to top up principles with fewer than MIN_TEMPLATES templates: varied wording on purpose.
GENERIC_REFUSALS = [
    "I can't help with that request, but I'm happy to help with something else.",
    "I'm not able to assist with this, since it could cause real harm to someone.",
    "Sorry, but I won't provide that. If there's a safer goal behind it, tell me and I'll try to help.",
    "I cannot give instructions for that. I can share general safety information instead if that is useful.",
    "I'd rather not help with this one: it could put people at risk. Is there something else you need?",
]


class LoadedConstitution(BaseModel):
    """A validated constitution together with where it came from (recorded in reports)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    constitution: Constitution
    path: Path
    sha256: str
    marks: dict = Field(default_factory=dict, repr=False)

    def provenance(self) -> dict:
        c = self.constitution
        from ..paths import portable

        return {"name": c.name, "version": c.version, "path": portable(self.path), "hash": self.sha256,
                "n_principles": len(c.principles), "sampling": c.sampling.model_dump(mode="json")}


def _line(marks: dict, *path: Any) -> int:
    while path:
        if path in marks:
            return marks[path]
        path = path[:-1]
    return 1


def check_semantics(c: Constitution, marks: dict, source: str | Path) -> list[str]:
    """Problems the field types cannot see: duplicate ids, duplicate templates, repeated few-shots."""
    problems = []
    seen: dict[str, int] = {}
    for i, p in enumerate(c.principles):
        line = _line(marks, "principles", i, "id")
        if p.id in seen:
            problems.append(f"{source}:{line}: duplicate principle id {p.id!r} (first at line {seen[p.id]})")
        else:
            seen[p.id] = line
        dup = {t for t in p.refusal_templates if p.refusal_templates.count(t) > 1}
        if dup:
            problems.append(f"{source}:{_line(marks, 'principles', i, 'refusal_templates')}: "
                            f"principle {p.id!r} repeats a refusal template: {sorted(dup)[0][:60]!r}")
    return problems


def load_constitution(name_or_path: str | Path) -> LoadedConstitution:
    """Resolve a shipped name (``default``) or a path, parse it safely, validate it fully."""
    path = find_asset("constitutions", name_or_path)
    data, marks = load_yaml(path)
    c = validate(Constitution, data, marks, path)
    problems = check_semantics(c, marks, path)
    if problems:
        raise UserError(*problems)
    return LoadedConstitution(constitution=c, path=path, sha256=file_hash(path), marks=marks)
