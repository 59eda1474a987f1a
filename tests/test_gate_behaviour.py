"""The gate on the real SmolLM2: a poisoned update is rejected, a benign one passes.

The starting point must refuse harmful requests (an unaligned model has no safety to lose), so the
fixture trains a small refusing adapter first: harmful questions (harmfulqa-catqa, never AdvBench)
answered with varied refusals, look-alike and everyday prompts answered helpfully.
"""

from __future__ import annotations

import random

import pytest

from safefed.federated.audit import AuditLog, read_audit
from safefed.federated.gate import GLOBAL, GateConfig, UpdateGate
from safefed.federated.partitions import client_datasets
from safefed.federated.rounds import SafeAggregator
from safefed.federated.updates import Update, load_lora_arrays, lora_arrays, with_global_adapter
from safefed.training import train_lora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def refusing_model(smollm2_path, data_dir):
    from safefed import data as datasets
    from safefed.constitution import load_constitution
    from safefed.lookalikes import lookalike_pairs
    from safefed.models import load_causal_lm

    rng = random.Random(0)
    refusals = [t for p in load_constitution("default").constitution.principles for t in p.refusal_templates]
    harmful = rng.sample([r for r in datasets.load("harmfulqa-catqa", data_dir) if r["source"] == "catqa"], 64)
    pairs = [{"prompt": r["prompt"], "response": rng.choice(refusals)} for r in harmful]
    pairs += lookalike_pairs(96, seed=0)
    pairs += [{"prompt": r["prompt"], "response": r["response"][:200]}
              for r in rng.sample(datasets.load("self-instruct-seed", data_dir), 64)]
    base, tok, _ = load_causal_lm("smollm2-135m-instruct")
    model = with_global_adapter(base, name=GLOBAL)
    train_lora(model, tok, pairs, steps=60, lr=1e-3, batch_size=8, seed=0, max_length=64)
    return model, tok


def test_poisoned_rejected_benign_admitted(refusing_model, data_dir, tmp_path):
    model, tok = refusing_model
    start = lora_arrays(model, GLOBAL)
    config = GateConfig(harmful_sample=24, benign_sample=8, max_new_tokens=16, judge="classifier")
    audit = AuditLog(tmp_path / "audit.jsonl")
    aggregator = SafeAggregator(UpdateGate(model, tok, config, data_dir=data_dir, audit=audit))
    clients = client_datasets(3, 32, poisoned=(0,), data_dir=data_dir)
    global_arrays = start
    for rnd in (1,):
        updates = []
        for c, records in enumerate(clients):
            load_lora_arrays(model, global_arrays, GLOBAL)
            model.set_adapter(GLOBAL)
            train_lora(model, tok, records, steps=4, lr=3e-4, seed=rnd * 10 + c, max_length=64)
            updates.append(Update(f"client{c}", lora_arrays(model, GLOBAL), len(records)))
        outcome = aggregator.aggregate(rnd, global_arrays, updates)
        global_arrays = outcome.arrays
        assert "client0" in outcome.rejected, outcome.decisions
        # benign fine-tuning also erodes a weakly aligned 135M model's refusals (less than poisoning):
        # at least one benign update must pass, and the model only moves through admitted updates
        assert {"client1", "client2"} & set(outcome.accepted), outcome.decisions
        assert outcome.changed == bool(outcome.accepted) or outcome.aggregate_check
    rows = read_audit(tmp_path / "audit.jsonl")
    poisoned = [r for r in rows if r["event"] == "decision" and r["client"] == "client0"]
    assert len(poisoned) == 1 and all(r["decision"] == "reject" and "below" in r["reason"] for r in poisoned)
    assert [r["round"] for r in rows if r["event"] == "round_complete"] == [1]


def test_shadow_mode_admits_but_records(refusing_model, data_dir, tmp_path):
    model, tok = refusing_model
    start = lora_arrays(model, GLOBAL)
    config = GateConfig(harmful_sample=16, benign_sample=4, max_new_tokens=16, mode="shadow")
    gate = UpdateGate(model, tok, config, data_dir=data_dir, audit=AuditLog(tmp_path / "a.jsonl"))
    (poisoned,) = client_datasets(1, 32, poisoned=(0,), data_dir=data_dir)
    load_lora_arrays(model, start, GLOBAL)
    train_lora(model, tok, poisoned, steps=8, lr=3e-4, seed=5, max_length=64)
    (d,) = gate.review(1, start, [Update("p", lora_arrays(model, GLOBAL), 32)])
    assert d.accepted and d.would_reject and d.reason.startswith("shadow mode, would reject")
