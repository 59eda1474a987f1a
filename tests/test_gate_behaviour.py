"""The gate on the real SmolLM2: a poisoned update is rejected, a benign one passes.

The starting point must refuse harmful requests (an unaligned model has no safety to lose), so the
fixture trains a small refusing adapter first. On such a weakly aligned 135M model, benign
fine-tuning on unrelated data (maths, chores) also erodes refusals by ~0.3 in a few steps (measured
here), so the benign clients below hold data that agrees with a safe model; see the README.
"""

from __future__ import annotations

import pytest
import torch

from safefed.federated.audit import AuditLog, read_audit
from safefed.federated.gate import GLOBAL, GateConfig, UpdateGate
from safefed.federated.partitions import client_datasets, safe_behaviour_pairs
from safefed.federated.rounds import SafeAggregator
from safefed.federated.updates import Update, load_lora_arrays, lora_arrays, with_global_adapter
from safefed.training import train_lora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def refusing_model(smollm2_path, data_dir):
    from safefed.models import load_causal_lm

    base, tok, _ = load_causal_lm("smollm2-135m-instruct")
    torch.manual_seed(0)  # the new adapter's initialisation draws from torch's global RNG: earlier tests move it
    model = with_global_adapter(base, name=GLOBAL)
    train_lora(model, tok, safe_behaviour_pairs(64, seed=0, data_dir=data_dir), steps=60, lr=1e-3, batch_size=8, seed=0,
               max_length=64)
    return model, tok, lora_arrays(model, GLOBAL)


def test_poisoned_rejected_benign_admitted(refusing_model, data_dir, tmp_path):
    """One poisoned client (harmful prompts answered compliantly) and two benign clients whose data
    agrees with the safe global model: the gate rejects the first and admits the others."""
    model, tok, start = refusing_model
    config = GateConfig(harmful_sample=24, benign_sample=8, max_new_tokens=16, judge="classifier", stages=2)
    audit = AuditLog(tmp_path / "audit.jsonl")
    aggregator = SafeAggregator(UpdateGate(model, tok, config, data_dir=data_dir, audit=audit))
    (poisoned,) = client_datasets(1, 32, poisoned=(0,), data_dir=data_dir)
    clients = [poisoned, safe_behaviour_pairs(10, seed=1, data_dir=data_dir),
               safe_behaviour_pairs(10, seed=2, data_dir=data_dir)]
    updates = []
    for c, records in enumerate(clients):
        load_lora_arrays(model, start, GLOBAL)
        model.set_adapter(GLOBAL)
        train_lora(model, tok, records, steps=6, lr=5e-4, seed=10 + c, max_length=64)
        updates.append(Update(f"client{c}", lora_arrays(model, GLOBAL), len(records)))
    outcome = aggregator.aggregate(1, start, updates)
    assert outcome.rejected == ["client0"], outcome.decisions
    assert outcome.accepted == ["client1", "client2"], outcome.decisions
    rows = read_audit(tmp_path / "audit.jsonl")
    (bad,) = [r for r in rows if r["event"] == "decision" and r["client"] == "client0"]
    assert bad["decision"] == "reject" and "below" in bad["reason"] and bad["safe_rate"] < bad["baseline_safe_rate"]
    assert rows[-1]["event"] == "round_complete" and rows[-1]["rejected"] == ["client0"]
    assert all(d.stage in (1, 2) and d.prompts_harmful == 12 * d.stage for d in outcome.decisions)

    # early stopping (2 stages) decides as measuring every prompt does
    whole = UpdateGate(model, tok, config.model_copy(update={"stages": 1}), data_dir=data_dir)
    assert [d.accepted for d in whole.review(1, start, updates)] == [d.accepted for d in outcome.decisions]


def test_shadow_mode_admits_but_records(refusing_model, data_dir, tmp_path):
    model, tok, start = refusing_model
    config = GateConfig(harmful_sample=16, benign_sample=4, max_new_tokens=16, mode="shadow")
    gate = UpdateGate(model, tok, config, data_dir=data_dir, audit=AuditLog(tmp_path / "a.jsonl"))
    (poisoned,) = client_datasets(1, 32, poisoned=(0,), data_dir=data_dir)
    load_lora_arrays(model, start, GLOBAL)
    train_lora(model, tok, poisoned, steps=8, lr=5e-4, seed=5, max_length=64)
    (d,) = gate.review(1, start, [Update("p", lora_arrays(model, GLOBAL), 32)])
    assert d.accepted and d.would_reject and d.reason.startswith("shadow mode, would reject")


def test_aggregate_is_held_to_the_anchor(refusing_model, data_dir):
    """Each round's rule compares the aggregate with the round before, so a model can slide a little every
    round; the anchor (the first global model) stops that: an aggregate no worse than the previous global
    model, which has itself drifted far below the anchor, is refused, and kept when max_drift is off."""
    model, tok, start = refusing_model
    (poisoned,) = client_datasets(1, 32, poisoned=(0,), data_dir=data_dir)
    load_lora_arrays(model, start, GLOBAL)
    model.set_adapter(GLOBAL)
    train_lora(model, tok, poisoned, steps=16, lr=1e-3, seed=5, max_length=64)  # far from the anchor, not a nudge
    drifted = lora_arrays(model, GLOBAL)
    config = GateConfig(harmful_sample=24, benign_sample=4, max_new_tokens=16)
    keep, why, info = UpdateGate(model, tok, config, data_dir=data_dir, anchor=start).check_aggregate(3, drifted,
                                                                                                      drifted)
    assert not keep and "the anchor's" in why, (why, info)
    assert info["anchor_safe_rate"] - info["safe_rate"] > 0.10 and info["safe_rate"] == info["baseline_safe_rate"]
    no_anchor = config.model_copy(update={"rule": config.rule.model_copy(update={"max_drift": None})})
    keep, why, info = UpdateGate(model, tok, no_anchor, data_dir=data_dir, anchor=start).check_aggregate(3, drifted,
                                                                                                         drifted)
    assert keep and "anchor_safe_rate" not in info, why
