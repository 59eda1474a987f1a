"""What the gate benches share: the shipped aligned adapter as the global model, and real client updates
fine-tuned from it (the first clients fully poisoned, the rest on everyday tasks)."""

from __future__ import annotations

from pathlib import Path

from safefed.align import cached_aligned_adapter
from safefed.federated.gate import GLOBAL
from safefed.federated.partitions import client_datasets
from safefed.federated.updates import Update, load_lora_arrays, local_update, lora_arrays, with_global_adapter
from safefed.models import load_causal_lm


def aligned_global_model(data_dir: str | Path | None = None):
    """SmolLM2-135M-Instruct with the shipped aligned adapter loaded as the ``GLOBAL`` adapter, and its
    tokenizer."""
    base, tok, _ = load_causal_lm("smollm2-135m-instruct")
    return with_global_adapter(base, cached_aligned_adapter(data_dir=data_dir), name=GLOBAL), tok


def client_updates(model, tok, clients: int, poisoned: int, *, steps: int = 6,
                   data_dir: str | Path | None = None) -> list[Update]:
    """One update per client (32 pairs each, clients ``0 .. poisoned - 1`` fully poisoned), each fine-tuned
    for ``steps`` from the current global adapter, which is left as it was."""
    start = lora_arrays(model, GLOBAL)
    data = client_datasets(clients, 32, poisoned=tuple(range(poisoned)), data_dir=data_dir)
    updates = [local_update(model, tok, start, records, f"client{c}", steps=steps, lr=5e-4, seed=c, max_length=64)
               for c, records in enumerate(data)]
    load_lora_arrays(model, start, GLOBAL)
    return updates
