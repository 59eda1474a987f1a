"""``safefed filter distill``: a guard model (the teacher) labels a pool once; a pair classifier learns.

1. The teacher scores P(unsafe) of every pool pair, and of a calibration sample of gold-labelled
   training pairs, into an append-only cache (JSONL, one line per pair, flushed per batch): a killed
   run resumes where it stopped, a torn last line is dropped.
2. The teacher's raw P(unsafe) is calibrated against gold labels (logistic regression on its log-odds,
   fitted on the calibration sample), which gives its soft targets and its threshold.
3. The student trains on gold labels where a set has them (:mod:`.pairs`) and on the teacher's
   calibrated probabilities for the pool.
4. Thresholds are set on a validation split that shares no prompt with training: the lowest P(unsafe)
   at which the validation false-positive rate stays within ``target_fpr``, overall and per hazard code
   that has enough validation pairs. The scorer maps each threshold to 0.5 (:func:`calibrated`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UserError
from ..scoring.guard import HAZARDS
from ..splits import SPLIT_SEED
from ..stats import calibrated, logit, platt  # noqa: F401 - calibrated: the scorers' mapping, documented here
from .pairs import Pair, gold_pairs, is_validation, teacher_pool

CALIBRATION_SAMPLE = 160
MIN_CATEGORY_SAFE = 40  # validation safe pairs a hazard code needs for a threshold of its own
CATEGORIES = list(HAZARDS)


def pair_key(model: str, prompt: str, response: str) -> str:
    return hashlib.sha256(f"{model}\0{prompt}\0{response}".encode()).hexdigest()[:32]


class TeacherCache:
    """Append-only JSONL of ``{"key", "p_unsafe"}``; resumable after any kill."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.scores: dict[str, float] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        good = 0
        with self.path.open("rb") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                    self.scores[row["key"]] = float(row["p_unsafe"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    break  # a torn last line from a killed run: cut it and rescore from here
                good += len(line)
        if good != self.path.stat().st_size:
            with self.path.open("r+b") as fh:
                fh.truncate(good)

    def add(self, items: Sequence[tuple[str, float]]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for key, p in items:
                fh.write(json.dumps({"key": key, "p_unsafe": round(p, 6)}) + "\n")
                self.scores[key] = p
            fh.flush()
            os.fsync(fh.fileno())


def score_with_teacher(guard, pairs: Sequence[Pair], cache: TeacherCache, model_id: str,
                       progress: Callable[[int], None] | None = None, chunk: int = 16) -> list[float]:
    """The teacher's raw P(unsafe) for every pair; only pairs missing from the cache are run."""
    keys = [pair_key(model_id, p.prompt, p.response) for p in pairs]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [first[k] for k in dict.fromkeys(keys) if k not in cache.scores]
    for b in range(0, len(todo), chunk):
        idx = todo[b:b + chunk]
        probs = guard.p_unsafe([pairs[i].prompt for i in idx], [pairs[i].response or None for i in idx])
        cache.add([(keys[i], p) for i, p in zip(idx, probs, strict=True)])
        if progress:
            progress(len(idx))
    return [cache.scores[k] for k in keys]


def fit_calibration(raw: Sequence[float], labels: Sequence[float]) -> dict:
    """Logistic regression of gold labels on the teacher's log-odds: ``P = sigmoid(a * logit(raw) + b)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x = [[logit(p)] for p in raw]
    y = [int(v >= 0.5) for v in labels]
    if len(set(y)) < 2:
        raise UserError("the calibration sample needs both safe and unsafe gold pairs")
    lr = LogisticRegression(C=10.0).fit(x, y)
    a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
    return {"a": round(a, 6), "b": round(b, 6), "n": len(y), "auc": round(float(roc_auc_score(y, raw)), 4),
            # raw P(unsafe) at which the calibrated probability is 0.5
            "raw_threshold": round(1 / (1 + math.exp(b / a)), 6) if a > 0 else 1.0}


def flagged(probs: Sequence[float], cats: Sequence[str | None], thresholds: dict[str, float]) -> list[bool]:
    """Whether each P(unsafe) reaches the threshold of its hazard code (else the default)."""
    return [p >= thresholds.get(c or "", thresholds["default"]) for p, c in zip(probs, cats, strict=True)]


def pick_threshold(safe_scores: Sequence[float], target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on ``safe_scores`` is at most ``target_fpr``."""
    if not safe_scores:
        return 0.5
    ordered = sorted(safe_scores, reverse=True)
    allowed = int(math.floor(target_fpr * len(ordered)))
    # at threshold t, the safe pairs with score >= t are false positives; stay just above the (allowed+1)-th
    return min(1.0, ordered[allowed] + 1e-6) if allowed < len(ordered) else 0.0


def thresholds_from_validation(probs: Sequence[float], cats: Sequence[str | None], labels: Sequence[float],
                               target_fpr: float) -> tuple[dict[str, float], dict]:
    """``{"default": t, code: t_code...}`` and the validation figures at those thresholds."""
    safe = [p for p, y in zip(probs, labels, strict=True) if y < 0.5]
    thresholds = {"default": round(pick_threshold(safe, target_fpr), 6)}
    for code in CATEGORIES:
        mine = [p for p, c, y in zip(probs, cats, labels, strict=True) if y < 0.5 and c == code]
        if len(mine) >= MIN_CATEGORY_SAFE:
            thresholds[code] = round(pick_threshold(mine, target_fpr), 6)
    hits = flagged(probs, cats, thresholds)
    unsafe_n = sum(y >= 0.5 for y in labels)
    tp = sum(f and y >= 0.5 for f, y in zip(hits, labels, strict=True))
    fp = sum(f and y < 0.5 for f, y in zip(hits, labels, strict=True))
    figures = {"n": len(labels), "unsafe": unsafe_n, "recall": round(tp / max(1, unsafe_n), 4),
               "false_positive_rate": round(fp / max(1, len(labels) - unsafe_n), 4), "target_fpr": target_fpr}
    return thresholds, figures


def _fair_shares(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Split ``limit`` over groups as evenly as their sizes allow: small groups whole, the rest equal."""
    shares, room = {}, limit
    for i, (name, size) in enumerate(sorted(sizes.items(), key=lambda kv: kv[1])):
        shares[name] = min(size, room // (len(sizes) - i))
        room -= shares[name]
    return shares


def _balanced(pairs: list[Pair], limit: int, rng: random.Random) -> list[Pair]:
    """At most ``limit`` pairs, shared evenly over the data sets (``source`` up to its first ``/``) and,
    within a set, over its pair kinds: no one set's size or style decides the student."""
    if len(pairs) <= limit:
        return pairs
    by: dict[str, dict[str, list[Pair]]] = {}
    for p in pairs:
        by.setdefault(p.source.split("/")[0], {}).setdefault(p.source, []).append(p)
    out: list[Pair] = []
    for family, quota in _fair_shares({f: sum(map(len, k.values())) for f, k in by.items()}, limit).items():
        kinds = by[family]
        for source, n in _fair_shares({s: len(rows) for s, rows in kinds.items()}, quota).items():
            out += rng.sample(kinds[source], n)
    return out


def distill(teacher: str = "qwen2.5-coder-1.5b-instruct", pools: Sequence[str] = ("hh-rlhf",),
            out: Path | str = "filter_student", data_dir: str | Path | None = None, seed: int = SPLIT_SEED,
            epochs: int = 2, max_train: int = 10_000, target_fpr: float = 0.05, cache: Path | None = None,
            teacher_batch: int = 8, encoder: str = "all-minilm-l6-v2", calibration: int = CALIBRATION_SAMPLE,
            pool_limit: int | None = None, validation_limit: int | None = None,
            progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> dict:
    """Run the whole recipe and save the student artifact at ``out``; returns its ``student.json``."""
    from ..paths import cache_dir
    from ..scoring.cross_encoder import PairClassifier, StudentConfig, TrainingExample, train
    from ..scoring.guard import GuardModel

    started = time.perf_counter()
    out = Path(out)
    rng = random.Random(seed)
    gold = gold_pairs(data_dir, seed)
    pool = [p for name in pools for p in _pool(name, data_dir, seed)]
    if pool_limit is not None and len(pool) > pool_limit:  # a seeded sample, in pool order
        keep = set(random.Random(seed + 1).sample(range(len(pool)), pool_limit))
        pool = [p for i, p in enumerate(pool) if i in keep]
    train_gold = [p for p in gold if not is_validation(p, seed)]
    val = [p for p in gold if is_validation(p, seed)]
    if validation_limit is not None and len(val) > validation_limit:  # a quick build: a seeded sample
        val = random.Random(seed + 2).sample(val, validation_limit)
    # a stable sample (by pair hash, not by position), so that adding a source leaves the teacher's
    # cached calibration scores valid
    ranked = sorted(train_gold, key=lambda p: pair_key(str(seed), p.prompt, p.response))
    calib = ranked[:calibration]

    guard = GuardModel(teacher, batch_size=teacher_batch)
    model_id = guard.resolved.hf_id or guard.resolved.name
    default_cache = cache_dir("distill") / f"teacher-{pair_key(model_id, '', '')[:12]}.jsonl"
    tcache = TeacherCache(Path(cache) if cache else default_cache)
    todo = calib + pool
    missing = len({pair_key(model_id, p.prompt, p.response) for p in todo} - set(tcache.scores))
    tick = progress("teacher", len(todo) - missing, len(todo)) if progress else None
    t0 = time.perf_counter()
    raw = score_with_teacher(guard, todo, tcache, model_id, tick)
    teacher_seconds = time.perf_counter() - t0
    del guard
    cal = fit_calibration(raw[:len(calib)], [p.label for p in calib])
    pool_raw = raw[len(calib):]

    chosen = _balanced(train_gold, max_train, rng)
    examples = [TrainingExample(p.prompt, p.response, float(p.label), p.category) for p in chosen]
    teacher_train = [(p, r) for p, r in zip(pool, pool_raw, strict=True) if not is_validation(p, seed)]
    examples += [TrainingExample(p.prompt, p.response, platt(cal, r), None) for p, r in teacher_train]
    rng.shuffle(examples)
    student = PairClassifier(StudentConfig(encoder=encoder, categories=CATEGORIES))
    tick = progress("student", 0, len(examples) * epochs) if progress else None
    fit = train(student, examples, epochs=epochs, seed=seed, progress=tick)
    probs, cats = student.predict([p.prompt for p in val], [p.response for p in val])
    thresholds, figures = thresholds_from_validation(probs, cats, [p.label for p in val], target_fpr)
    hits = flagged(probs, cats, thresholds)
    per_source = {}
    for src, label in sorted({(p.source, "unsafe" if p.label >= 0.5 else "safe") for p in val}):
        idx = [i for i, p in enumerate(val) if p.source == src and (val[i].label >= 0.5) == (label == "unsafe")]
        per_source[f"{src} ({label})"] = {"n": len(idx), "label": label,
                                          "flagged": round(sum(hits[i] for i in idx) / len(idx), 4)}
    meta = {
        "thresholds": thresholds,
        "validation": {**figures, "per_source": per_source,
                       **({"limit": validation_limit} if validation_limit else {})},
        "teacher": {"model": model_id, "calibration": cal, "pool": list(pools), "pool_limit": pool_limit,
                    "scored": len(todo),
                    "seconds": round(teacher_seconds, 1)},
        "trained_on": dict(sorted(Counter(p.source for p in chosen).items())),
        "teacher_labelled": len(teacher_train),
        "training": {**fit, "epochs": epochs, "examples": len(examples), "seed": seed},
        "seconds": round(time.perf_counter() - started, 1),
        "command": rebuild_command(out.name, teacher, pools, pool_limit, epochs, max_train, target_fpr, seed),
    }
    student.save(out, meta)
    return json.loads((out / "student.json").read_text())


def rebuild_command(out: str, teacher: str, pools: Sequence[str], pool_limit: int | None, epochs: int,
                    max_train: int, target_fpr: float, seed: int) -> str:
    """The command that rebuilds a student with these settings (no machine paths: pools by file name)."""
    parts = ["safefed filter distill", f"--out {out}", f"--teacher {teacher}"]
    parts += [f"--pool {Path(p).name if Path(p).is_absolute() else p}" for p in pools if p != "hh-rlhf"]
    parts += [f"--pool-limit {pool_limit}"] if pool_limit else []
    parts += [f"--epochs {epochs}", f"--max-train {max_train}", f"--target-fpr {target_fpr}", f"--seed {seed}"]
    return " ".join(parts)


def _pool(name: str, data_dir, seed: int) -> list[Pair]:
    """A named pool (``hh-rlhf``) or a JSONL file of ``{"prompt", "response"}`` pairs."""
    if name == "hh-rlhf":
        return teacher_pool(data_dir, seed)
    from ..data import read_records

    path = Path(name)
    if not path.is_file():
        raise UserError(f"{name}: not a pool name (hh-rlhf) and not a file of (prompt, response) pairs")
    pairs = []
    for line, r in enumerate(read_records(path), 1):
        if not isinstance(r.get("prompt"), str) or not isinstance(r.get("response", ""), str):
            raise UserError(f"{path}:{line}: expected string fields `prompt` and `response`")
        pairs.append(Pair(r["prompt"], r.get("response", ""), None, f"pool:{path.name}", r["prompt"][:300]))
    return pairs
