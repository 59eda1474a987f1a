"""A hostile client controls its update: arrays, the num-examples it claims, its metrics, its id, its reply.

Whatever it sends, an invalid update is rejected with a reason in the audit log, it has no part in
anyone's weight, and the round ends with ``round_complete``. The gate here measures nothing that could
reject a valid update (no rule thresholds, no aggregate check): only the validity checks stand guard.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hostile import metadata, perturbed, poisoned, reply

from safefed.errors import UserError
from safefed.federated.audit import AuditLog, read_audit
from safefed.federated.rounds import SafeAggregator
from safefed.federated.updates import Update


def _decisions(audit_path):
    return [r for r in read_audit(audit_path) if r["event"] == "decision"]


def _finite(arrays) -> bool:
    return all(np.isfinite(v).all() for v in arrays.values())


# 1. a repeated client id ------------------------------------------------------------------------------

def test_repeated_client_id_rejects_every_copy(cheap_gate):
    gate, g, audit_path = cheap_gate
    outcome = SafeAggregator(gate).aggregate(1, g, [Update("c1", poisoned(g), 10), Update("c1", perturbed(g, 1), 10),
                                                    Update("c2", perturbed(g, 2), 10)])
    assert outcome.accepted == ["c2"] and outcome.rejected == ["c1", "c1"]
    assert _finite(outcome.arrays)
    rows = _decisions(audit_path)
    assert [r["decision"] for r in rows if r["client"] == "c1"] == ["reject", "reject"]
    assert all("client id 'c1' sent 2 updates" in r["reason"] for r in rows if r["client"] == "c1")
    assert read_audit(audit_path)[-1]["event"] == "round_complete"


def test_repeated_id_differs_only_in_type(cheap_gate):
    """1 and "1" are the same client in the audit log: they cannot both be counted."""
    gate, g, _ = cheap_gate
    outcome = SafeAggregator(gate).aggregate(1, g, [Update(1, perturbed(g, 1), 10), Update("1", perturbed(g, 2), 10)])
    assert not outcome.accepted and not outcome.changed


# 4. one hostile num-examples value --------------------------------------------------------------------

HOSTILE_COUNTS = ["abc", math.nan, math.inf, -math.inf, None, -1, True, 2.5, [10], {"n": 1}, 1e309]


@pytest.mark.parametrize("n", HOSTILE_COUNTS, ids=repr)
def test_hostile_num_examples_is_rejected_and_the_round_completes(cheap_gate, n):
    gate, g, audit_path = cheap_gate
    outcome = SafeAggregator(gate).aggregate(1, g, [Update("bad", perturbed(g, 1), n),
                                                    Update("good", perturbed(g, 2), 10)])
    assert outcome.accepted == ["good"] and outcome.changed and _finite(outcome.arrays)
    bad = next(r for r in _decisions(audit_path) if r["client"] == "bad")
    assert bad["decision"] == "reject" and "num-examples" in bad["reason"]
    last = read_audit(audit_path)[-1]
    assert last["event"] == "round_complete" and last["rejected"] == ["bad"]


def test_whole_float_counts_are_fine(cheap_gate):
    """Flower's MetricRecord carries counts as floats: 10.0 is ten examples, not an attack."""
    gate, g, _ = cheap_gate
    decisions = gate.review(1, g, [Update("a", perturbed(g, 1), 10.0), Update("b", perturbed(g, 2), np.int64(10))])
    assert [d.accepted for d in decisions] == [True, True] and [d.n_examples_used for d in decisions] == [10, 10]


@pytest.mark.parametrize("n", [math.nan, math.inf, -1.0, 2.5, None])
def test_flower_safety_gate_hostile_num_examples(cheap_gate, n):
    from flwr.serverapp.strategy import FedAvg

    from safefed.federated.flower import SafetyGate, record_to_arrays

    gate, g, audit_path = cheap_gate
    wrapped = SafetyGate(FedAvg(), gate)
    wrapped._global = g
    hostile = {"train-loss": 1.0} if n is None else {"num-examples": n, "train-loss": 1.0}
    good = {"num-examples": 10, "train-loss": 1.0}
    arrays, metrics = wrapped.aggregate_train(1, [reply(1, perturbed(g, 1), hostile), reply(2, perturbed(g, 2), good),
                                                  reply(3, perturbed(g, 3), good)])
    assert arrays is not None and _finite(record_to_arrays(arrays))
    assert metrics["safefed-rejected"] == 1 and metrics["safefed-admitted"] == 2
    bad = next(r for r in _decisions(audit_path) if r["client"] == "1")
    assert bad["decision"] == "reject" and "num-examples" in bad["reason"]
    assert read_audit(audit_path)[-1]["event"] == "round_complete"


def test_flower_one_clients_odd_metrics_do_not_fail_the_round(cheap_gate):
    """Flower's strategies refuse metric records whose keys or forms differ: a valid update with an extra
    or differently shaped metric must not make the whole round's aggregation fail."""
    from flwr.serverapp.strategy import FedAvg

    from safefed.federated.flower import SafetyGate

    gate, g, audit_path = cheap_gate
    wrapped = SafetyGate(FedAvg(), gate)
    wrapped._global = g
    arrays, metrics = wrapped.aggregate_train(1, [
        reply(1, perturbed(g, 1), {"num-examples": 10, "train-loss": 1.0}),
        reply(2, perturbed(g, 2), {"num-examples": 10, "train-loss": [1.0, 2.0], "extra": 7}),
        reply(3, perturbed(g, 3), {"num-examples": 10})])
    assert arrays is not None and metrics["safefed-admitted"] == 3
    last = read_audit(audit_path)[-1]
    assert last["event"] == "round_complete" and last["changed"] and "aggregation failed" not in last["note"]


def test_flower_malformed_and_failed_replies_are_rejected_with_reasons(cheap_gate):
    from flwr.app import Error, Message
    from flwr.serverapp.strategy import FedAvg

    from safefed.federated.flower import SafetyGate

    gate, g, audit_path = cheap_gate
    no_arrays = reply(1, None, {"num-examples": 10})
    failed = Message(error=Error(code=1, reason="boom"), metadata=metadata(2))
    wrapped = SafetyGate(FedAvg(), gate)
    wrapped._global = g
    arrays, metrics = wrapped.aggregate_train(1, [no_arrays, failed])
    assert arrays is None and metrics["safefed-rejected"] == 2
    reasons = {r["client"]: r["reason"] for r in _decisions(audit_path)}
    assert "expected one ArrayRecord" in reasons["1"] and "client failed: boom" in reasons["2"]
    last = read_audit(audit_path)[-1]
    assert last["event"] == "round_complete" and not last["changed"]


# 5. invalid sybils and the examples cap -----------------------------------------------------------------

def test_invalid_sybils_do_not_lift_the_examples_cap(cheap_gate):
    gate, g, _ = cheap_gate
    honest = [Update(f"h{i}", perturbed(g, i), 10) for i in range(3)]
    attacker = Update("attacker", perturbed(g, 9), 100_000)
    alone = {d.client: d.n_examples_used for d in gate.review(1, g, [*honest, attacker])}
    sybils = [Update(f"sybil{i}", {}, 1e12) for i in range(4)]
    crowded = {d.client: d.n_examples_used for d in gate.review(2, g, [*honest, attacker, *sybils])}
    assert alone["attacker"] == crowded["attacker"] == 30  # 3 x the valid updates' median of 10
    assert all(crowded[f"sybil{i}"] == 0 for i in range(4))


# aggregation that raises ----------------------------------------------------------------------------------

def test_a_raising_aggregation_still_completes_the_round(cheap_gate):
    gate, g, audit_path = cheap_gate

    def broken(arrays, weights):
        raise ZeroDivisionError("user aggregate blew up")

    outcome = SafeAggregator(gate, aggregate_fn=broken).aggregate(1, g, [Update("a", perturbed(g, 1), 10)])
    assert not outcome.changed and outcome.arrays is g
    last = read_audit(audit_path)[-1]
    assert last["event"] == "round_complete" and "aggregation failed (ZeroDivisionError" in last["note"]


def test_every_update_invalid_completes_the_round(cheap_gate):
    gate, g, audit_path = cheap_gate
    hostile = [Update("a", None, 10), Update("b", "x", 10), Update("c", {1: np.zeros(1)}, 10),
               Update("d", poisoned(g, np.inf), 5)]
    outcome = SafeAggregator(gate).aggregate(1, g, hostile)
    assert not outcome.changed and len(outcome.rejected) == 4
    assert read_audit(audit_path)[-1]["event"] == "round_complete"


# partition ids reported by clients --------------------------------------------------------------------

def test_partition_order_survives_hostile_partition_ids(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    from safefed.federated.flower import PartitionOrderedGrid

    for name in ("_task_id", "_run_id", "_node_id"):  # what a running ServerApp has: a Message needs it
        monkeypatch.setattr(TaskIdentity, name, 1)

    class Grid:  # Flower's Grid protocol, answering as three clients would (one of them hostile)
        def get_node_ids(self):
            return [11, 22, 33]

        def send_and_receive(self, msgs, timeout=None):
            pids = {11: 1, 22: math.nan, 33: 0}
            return [reply(m.metadata.dst_node_id, None, {"partition-id": pids[m.metadata.dst_node_id]}, "query")
                    for m in msgs]

    grid = PartitionOrderedGrid(Grid())
    assert grid.get_node_ids() == [33, 11, 22]


# 6. resume after kill -9 ---------------------------------------------------------------------------------

KILLED_RUN = textwrap.dedent("""
    import hashlib, os, signal, sys
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from safefed.federated.audit import AuditLog
    from safefed.federated.gate import GLOBAL, GateConfig, UpdateGate
    from safefed.federated.rounds import SafeAggregator
    from safefed.federated.updates import Update, lora_arrays, with_global_adapter
    tiny, data, out = sys.argv[1:4]
    model = with_global_adapter(AutoModelForCausalLM.from_pretrained(tiny), name=GLOBAL, r=2,
                                target_modules=("q_proj", "v_proj"))
    tok = AutoTokenizer.from_pretrained(tiny)
    cfg = GateConfig(harmful_sample=2, benign_sample=1, max_new_tokens=2, judge="refusal", check_aggregate=False)
    agg = SafeAggregator(UpdateGate(model, tok, cfg, data_dir=data, audit=AuditLog(out + "/audit.jsonl")),
                         checkpoints=out + "/checkpoints")
    g = lora_arrays(model, GLOBAL)
    rng = np.random.default_rng(0)
    moved = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in g.items()}
    outcome = agg.aggregate(1, g, [Update("a", moved, 10)])
    digest = hashlib.sha256(b"".join(outcome.arrays[k].tobytes() for k in sorted(outcome.arrays))).hexdigest()
    print(digest, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _digest(arrays) -> str:
    return hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()


def test_resume_after_kill_9_continues_from_the_last_round(cheap_gate, tiny_llama_path, data_dir, tmp_path):
    gate, g, _ = cheap_gate
    out = tmp_path / "run"
    out.mkdir()
    res = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tiny_llama_path), str(data_dir), str(out)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    round1 = res.stdout.split()[-1]
    resumed = SafeAggregator(gate, audit=AuditLog(out / "audit.jsonl"), checkpoints=out / "checkpoints")
    first, arrays = resumed.resume(g)
    assert first == 2 and _digest(arrays) == round1 != _digest(g)


def test_resume_refuses_a_complete_round_without_its_model(cheap_gate, tmp_path):
    gate, g, _ = cheap_gate
    audit = AuditLog(tmp_path / "a.jsonl")
    audit.complete(1, accepted=[], rejected=[], changed=False, note="")
    with pytest.raises(UserError, match="round 1 is complete but its model is not in"):
        SafeAggregator(gate, audit=audit, checkpoints=tmp_path / "none").resume(g)
    assert SafeAggregator(gate, audit=AuditLog(tmp_path / "fresh.jsonl")).resume(g) == (1, g)
