"""Evaluation suites: data set + prompt field + judge + headline metric, written in YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import data as datasets
from ..errors import UserError
from ..paths import find_asset
from ..splits import Split, split_records
from ..yamlio import load_model


class Suite(BaseModel):
    """One evaluation: which prompts, how they are asked, who judges, what is the headline."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    dataset: str = Field(min_length=1, description="a data set name (see `safefed data`) or a JSONL/CSV path")
    split: str | None = None
    prompt_field: str = "prompt"
    id_field: str = "id"
    category_field: str | None = "category"
    label_field: str | None = None
    harmful_labels: list[str] = ["harmful"]
    judge: str = "refusal"
    max_new_tokens: int = Field(64, ge=1, le=4096)
    system_prompt: str | None = None
    chat_template: bool = True
    headline: Literal["safe_rate", "over_refusal"] = "safe_rate"

    @field_validator("split")
    @classmethod
    def _split(cls, v: str | None) -> str | None:
        if v not in (None, "all", "gate", "eval"):
            raise ValueError("split must be one of all, gate, eval")
        return v

    path: Path | None = Field(None, exclude=True)

    def load_split(self, data_dir: str | Path | None = None, split: str | None = None) -> Split:
        """The suite's prompts as records with ``id, prompt, label, category`` (+ original fields)."""
        split = split or self.split
        if self.dataset in datasets.REGISTRY:
            raw = datasets.load(self.dataset, data_dir)
            name = self.dataset
        else:
            path = Path(self.dataset)
            if not path.is_absolute() and self.path is not None:
                path = self.path.parent / path
            raw = datasets.read_records(path)
            name = str(path)
        records = []
        for i, r in enumerate(raw):
            if self.prompt_field not in r:
                where = f"{name}:{i + 1}" if name not in datasets.REGISTRY else name
                raise UserError(f"{where}: record has no field {self.prompt_field!r} (suite prompt_field)")
            prompt = r[self.prompt_field]
            label = "harmful"
            if self.label_field:
                label = "harmful" if str(r.get(self.label_field)) in self.harmful_labels else "benign"
            category = r.get(self.category_field) if self.category_field else None
            records.append({**r, "id": str(r.get(self.id_field, i)), "prompt": "" if prompt is None else str(prompt),
                            "label": label, "category": category})
        try:
            return split_records(name, records, split)
        except ValueError as exc:
            raise UserError(f"{self.path or self.name}: {exc}") from None


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name (``advbench``) or a user's suite file by path."""
    path = find_asset("eval", name_or_path)
    suite = load_model(Suite, path)
    suite.path = path
    return suite
