"""Flower's simulation engine running safefed's app, and the gate rejecting a poisoned client."""

from __future__ import annotations

import json

import pytest

from safefed.federated.audit import read_audit


@pytest.mark.slow
def test_simulation_engine_with_gate_and_a_failing_client(tmp_path, data_dir, smollm2_path):
    """Three simulated clients, one of which fails mid-round: the round completes with the others,
    every reply is decided in the audit log and the final adapter is saved."""
    from safefed.federated.app import FedConfig, run_simulation

    cfg = FedConfig(num_clients=3, rounds=1, local_steps=1, per_client=6, poisoned=[0], fail_clients=[2],
                    gate="default", gate_harmful_sample=3, gate_benign_sample=1, out=str(tmp_path / "sim"),
                    data_dir=str(data_dir), filter_policy="default")
    summary = run_simulation(cfg)
    rows = read_audit(tmp_path / "sim" / "audit.jsonl")
    decisions = [r for r in rows if r["event"] == "decision"]
    assert len(decisions) == 3
    failed = [d for d in decisions if d["reason"].startswith("client failed")]
    assert len(failed) == 1 and failed[0]["decision"] == "reject"
    assert rows[-1]["event"] == "round_complete" and rows[-1]["round"] == 1
    assert (tmp_path / "sim" / "adapter" / "adapter_config.json").exists()
    metrics = summary["train_metrics"].get("1", {})
    assert metrics.get("safefed-admitted", 0) + metrics.get("safefed-rejected", 0) == 3
    json.dumps(summary)
