"""``pair-classifier``: the distilled student (a cross-encoder over prompt and response) and the
``cascade`` that sends only its uncertain pairs to a guard model.

Scores are calibrated: each hazard code's validation threshold (``student.json``) maps to 0.5, so a
policy's ``default: 0.5`` is the operating point the recipe chose and moving it trades recall for
false positives evenly. A pair's score sits under the hazard the student names; ``p_unsafe`` (raw) is
kept as a diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...scoring.guard import DEFAULT_GUARD, HAZARDS
from ...stats import calibrated, platt
from ..artifacts import DEFAULT_STUDENT, resolve_artifact
from .base import Reads, ScoreRow, register_scorer

CATEGORIES = [*HAZARDS, "unspecified"]


class StudentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: str = DEFAULT_STUDENT
    batch_size: int = Field(64, ge=1)


def _texts(reads: Reads, prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
    if reads == "prompt":
        return list(prompts), [""] * len(prompts)
    if reads == "response":
        return [""] * len(prompts), list(responses)
    return list(prompts), list(responses)


class PairClassifierScorer:
    """The student: one forward pass of a small encoder per batch of pairs."""

    def __init__(self, opts: StudentOptions, reads: Reads = "pair", policy=None) -> None:
        from ...scoring.cross_encoder import PairClassifier

        self.folder = folder = resolve_artifact(opts.artifact, policy)
        self.model, self.meta = PairClassifier.load(folder)
        self.thresholds: dict[str, float] = self.meta.get("thresholds", {"default": 0.5})
        self.opts = opts
        self.reads = reads
        self.name = "pair-classifier"
        self.categories = CATEGORIES

    def raw(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[float], list[str | None]]:
        p, r = _texts(self.reads, prompts, responses)
        return self.model.predict(p, r, batch_size=self.opts.batch_size)

    def row(self, p_unsafe: float, category: str | None) -> ScoreRow:
        code = category if category in HAZARDS else "unspecified"
        return {code: calibrated(p_unsafe, self.thresholds.get(code, self.thresholds["default"])),
                "p_unsafe": p_unsafe}

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        probs, cats = self.raw(prompts, responses)
        return [self.row(p, c) for p, c in zip(probs, cats, strict=True)]

    def describe(self) -> dict:
        from ...provenance import file_hash

        return {"type": self.name, "reads": self.reads, "artifact": self.folder.name,
                "weights_hash": file_hash(self.folder / "weights.safetensors"),
                "encoder": self.meta["config"]["encoder"], "thresholds": self.thresholds,
                "validation": {k: v for k, v in self.meta.get("validation", {}).items() if k != "per_source"},
                "teacher": self.meta.get("teacher", {}).get("model")}


class CascadeOptions(StudentOptions):
    guard: str = DEFAULT_GUARD
    guard_batch_size: int = Field(8, ge=1)
    guard_max_text_tokens: int = Field(384, ge=16)
    band: tuple[float, float] = Field((0.25, 0.75), description="calibrated student scores sent to the guard")

    @model_validator(mode="after")
    def _band(self) -> CascadeOptions:
        lo, hi = self.band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError("band must be [low, high] with 0 <= low <= high <= 1")
        return self


class CascadeScorer(PairClassifierScorer):
    """The student decides pairs outside ``band``; the guard (calibrated by the student's recipe)
    decides the rest. ``by_guard`` (diagnostic) is 1.0 on the pairs the guard decided."""

    def __init__(self, opts: CascadeOptions, reads: Reads = "pair", policy=None, guard=None) -> None:
        super().__init__(opts, reads, policy)
        self.name = "cascade"
        self.opts = opts
        self._guard = guard
        self.calibration = self.meta.get("teacher", {}).get("calibration")
        self.sent = 0
        self.seen = 0

    @property
    def guard(self):
        if self._guard is None:  # loaded on the first uncertain pair only
            from ...scoring.guard import GuardModel

            self._guard = GuardModel(self.opts.guard, batch_size=self.opts.guard_batch_size,
                                     max_text_tokens=self.opts.guard_max_text_tokens)
        return self._guard

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        rows = super().score(prompts, responses)
        lo, hi = self.opts.band
        unsure = [i for i, r in enumerate(rows) if lo <= max(r.get(c, 0.0) for c in CATEGORIES) <= hi]
        self.seen += len(rows)
        self.sent += len(unsure)
        for r in rows:
            r["by_guard"] = 0.0
        if unsure:
            p, resp = _texts(self.reads, prompts, responses)
            raw = self.guard.p_unsafe([p[i] for i in unsure], [resp[i] or None for i in unsure])
            for i, g in zip(unsure, raw, strict=True):
                prob = platt(self.calibration, g) if self.calibration else g
                code = next(c for c in rows[i] if c in CATEGORIES)
                rows[i] = {code: prob, "p_unsafe": rows[i]["p_unsafe"], "guard_p_unsafe": g, "by_guard": 1.0}
        return rows

    def describe(self) -> dict:
        return {**super().describe(), "type": "cascade", "guard": self.opts.guard, "band": list(self.opts.band),
                "sent_to_guard": self.sent, "seen": self.seen}


register_scorer("pair-classifier", StudentOptions)(PairClassifierScorer)
register_scorer("cascade", CascadeOptions)(CascadeScorer)
