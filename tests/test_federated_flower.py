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
    # counts are summed over the admitted clients (6 rows each), not averaged; no averaged ids
    if metrics.get("safefed-admitted"):
        assert metrics["safefed-input"] == 6 * metrics["safefed-admitted"] and "partition-id" not in metrics
    json.dumps(summary)


@pytest.mark.slow
def test_plain_loop_example_runs(tmp_path, data_dir, smollm2_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SAFEFED_DATA": str(data_dir), "HF_HUB_OFFLINE": "1"}

    def loop(rounds: int) -> None:
        res = subprocess.run([sys.executable, str(root / "examples" / "plain_loop.py"), "--rounds", str(rounds),
                              "--clients", "2", "--per-client", "6", "--local-steps", "1", "--harmful-sample", "3",
                              "--out", str(tmp_path / "loop")], capture_output=True, text=True, env=env, timeout=1200)
        assert res.returncode == 0, res.stderr[-2000:]

    loop(1)
    rows = read_audit(tmp_path / "loop" / "audit.jsonl")
    assert [r["event"] for r in rows] == ["decision", "decision", "round_complete"]
    assert (tmp_path / "loop" / "adapter" / "adapter_config.json").exists()
    # asked for two rounds, the same folder resumes: round 1 is not redone, round 2 starts from its model
    first = (tmp_path / "loop" / "checkpoints" / "round-0001.safetensors").read_bytes()
    loop(2)
    rows = read_audit(tmp_path / "loop" / "audit.jsonl")
    assert [(r["round"], r["event"]) for r in rows if r["event"] == "round_complete"] == [
        (1, "round_complete"), (2, "round_complete")]
    assert (tmp_path / "loop" / "checkpoints" / "round-0001.safetensors").read_bytes() == first
    assert (tmp_path / "loop" / "checkpoints" / "round-0002.safetensors").exists()


def test_client_safety_prepares_records(tiny_llama_path, data_dir):
    """Filter -> revise on a client's own records; every input row is accounted for."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safefed.federated.client import ClientSafety
    from safefed.federated.partitions import client_datasets

    (records,) = client_datasets(1, 12, layout="mixed", harmful_fraction=0.5, data_dir=data_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    prepared = ClientSafety("default", "default", model=model, tokenizer=tok).prepare(records)
    m = prepared.metrics
    assert m["safefed-input"] == 12
    assert m["safefed-kept"] + m["safefed-dropped"] + m["safefed-revised"] + m["safefed-template"] == 12
    assert len(prepared.pairs) == m["safefed-kept"] + m["safefed-revised"] + m["safefed-template"]
    assert m["safefed-kept"] < 12  # the harmful, compliant half does not pass as it is
    assert all(set(p) == {"prompt", "response"} for p in prepared.pairs)


def test_client_safety_replays_safety_pairs(data_dir):
    """replay=0.25 adds one safety pair per four kept ones, counted, from non-evaluation data."""
    from safefed import data as datasets
    from safefed.federated.client import ClientSafety
    from safefed.federated.partitions import client_datasets

    (records,) = client_datasets(1, 40, poisoned=(), data_dir=data_dir)
    prepared = ClientSafety(None, None, replay=0.25, seed=3, data_dir=data_dir).prepare(records)
    assert prepared.metrics["safefed-replay"] == 10
    assert len(prepared.pairs) == 50 and prepared.pairs[:40] == [
        {"prompt": r["prompt"], "response": r["response"]} for r in records]
    evaluation = {r["prompt"] for name in ("advbench", "xstest") for r in datasets.load(name, data_dir)}
    assert not evaluation & {p["prompt"] for p in prepared.pairs[40:]}
    assert ClientSafety(None, None, data_dir=data_dir).prepare(records).metrics["safefed-replay"] == 0
