"""Rates with Wilson score intervals."""

from __future__ import annotations

import math

SMALL_N = 50


def logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def platt(cal: dict, raw: float) -> float:
    """``sigmoid(a * logit(raw) + b)``: a score calibrated by a fitted ``{"a", "b"}``."""
    return 1 / (1 + math.exp(-(cal["a"] * logit(raw) + cal["b"])))


def calibrated(score: float, threshold: float) -> float:
    """Map [0, threshold] to [0, 0.5] and [threshold, 1] to [0.5, 1]: 0.5 is the calibrated operating point."""
    if threshold <= 0.0:
        return 1.0 if score > 0 else 0.5
    if threshold >= 1.0:
        return 0.5 * score
    return 0.5 * score / threshold if score < threshold else 0.5 + 0.5 * (score - threshold) / (1 - threshold)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (``(0, 1)`` when n is 0)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int) -> dict:
    """``{"value", "k", "n", "ci95"}`` plus a note when n is small."""
    lo, hi = wilson(k, n)
    out = {"value": round(k / n, 4) if n else None, "k": k, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}
    if n < SMALL_N:
        out["note"] = f"n={n} < {SMALL_N}: wide interval"
    return out
