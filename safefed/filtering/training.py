"""Fitting the embedding scorer's heads: from a user's labelled file, or the project's default recipe.

``fit_text_head`` takes ``(text, label[, category])`` rows (``label``: harmful/benign, unsafe/safe,
1/0, true/false), holds out a deterministic fraction (grouped: rows with the same ``group`` stay
together), and reports per-class and binary precision/recall/F1 on the held-out rows. The shipped
head is the one fitted on the training rows only, so the reported figures describe it exactly.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..scoring.heads import LinearHead
from ..splits import SPLIT_SEED, in_fraction

HARMFUL = {"harmful", "unsafe", "1", "true", "yes"}
BENIGN = {"benign", "safe", "0", "false", "no"}
BENIGN_CLASS = "benign"


@dataclass
class Example:
    """A labelled text: ``cls`` is ``benign`` or a harm category; same-``group`` rows stay together."""

    text: str
    cls: str
    source: str = "user"
    group: str = ""


def read_labelled(
    path: str | Path, text_field: str = "text", label_field: str = "label", category_field: str = "category"
) -> list[Example]:
    """Labelled rows from JSONL or CSV; every bad row is reported as ``FILE:ROW: problem`` (exit 2)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    problems: list[str] = []
    out: list[Example] = []
    for row_no, record, problem in _labelled_rows(path):
        if problem is None:
            problem = _validate(record, text_field, label_field, category_field)
        if problem:
            problems.append(f"{path}:{row_no}: {problem}")
            continue
        label = str(record[label_field]).strip().lower()
        category = record.get(category_field)
        cls = BENIGN_CLASS if label in BENIGN else (str(category).strip() if category else "harmful")
        out.append(Example(record[text_field], cls, path.name))
    if problems:
        extra = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise UserError(*problems[:20], *extra)
    classes = Counter(e.cls for e in out)
    if BENIGN_CLASS not in classes or len(classes) < 2:
        raise UserError(f"{path}: needs both benign and harmful rows (found {dict(classes)})")
    return out


def _labelled_rows(path: Path):
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh)
            for record in reader:
                yield reader.line_num, record, None
        return
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield n, None, f"not valid JSON ({exc.__class__.__name__})"
                continue
            yield n, record, None if isinstance(record, dict) else "expected a JSON object"


def _validate(record: dict, text_field: str, label_field: str, category_field: str) -> str | None:
    text = record.get(text_field)
    if not isinstance(text, str) or not text.strip():
        return f"{text_field!r} must be non-empty text"
    label = record.get(label_field)
    if label is None or str(label).strip().lower() not in HARMFUL | BENIGN:
        return f"{label_field!r} must be one of harmful/benign, unsafe/safe, 1/0, true/false (got {label!r})"
    category = record.get(category_field)
    if category is not None and not isinstance(category, str):
        return f"{category_field!r} must be text"
    return None


# --- fitting -----------------------------------------------------------------------------------


def embed(
    texts: Sequence[str],
    encoder_name: str = "all-minilm-l6-v2",
    cache: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings of ``texts`` with the shared encoder; ``cache`` (an .npz) keeps them between runs."""
    from ..scoring.encoder import shared_encoder

    enc = shared_encoder(encoder_name)
    keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
    stored: dict[str, np.ndarray] = {}
    if cache and Path(cache).is_file():
        with np.load(cache) as npz:
            stored = dict(zip(npz["keys"].tolist(), npz["vectors"], strict=True))
    todo = list(dict.fromkeys(i for i, k in enumerate(keys) if k not in stored))
    for b in range(0, len(todo), 256):
        chunk = todo[b : b + 256]
        for i, vec in zip(chunk, enc.encode([texts[i] for i in chunk]), strict=True):
            stored[keys[i]] = vec
        if progress:
            progress(len(chunk))
    if cache and todo:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, keys=np.array(list(stored)), vectors=np.stack(list(stored.values())))
    if not texts:
        return np.zeros((0, enc.dim), dtype=np.float32)
    return np.stack([stored[k] for k in keys]).astype(np.float32)


def held_out_mask(examples: Sequence[Example], fraction: float, seed: int) -> np.ndarray:
    return np.array([in_fraction(e.group or e.text, fraction, seed, "filter-head") for e in examples])


def prf(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall, F1 and support of boolean predictions."""
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(truth.sum())}


def evaluate_head(head: LinearHead, X: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> dict:
    """Per-class (argmax) and binary (1 - P(benign) >= threshold) P/R/F1."""
    proba = head.proba(X)
    truth = np.array(classes)
    pred = np.array(head.labels)[proba.argmax(1)]
    out = {"per_class": {c: prf(pred == c, truth == c) for c in head.labels}}
    if BENIGN_CLASS in head.labels:
        harm = 1.0 - proba[:, head.labels.index(BENIGN_CLASS)]
        out["binary"] = {"threshold": threshold, **prf(harm >= threshold, truth != BENIGN_CLASS)}
    out["n"] = int(len(truth))
    return out


def class_weights(classes: Sequence[str]) -> dict[str, float]:
    """Benign and harmful weigh half each; harm categories share their half equally.

    sklearn's ``balanced`` would give every harm category the weight of all benign rows together,
    so with a dozen categories P(benign) is pushed down and benign look-alikes get flagged.
    With no ``benign`` class (e.g. a refused/complied head) every class weighs the same.
    """
    counts = Counter(classes)
    n = len(classes)
    if BENIGN_CLASS not in counts:
        return {c: n / (len(counts) * k) for c, k in counts.items()}
    harm = [c for c in counts if c != BENIGN_CLASS]
    out = {BENIGN_CLASS: 0.5 * n / counts[BENIGN_CLASS]}
    out.update({c: 0.5 * n / (len(harm) * counts[c]) for c in harm})
    return out


def fit_head(
    examples: Sequence[Example],
    X: np.ndarray,
    *,
    encoder: str = "all-minilm-l6-v2",
    seed: int = SPLIT_SEED,
    held_out: float = 0.2,
    C: float = 2.0,
    meta: dict | None = None,
) -> tuple[LinearHead, dict]:
    """Fit on the training rows, report on the held-out rows; the head's ``meta`` records both."""
    mask = held_out_mask(examples, held_out, seed)
    classes = [e.cls for e in examples]
    train_idx, test_idx = np.where(~mask)[0], np.where(mask)[0]
    if len({classes[i] for i in train_idx}) < 2:
        raise UserError("too few training rows after holding out a validation split")
    y = [classes[i] for i in train_idx]
    head = LinearHead.fit(X[train_idx], y, encoder=encoder, C=C, seed=seed, class_weight=class_weights(y))
    metrics = evaluate_head(head, X[test_idx], [classes[i] for i in test_idx]) if len(test_idx) else {}
    counts = {
        "train": dict(Counter(classes[i] for i in train_idx)),
        "held_out": dict(Counter(classes[i] for i in test_idx)),
    }
    by_source = dict(Counter(examples[i].source for i in train_idx))
    head.meta = {
        **(meta or {}),
        "C": C,
        "seed": seed,
        "held_out_fraction": held_out,
        "counts": counts,
        "trained_on": by_source,
        "held_out_metrics": metrics,
    }
    return head, metrics


def train_from_file(
    path: str | Path,
    out: str | Path,
    *,
    seed: int = SPLIT_SEED,
    held_out: float = 0.2,
    C: float = 2.0,
    encoder: str = "all-minilm-l6-v2",
    progress: Callable[[int], None] | None = None,
) -> tuple[LinearHead, dict]:
    """``safefed filter train``: fit a text head from a labelled JSONL/CSV and save it to ``out``."""
    examples = read_labelled(path)
    X = embed([e.text for e in examples], encoder, progress=progress)
    head, metrics = fit_head(
        examples,
        X,
        encoder=encoder,
        seed=seed,
        held_out=held_out,
        C=C,
        meta={"kind": "text", "data": str(path)},
    )
    head.save(out)
    return head, metrics
