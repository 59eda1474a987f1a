"""``hf-classifier``: any ``AutoModelForSequenceClassification`` with a label -> category map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...errors import UserError
from .base import Reads, ScoreRow, register_scorer, texts_for


class HFClassifierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="HF id or local folder")
    label_map: dict[str, str] = Field(
        min_length=1, description="model label -> filter category; others ignored"
    )
    activation: Literal["auto", "softmax", "sigmoid"] = "auto"
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(256, ge=8)


class HFClassifierScorer:
    """Class probabilities of a sequence classifier, mapped onto filter categories (max per category)."""

    def __init__(self, opts: HFClassifierOptions, reads: Reads = "pair", policy=None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ...models import quiet_transformers, resolve

        self.resolved = resolve(opts.model)
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.resolved.path, dtype=torch.float32, use_safetensors=True
        ).eval()
        id2label = {int(i): str(lab) for i, lab in self.model.config.id2label.items()}
        unknown = sorted(set(opts.label_map) - set(id2label.values()))
        if unknown:
            raise UserError(
                f"hf-classifier {opts.model}: labels {unknown} not in the model's {sorted(id2label.values())}"
            )
        self.columns = [
            (i, opts.label_map[lab]) for i, lab in sorted(id2label.items()) if lab in opts.label_map
        ]
        self.categories = sorted({c for _, c in self.columns})
        multi = self.model.config.problem_type == "multi_label_classification"
        self.sigmoid = opts.activation == "sigmoid" or (opts.activation == "auto" and multi)
        self.opts = opts
        self.reads = reads
        self.name = "hf-classifier"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        import torch

        texts = texts_for(self.reads, prompts, responses)
        rows: list[ScoreRow] = [dict.fromkeys(self.categories, 0.0) for _ in texts]
        idx = [i for i, t in enumerate(texts) if t.strip()]
        with torch.inference_mode():
            for b in range(0, len(idx), self.opts.batch_size):
                chunk = idx[b : b + self.opts.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.opts.max_length,
                    return_tensors="pt",
                )
                logits = self.model(**enc).logits
                probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
                for row, i in enumerate(chunk):
                    for col, cat in self.columns:
                        rows[i][cat] = max(rows[i][cat], float(probs[row, col]))
        return rows

    def describe(self) -> dict:
        return {
            "type": "hf-classifier",
            "reads": self.reads,
            "model": self.resolved.provenance(),
            "label_map": self.opts.label_map,
            "sigmoid": self.sigmoid,
        }


register_scorer("hf-classifier", HFClassifierOptions)(HFClassifierScorer)
