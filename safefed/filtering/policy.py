"""Filter policies in YAML: fields, scorers with per-category thresholds, how they combine, actions.

A shipped policy is found by name (``default``), a user's by path; both are validated the same way
and every problem is reported as ``FILE:LINE: problem`` (exit status 2 on the command line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..paths import find_asset
from ..recordio import PROMPT_KEYS, RESPONSE_KEYS
from ..yamlio import load_model

Action = Literal["drop", "revise", "flag"]
# when several categories fire, the most severe action wins
ACTION_SEVERITY = {"keep": 0, "flag": 1, "revise": 2, "drop": 3}


class Fields(BaseModel):
    """Which record keys hold the prompt and the response (the first one present wins)."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[str] = Field(default_factory=lambda: list(PROMPT_KEYS), min_length=1)
    response: list[str] = Field(default_factory=lambda: list(RESPONSE_KEYS), min_length=1)
    messages: str | None = "messages"


class ScorerSpec(BaseModel):
    """One scorer: its registered ``type``, what it ``reads``, its options and thresholds."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="label in reports; defaults to the type")
    type: str = Field(min_length=1)
    reads: Literal["prompt", "response", "pair"] = "pair"
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    thresholds: dict[str, float] = Field(default_factory=lambda: {"default": 0.5})

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, t in v.items() if not 0.0 <= t <= 1.0]
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1] (bad: {', '.join(bad)})")
        return {"default": 0.5, **v}

    # field validators, not one model validator: pydantic runs them even when another field of the
    # scorer is wrong, so that a policy's problems are all reported in one pass
    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        from .scorers import scorer_entry, scorer_types

        if scorer_entry(v) is None:
            raise ValueError(f"unknown scorer type {v!r} (known: {', '.join(scorer_types())})")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from .scorers import scorer_entry

        entry = scorer_entry(info.data["type"]) if "type" in info.data else None
        if entry is None:
            return v
        try:
            entry.options.model_validate(v)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"{info.data['type']} options: {problems}") from None
        return v

    @property
    def label(self) -> str:
        return self.name or self.type

    def threshold(self, category: str) -> float:
        return self.thresholds.get(category, self.thresholds["default"])


class Policy(BaseModel):
    """A whole filter policy (see ``filters/default.yaml`` for a commented example)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    fields: Fields = Field(default_factory=Fields)
    scorers: list[ScorerSpec] = Field(min_length=1)
    combine: Literal["any", "all", "majority"] = "any"
    actions: dict[str, Action] = Field(default_factory=lambda: {"default": "drop"})
    max_chars: int = Field(100_000, ge=1, description="longer texts are invalid rows")
    batch_size: int = Field(256, ge=1, le=100_000)
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_labels(self) -> Policy:
        labels = [s.label for s in self.scorers]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"scorer names must be unique (repeated: {', '.join(dup)}); set `name:`")
        return self

    def action(self, category: str) -> Action:
        return self.actions.get(category, self.actions.get("default", "drop"))

    def resolve_path(self, value: str) -> Path:
        """A file named in the policy: relative to the policy's folder, else a shipped artifact name."""
        from .artifacts import artifact_path

        p = Path(value).expanduser()
        if not p.is_absolute() and self.path is not None and (self.path.parent / p).exists():
            return self.path.parent / p
        return p if p.exists() else artifact_path(value)


def load_policy(name_or_path: str | Path) -> Policy:
    """Load and validate a policy by shipped name or path."""
    path = find_asset("filters", name_or_path)
    policy = load_model(Policy, path)
    policy.path = path
    return policy
