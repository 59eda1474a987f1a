"""Client updates as named arrays: validity checks, the num-examples cap, FedAvg, LoRA state I/O.

Everything in an :class:`Update` except the server's own reference arrays comes from a client and may be
hostile: :func:`check_update` and :func:`check_examples` return a reason instead of raising, whatever
they are given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass
class Update:
    """One client's candidate: its LoRA adapter weights (or a full-model delta) and what it reported.

    ``n_examples`` is what the client claims (validated by the gate, not trusted); ``problem`` is set by a
    transport that already knows the reply is unusable (a failed or malformed Flower reply), so that it
    is rejected and logged like every other invalid update.
    """

    client: str
    arrays: Any
    n_examples: Any
    metrics: dict = field(default_factory=dict)
    problem: str | None = None


def check_examples(n: Any) -> tuple[int | None, str | None]:
    """(count, None) for a finite non-negative whole number of examples, else (None, why not)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        return None, f"invalid: num-examples is {type(n).__name__} {_short(n)}, expected a whole number"
    if not math.isfinite(float(n)) or n < 0 or float(n) != math.floor(float(n)):
        return None, f"invalid: num-examples {_short(n)} is not a finite non-negative whole number"
    return int(n), None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_update(arrays: Any, reference: Mapping[str, np.ndarray], max_norm: float | None = None) -> str | None:
    """Why ``arrays`` cannot be a valid update of ``reference`` (None if it can).

    Checks the container, keys, shapes, dtypes, finiteness and the L2 norm of the change against
    ``max_norm``.
    """
    if not isinstance(arrays, Mapping):
        return f"invalid: arrays are {type(arrays).__name__}, expected a mapping of name -> array"
    if not all(isinstance(k, str) for k in arrays):
        return "invalid: array names must be strings"
    missing = sorted(set(reference) - set(arrays))
    extra = sorted(set(arrays) - set(reference))
    if missing:
        return f"invalid: {len(missing)} missing key(s), e.g. {missing[0]}"
    if extra:
        return f"invalid: {len(extra)} unexpected key(s), e.g. {extra[0]}"
    sq = 0.0
    for name, ref in reference.items():
        arr = arrays[name]
        if not isinstance(arr, np.ndarray):
            return f"invalid: {name} is {type(arr).__name__}, not an array"
        if arr.shape != ref.shape:
            return f"invalid: {name} has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}"
        if arr.dtype != ref.dtype:
            return f"invalid: {name} has dtype {arr.dtype}, expected {ref.dtype}"
        if not np.isfinite(arr).all():
            return f"invalid: {name} holds NaN or Inf"
        sq += float(np.square(arr.astype(np.float64) - ref.astype(np.float64)).sum())
    norm = sq**0.5
    if max_norm is not None and norm > max_norm:
        return f"invalid: update norm {norm:.3g} exceeds the bound {max_norm:.3g}"
    return None


def capped_examples(reported: Sequence[int], cap: int | None = None, factor: float | None = 3.0) -> list[int]:
    """FedAvg weights clients by their self-reported example counts: bound them.

    Each count is clipped to ``cap`` (absolute) and to ``factor`` x the round's median, so one client
    cannot buy the average by claiming a huge dataset. Non-positive counts become 1.
    """
    counts = [max(1, int(n)) for n in reported]
    if not counts:
        return []
    bound = float("inf")
    if cap is not None:
        bound = min(bound, cap)
    if factor is not None:
        bound = min(bound, factor * float(np.median(counts)))
    return [int(min(n, max(1, bound))) for n in counts]


def fedavg(updates: Sequence[Arrays], weights: Sequence[float]) -> Arrays:
    """Weighted average of named arrays (float32 out)."""
    total = float(sum(weights))
    out: Arrays = {}
    for name in updates[0]:
        acc = sum(w * u[name].astype(np.float64) for u, w in zip(updates, weights, strict=True))
        out[name] = (acc / total).astype(np.float32)
    return out


def lora_arrays(model, adapter_name: str = "default") -> Arrays:
    """The adapter's LoRA weights as float32 numpy arrays, keyed as PEFT saves them."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return {k: v.detach().float().cpu().numpy().copy() for k, v in state.items()}


def load_lora_arrays(model, arrays: Mapping[str, np.ndarray], adapter_name: str = "default") -> None:
    """Load named arrays (as from :func:`lora_arrays`) into adapter ``adapter_name`` of a PeftModel."""
    import torch
    from peft import set_peft_model_state_dict

    state = {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in arrays.items()}
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise ValueError(f"adapter weights do not fit the model: {unexpected[0]}")


def with_global_adapter(model, adapter: str | None = None, *, name: str = "global", r: int = 8,
                        target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    """Wrap a base model with the global LoRA adapter: loaded from ``adapter``, or fresh (B = 0, a no-op)."""
    from peft import LoraConfig, get_peft_model

    from ..models import attach_adapter

    if adapter:
        return attach_adapter(model, adapter, name=name, is_trainable=True)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules=list(target_modules),
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg, adapter_name=name)


def save_global_adapter(model, out: str | Path, name: str = "global") -> Path:
    """Save adapter ``name`` as a plain PEFT folder at ``out`` (PEFT would nest it under ``out/name``)."""
    out = Path(out)
    model.save_pretrained(out, selected_adapters=[name])
    nested = out / name
    if nested.is_dir():
        for f in nested.iterdir():
            f.replace(out / f.name)
        nested.rmdir()
    return out


def local_update(model, tokenizer, global_arrays: Arrays, pairs: Sequence[dict], client: str, *, steps: int,
                 lr: float, seed: int, max_length: int = 96, metrics: dict | None = None,
                 name: str = "global") -> Update:
    """One client's round in a plain loop: start from the global adapter, fine-tune, return the update."""
    from ..training import train_lora

    load_lora_arrays(model, global_arrays, name)
    model.set_adapter(name)
    if pairs:
        train_lora(model, tokenizer, pairs, steps=steps, lr=lr, seed=seed, max_length=max_length)
    return Update(client, lora_arrays(model, name), len(pairs), dict(metrics or {}))
