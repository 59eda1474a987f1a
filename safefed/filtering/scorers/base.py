"""The scorer protocol and its registry: policies pick scorers by ``type`` name.

A scorer turns (prompt, response) pairs into per-category scores in [0, 1]. It is built from the
policy's ``options`` (validated by the scorer's own pydantic model) and told what it reads: the
``prompt``, the ``response`` or the ``pair``. Keys of a score row outside ``categories`` are
diagnostics (reported, never thresholded). Register your own with :func:`register_scorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

Reads = Literal["prompt", "response", "pair"]
ScoreRow = dict[str, float]


class Scorer(Protocol):
    """What the filter needs from a backend."""

    name: str
    categories: list[str]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        """One row of scores per pair; an empty string means the field is absent."""
        ...

    def describe(self) -> dict: ...


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ScorerEntry:
    factory: Callable[..., Scorer]  # factory(options_model, reads=..., policy=...) -> Scorer
    options: type[BaseModel]


_REGISTRY: dict[str, ScorerEntry] = {}


def register_scorer(
    name: str, options: type[BaseModel] = NoOptions
) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    """Decorator: make ``factory(opts, reads=..., policy=...)`` available as scorer type ``name``."""

    def wrap(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        _REGISTRY[name] = ScorerEntry(factory, options)
        return factory

    return wrap


def scorer_types() -> list[str]:
    return sorted(_REGISTRY)


def scorer_entry(name: str) -> ScorerEntry | None:
    return _REGISTRY.get(name)


def build_scorer(type_name: str, options: dict[str, Any], reads: Reads, policy: Any = None) -> Scorer:
    """Instantiate a registered scorer (options are validated again here for API callers)."""
    entry = _REGISTRY[type_name]
    return entry.factory(entry.options.model_validate(options), reads=reads, policy=policy)


def texts_for(reads: Reads, prompts: Sequence[str], responses: Sequence[str], sep: str = "\n") -> list[str]:
    """The text a single-text scorer reads: the prompt, the response, or both joined."""
    if reads == "prompt":
        return list(prompts)
    if reads == "response":
        return list(responses)
    return [p if not r else (r if not p else f"{p}{sep}{r}") for p, r in zip(prompts, responses, strict=True)]
