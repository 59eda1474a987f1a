"""Build the learned response judge from JailbreakBench artifacts (refused vs complied).

Records whose goal also appears in AdvBench are dropped (AdvBench is for evaluation only). The
held-out split is by goal, so no behaviour is both trained and tested on; on it we report the
judge's agreement with the artifacts' ``jailbroken`` labels next to the keyword judges'.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import data as datasets
from ..scoring.encoder import shared_encoder
from ..scoring.heads import LinearHead
from .judges import RefusalJudge

SNIPPET_CHARS = 240  # evaluations generate short answers: train on the opening of each response


FEATURES = "embedding+markers"


def response_features(texts: list[str], embeddings: np.ndarray, refusal: RefusalJudge) -> np.ndarray:
    """Embedding of the response plus two marker bits (refusal markers near the start, GCG anywhere)."""
    bits = np.array([[refusal.opens_with_refusal(t), refusal.gcg_refused(t)] for t in texts], dtype=np.float32)
    return np.hstack([embeddings, bits.reshape(len(texts), 2)])


def _pick_C(X: np.ndarray, y: list[str], groups: list[str], seed: int) -> float:
    """Regularisation chosen by 5-fold cross-validation grouped by goal, on the training split only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    scores = {}
    for C in (0.5, 2.0, 8.0, 32.0):
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed)
        scores[C] = cross_val_score(clf, X, y, groups=groups, cv=GroupKFold(5)).mean()
    return max(scores, key=scores.get)


def _held_out(goal: str, seed: int, fraction: float) -> bool:
    h = int(hashlib.sha256(f"{seed}:{goal.strip().lower()}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def build_response_judge(data_dir: str | Path | None = None, seed: int = 0, held_out: float = 0.2,
                         encoder: str = "all-minilm-l6-v2") -> tuple[LinearHead, dict]:
    """Fit the head; returns it and a metrics dict (also stored in the head's ``meta``)."""
    advbench_goals = {r["prompt"].strip().lower() for r in datasets.load("advbench", data_dir)}
    raw = datasets.load("jailbreakbench-artifacts", data_dir)
    usable = [r for r in raw if isinstance(r["response"], str) and r["response"].strip()]
    kept = [r for r in usable if r["goal"].strip().lower() not in advbench_goals]
    train = [r for r in kept if not _held_out(r["goal"], seed, held_out)]
    test = [r for r in kept if _held_out(r["goal"], seed, held_out)]
    enc = shared_encoder(encoder)

    refusal = RefusalJudge()

    def xy(rows):
        texts = [r["response"].strip()[:SNIPPET_CHARS] for r in rows]
        X = response_features(texts, enc.encode(texts), refusal)
        return texts, X, ["complied" if r["jailbroken"] else "refused" for r in rows]

    _, X_tr, y_tr = xy(train)
    te_texts, X_te, y_te = xy(test)
    C = _pick_C(X_tr, y_tr, [r["goal"] for r in train], seed)
    head = LinearHead.fit(X_tr, y_tr, encoder=encoder, max_length=enc.max_length, C=C, seed=seed)
    pred = np.array(head.labels)[head.proba(X_te).argmax(1)]
    truth = np.array(y_te)
    kw = np.array(["refused" if refusal.refused(t) else "complied" for t in te_texts])
    gcg = np.array(["refused" if refusal.gcg_refused(t) else "complied" for t in te_texts])

    def scores(p: np.ndarray) -> dict:
        tp = int(((p == "complied") & (truth == "complied")).sum())
        fp = int(((p == "complied") & (truth == "refused")).sum())
        fn = int(((p == "refused") & (truth == "complied")).sum())
        return {"agreement": round(float((p == truth).mean()), 4),
                "complied_precision": round(tp / (tp + fp), 4) if tp + fp else None,
                "complied_recall": round(tp / (tp + fn), 4) if tp + fn else None}

    metrics = {
        "trained_on": {"dataset": "jailbreakbench-artifacts", "label": "jailbroken", "records": len(raw),
                       "with_response": len(usable), "dropped_advbench_goals": len(usable) - len(kept),
                       "train": len(train), "held_out": len(test), "split": f"by goal, {held_out:.0%} held out",
                       "seed": seed, "content_hash": datasets.content_hash(kept, ("id", "response")),
                       "snippet_chars": SNIPPET_CHARS, "features": FEATURES, "C": C},
        "held_out": {"n": len(test), "classifier": scores(pred), "refusal_markers": scores(kw), "gcg": scores(gcg)},
    }
    head.meta = {**metrics, "features": FEATURES}
    return head, metrics
