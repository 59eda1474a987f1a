"""A pair classifier: a small encoder reads (prompt, response) together and scores P(unsafe) and a hazard.

The encoder (all-MiniLM-L6-v2 by default) is fine-tuned end to end through a LoRA on its attention and
feed-forward layers, with a linear head on the mean-pooled tokens: one unsafe logit plus one logit per
hazard code. Prompt and response are one input (``[CLS] prompt [SEP] response [SEP]``), so attention
sees the request's intent and the answer together, unlike a head on separately frozen sentence
embeddings, which carry mostly topic.

An artifact is a folder: ``student.json`` (encoder, categories, thresholds, provenance) and
``weights.safetensors`` (the LoRA and head tensors only; the encoder comes from its own package).
Loaded for inference the LoRA is merged into the encoder, so scoring costs what the raw encoder costs.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError

LORA_TARGETS = ["query", "key", "value", "dense"]
WEIGHTS = "weights.safetensors"
META = "student.json"


@dataclass
class StudentConfig:
    encoder: str = "all-minilm-l6-v2"
    categories: list[str] = field(default_factory=list)
    max_length: int = 192
    lora_r: int = 16
    lora_alpha: int = 32


class PairClassifier(torch.nn.Module):
    """Encoder (+ LoRA) -> mean pool -> [unsafe, hazard_1..hazard_k] logits."""

    def __init__(self, config: StudentConfig, trainable: bool = True) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        from ..models import quiet_transformers, resolve

        quiet_transformers()
        self.config = config
        self.resolved = resolve(config.encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path)
        base = AutoModel.from_pretrained(self.resolved.path, use_safetensors=True)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05 if trainable else 0.0,
                          target_modules=LORA_TARGETS, bias="none")
        self.encoder = get_peft_model(base, lora)
        self.head = torch.nn.Linear(base.config.hidden_size, 1 + len(config.categories))

    def tokenize(self, prompts: Sequence[str], responses: Sequence[str]) -> dict:
        return self.tokenizer(list(prompts), list(responses), truncation="longest_first",
                              max_length=self.config.max_length, padding=True, return_tensors="pt")

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)

    # --- artifact -----------------------------------------------------------------------------

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items() if "lora_" in k}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save(self, out: Path, meta: dict) -> None:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state(), str(out / WEIGHTS))
        config = {"encoder": self.config.encoder, "encoder_hf_id": self.resolved.hf_id,
                  "categories": self.config.categories, "max_length": self.config.max_length,
                  "lora_r": self.config.lora_r, "lora_alpha": self.config.lora_alpha}
        (out / META).write_text(json.dumps({"config": config, **meta}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> tuple[PairClassifier, dict]:
        """The student in eval mode with its LoRA merged, and its ``student.json``."""
        from safetensors.torch import load_file

        from ..safeio import read_bounded

        folder = Path(folder)
        if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
            raise UserError(f"{folder}: not a pair-classifier artifact (needs {META} and {WEIGHTS})")
        try:
            meta = json.loads(read_bounded(folder / META, 10_000_000, "student metadata").decode("utf-8"))
            fields = set(StudentConfig.__dataclass_fields__)
            config = StudentConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{folder / META}:1: not a valid student description ({exc})") from None
        model = cls(config, trainable=False)
        state = load_file(str(folder / WEIGHTS))
        missing = set(model.trainable_state()) - set(state)
        if missing or set(state) - set(model.trainable_state()):
            raise UserError(f"{folder / WEIGHTS}: tensors do not fit the student described in {META}")
        model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
                                      strict=False)
        model.head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
        model.encoder = model.encoder.merge_and_unload()
        model.eval()
        return model, meta

    # --- inference ----------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64
                ) -> tuple[list[float], list[str | None]]:
        """P(unsafe) and the most likely hazard code (None without categories), per pair, in input order."""
        n = len(prompts)
        probs: list[float] = [0.0] * n
        cats: list[str | None] = [None] * n
        order = sorted(range(n), key=lambda i: len(prompts[i]) + len(responses[i]))  # similar lengths batch well
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            batch = self.tokenize([prompts[i] for i in idx], [responses[i] for i in idx])
            logits = self(**batch)
            p = torch.sigmoid(logits[:, 0]).tolist()
            best = logits[:, 1:].argmax(-1).tolist() if self.config.categories else [None] * len(idx)
            for j, i in enumerate(idx):
                probs[i] = p[j]
                cats[i] = self.config.categories[best[j]] if best[j] is not None else None
        return probs, cats


@dataclass(frozen=True)
class TrainingExample:
    prompt: str
    response: str
    target: float  # P(unsafe): 0/1 gold, or the teacher's probability
    category: str | None
    weight: float = 1.0


def train(model: PairClassifier, examples: Sequence[TrainingExample], epochs: int = 2, batch_size: int = 32,
          lr: float = 1e-3, seed: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    """Fine-tune the LoRA and head: BCE on P(unsafe) (soft targets allowed), cross-entropy on the hazard
    of unsafe examples that name one. Batches hold similar lengths (shuffled buckets)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(examples) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20))
                                              * max(0.0, 1 - s / steps))
    cat_index = {c: i for i, c in enumerate(model.config.categories)}
    losses = []
    start = time.perf_counter()
    for _ in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        # buckets of 50 batches sorted by length, then shuffled: little padding, random order
        chunk = batch_size * 50
        batches = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c:c + chunk], key=lambda i: len(examples[i].prompt) + len(examples[i].response))
            batches += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
        rng.shuffle(batches)
        for idx in batches:
            ex = [examples[i] for i in idx]
            logits = model(**model.tokenize([e.prompt for e in ex], [e.response for e in ex]))
            target = torch.tensor([e.target for e in ex])
            weight = torch.tensor([e.weight for e in ex])
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
                    * weight).sum() / weight.sum()
            named = [(j, cat_index[e.category]) for j, e in enumerate(ex)
                     if e.category in cat_index and e.target >= 0.5]
            if named:
                rows = torch.tensor([j for j, _ in named])
                codes = torch.tensor([c for _, c in named])
                loss = loss + 0.5 * torch.nn.functional.cross_entropy(logits[rows, 1:], codes)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if progress:
                progress(len(idx))
    model.eval()
    tail = losses[-50:]
    return {"steps": len(losses), "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(sum(tail) / max(1, len(tail)), 4)}
