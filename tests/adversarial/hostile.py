"""What hostile clients send: small changes of the global arrays, and poisoned ones."""

from __future__ import annotations

import numpy as np


def perturbed(arrays: dict, seed: int, scale: float = 0.01) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32) for k, v in arrays.items()}


def poisoned(arrays: dict, value: float = np.nan) -> dict:
    out = {k: v.copy() for k, v in arrays.items()}
    out[next(iter(out))][...] = value
    return out
