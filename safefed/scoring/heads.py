"""Linear heads over embeddings, fitted with scikit-learn and stored as small JSON artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass
class LinearHead:
    """Multinomial/binary logistic head. ``labels[0]`` is the negative class for binary heads."""

    labels: list[str]
    weight: np.ndarray  # (n_classes or 1, dim)
    bias: np.ndarray  # (n_classes or 1,)
    encoder: str
    max_length: int = 128
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X: np.ndarray, y: list[str], encoder: str, max_length: int = 128, C: float = 4.0,
            class_weight: str | None = "balanced", seed: int = 0, meta: dict | None = None) -> LinearHead:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=2000, class_weight=class_weight, random_state=seed)
        clf.fit(X, y)
        return cls([str(c) for c in clf.classes_], clf.coef_.astype(np.float32),
                   clf.intercept_.astype(np.float32), encoder, max_length, meta or {})

    def proba(self, X: np.ndarray) -> np.ndarray:
        """(n, len(labels)) class probabilities."""
        logits = X @ self.weight.T + self.bias
        if len(self.labels) == 2 and logits.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1 - p, p], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> None:
        payload = {"format": "safefed.linear-head/1", "labels": self.labels, "encoder": self.encoder,
                   "max_length": self.max_length, "bias": [round(float(b), 6) for b in self.bias],
                   "weight": [[round(float(w), 6) for w in row] for row in self.weight], "meta": self.meta}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != "safefed.linear-head/1":
                raise ValueError("not a safefed linear-head artifact")
            return cls(list(data["labels"]), np.asarray(data["weight"], dtype=np.float32),
                       np.asarray(data["bias"], dtype=np.float32), data["encoder"], int(data["max_length"]),
                       data.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: cannot load head artifact ({exc})") from None
