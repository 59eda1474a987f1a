"""Sentence embeddings: ``AutoModel`` + mean pooling + L2 norm (matches sentence-transformers)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from ..models import DEFAULT_ENCODER, quiet_transformers, resolve


class Encoder:
    """Embeds texts in length-sorted batches; identical texts are embedded once (LRU cache)."""

    def __init__(self, name: str = DEFAULT_ENCODER, max_length: int = 128, batch_size: int = 64,
                 cache_size: int = 100_000) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.resolved = resolve(name)
        quiet_transformers()
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.path)
        self.model = AutoModel.from_pretrained(self.resolved.path, dtype=torch.float32, use_safetensors=True).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @torch.inference_mode()
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vec in zip(missing, self._embed(missing), strict=True):
                self._cache[text] = vec
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for t in texts:
            vec = self._cache.get(t)
            if vec is None:  # evicted within this very call (cache smaller than the batch)
                vec = self._embed([t])[0]
            rows.append(vec)
        return np.stack(rows)


_SHARED: dict[tuple, Encoder] = {}


def shared_encoder(name: str = DEFAULT_ENCODER, max_length: int = 128) -> Encoder:
    """One encoder per (name, max_length) per process: judges and filters reuse it."""
    key = (name, max_length)
    if key not in _SHARED:
        _SHARED[key] = Encoder(name, max_length=max_length)
    return _SHARED[key]
