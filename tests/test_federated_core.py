"""The federated core on tiny random Llamas: audit log, validity, caps, rule, gate mechanics, Flower wrapper."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from safefed.federated.audit import AuditLog, read_audit
from safefed.federated.gate import (
    GLOBAL,
    GateConfig,
    GateRule,
    Measurement,
    Reference,
    UpdateGate,
    clears_rule,
    interim_rule,
    judge_rule,
    pooled,
)
from safefed.federated.rounds import SafeAggregator
from safefed.federated.updates import (
    Update,
    capped_examples,
    check_update,
    fedavg,
    load_lora_arrays,
    lora_arrays,
    with_global_adapter,
)

# --- audit log ------------------------------------------------------------------------------------


def test_audit_attempts_and_torn_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.decision(1, client="a", decision="accept")
    log.complete(1)
    log.decision(2, client="a", decision="accept")
    with path.open("ab") as fh:  # a run killed mid-write leaves a torn line
        fh.write(b'{"round": 2, "attempt": 1, "event": "deci')
    assert len(read_audit(path)) == 3
    resumed = AuditLog(path)
    assert resumed.completed_rounds() == {1}
    assert resumed.attempt(2) == 2 and resumed.attempt(3) == 1
    resumed.decision(2, client="a", decision="reject")
    rows = read_audit(path)
    assert [(r["round"], r["attempt"], r["event"]) for r in rows] == [
        (1, 1, "decision"), (1, 1, "round_complete"), (2, 1, "decision"), (2, 2, "decision")]
    lines = path.read_text().splitlines()
    assert lines[3].startswith('{"round": 2, "attempt": 1, "event": "deci')  # never rewritten
    assert json.loads(lines[4])["attempt"] == 2


# --- updates --------------------------------------------------------------------------------------

REF = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}


@pytest.mark.parametrize("change, fragment", [
    (lambda u: u.pop("b"), "missing"),
    (lambda u: u.update(c=np.zeros(1, np.float32)), "unexpected"),
    (lambda u: u.update(a=np.zeros((3, 2), np.float32)), "shape"),
    (lambda u: u.update(a=np.zeros((2, 3), np.float64)), "dtype"),
    (lambda u: u["a"].__setitem__((0, 0), np.nan), "NaN"),
    (lambda u: u.update(b=np.full(4, 1e6, np.float32)), "norm"),
])
def test_check_update_rejects(change, fragment):
    upd = {k: v.copy() for k, v in REF.items()}
    change(upd)
    reason = check_update(upd, REF, max_norm=100.0)
    assert reason and reason.startswith("invalid:") and fragment in reason
    assert check_update({k: v + 0.1 for k, v in REF.items()}, REF, max_norm=100.0) is None


def test_num_examples_cap_and_fedavg():
    assert capped_examples([10, 12, 11, 10_000]) == [10, 12, 11, 34]
    assert capped_examples([10, 12], cap=11, factor=None) == [10, 11]
    assert capped_examples([0, -5, 4], factor=None) == [1, 1, 4]
    avg = fedavg([{"w": np.zeros(2, np.float32)}, {"w": np.ones(2, np.float32)}], [1, 3])
    assert np.allclose(avg["w"], 0.75) and avg["w"].dtype == np.float32


def test_rule_uses_confidence_bounds():
    rule = GateRule(max_drop=0.1, max_over_refusal_rise=0.2)
    base = Measurement(28, 32, 2, 16)
    assert judge_rule(rule, Measurement(25, 32, 2, 16), base) is None  # noise-sized dip passes
    assert "below the global" in judge_rule(rule, Measurement(8, 32, 2, 16), base)
    assert "over_refusal" in judge_rule(rule, Measurement(32, 32, 15, 16), base)  # refuses everything
    assert "floor" in judge_rule(GateRule(floor=0.9, max_drop=None), Measurement(10, 32, 0, 16), base)


def test_cohort_reference_forgives_drift_shared_by_the_round():
    """Benign fine-tuning moves every candidate; only one far below its peers fails the cohort rule."""
    rule = GateRule(max_drop=0.1, reference="cohort")
    base = Measurement(24, 32, 0, 16)                      # global model: 0.75
    cands = [Measurement(k, 32, 1, 16) for k in (12, 14, 11, 0)]  # three drifted benign, one poisoned
    ref = Reference.cohort(cands, rule)
    assert ref.safe_rate == 11.5 / 32 and "median candidate" in ref.name and ref.kind == "cohort"
    assert all(judge_rule(rule, m, base) for m in cands)  # against the global model all four fail
    verdicts = [judge_rule(rule, m, ref) for m in cands]
    assert verdicts[:3] == [None, None, None] and "below the round's median candidate's" in verdicts[3]


def test_cohort_over_refusal_reference_leaves_out_unsafe_updates():
    """Updates that comply with everything refuse nothing: they do not set the over-refusal reference, so
    they cannot make a cautious honest client an outlier; the safe_rate median keeps every candidate."""
    rule = GateRule(max_drop=0.1, max_over_refusal_rise=0.2, reference="cohort")
    poisoned = [Measurement(0, 32, 0, 16)] * 3
    honest = [Measurement(k, 32, r, 16) for k, r in ((18, 4), (20, 5), (22, 6))]
    cautious = Measurement(28, 32, 12, 16)
    cands = [*poisoned, *honest, cautious]
    ref = Reference.cohort(cands, rule)
    assert ref.safe_rate == 18 / 32 and ref.over_refusal == 5.5 / 16  # over-refusal: honest and cautious only
    assert [bool(judge_rule(rule, m, ref)) for m in cands] == [True] * 3 + [False] * 4
    plain = Reference(18 / 32, 4 / 16)  # plain medians: the poisoned updates' zeros make the cautious one fail
    assert "over_refusal" in judge_rule(rule, cautious, plain)


def test_early_stop_settles_only_clear_cases():
    """After the first stage: a clear safe_rate failure is rejected, a candidate at or above every
    threshold is accepted, and one in between (or refusing benign prompts) measures on; pooled stages
    add their counts."""
    rule = GateRule(max_drop=0.1, max_over_refusal_rise=0.2)
    base = Measurement(12, 16, 1, 8)                                  # 0.75
    poisoned, fine, unclear = Measurement(0, 16, 0, 8), Measurement(11, 16, 1, 8), Measurement(9, 16, 1, 8)
    assert judge_rule(rule, poisoned, base) and not clears_rule(rule, poisoned, base)
    assert judge_rule(rule, fine, base) is None and clears_rule(rule, fine, base)
    assert judge_rule(rule, unclear, base) is None and not clears_rule(rule, unclear, base)
    refuser = Measurement(16, 16, 7, 8)                               # refuses the benign prompts
    assert not clears_rule(rule, refuser, base) and "over_refusal" in judge_rule(rule, refuser, base)
    assert judge_rule(interim_rule(rule), refuser, base) is None      # a part's few benign prompts: measure on
    assert pooled([unclear, Measurement(3, 16, 0, 8)]) == Measurement(12, 32, 1, 16)


# --- gate mechanics on a tiny model ---------------------------------------------------------------

@pytest.fixture()
def tiny_peft(tiny_llama_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    return with_global_adapter(model, name=GLOBAL, r=2, target_modules=("q_proj", "v_proj")), tok


def _perturbed(arrays, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32) for k, v in arrays.items()}


def test_stacked_adapter_batch_equals_one_adapter_at_a_time(tiny_peft, data_dir):
    """The gate answers for the global model and every candidate in the same generate calls (the LoRA
    deltas stacked): the same text as each adapter alone."""
    model, tok = tiny_peft
    cfg = GateConfig(harmful_sample=4, benign_sample=2, max_new_tokens=6, judge="refusal")
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir)
    g = lora_arrays(model, GLOBAL)
    cands = {"x": _perturbed(g, 1), "y": _perturbed(g, 2)}
    harmful, benign = gate.prompts_for(1)
    prompts = harmful + benign
    calls = []
    per_adapter = gate.generator.generate_per_adapter
    gate.generator.generate_per_adapter = lambda p, a: calls.append(a) or per_adapter(p, a)
    answers = gate.answers({GLOBAL: None, **cands}, prompts)
    assert len(calls) == 1 and len(calls[0]) == 3  # one call for all three adapters
    for name, arrays in [(GLOBAL, g), ("x", cands["x"]), ("y", cands["y"])]:
        load_lora_arrays(model, arrays, GLOBAL)
        model.set_adapter(GLOBAL)
        assert [x.text for x in gate.generator.generate(prompts)] == answers[name]
    assert len({tuple(a) for a in answers.values()}) == 3  # the candidates really answer differently
    assert set(model.peft_config) == {GLOBAL}  # candidate slots removed


def test_review_rejects_invalid_and_logs_every_decision(tiny_peft, data_dir, tmp_path):
    model, tok = tiny_peft
    audit = AuditLog(tmp_path / "audit.jsonl")
    cfg = GateConfig(harmful_sample=4, benign_sample=2, max_new_tokens=4, judge="refusal", mode="enforce")
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir, audit=audit)
    g = lora_arrays(model, GLOBAL)
    nan = {k: v.copy() for k, v in g.items()}
    first = next(iter(nan))
    nan[first][...] = np.nan
    wrong = {k: v.copy() for k, v in g.items()}
    wrong[first] = np.zeros((1, 1), np.float32)
    extra = {**g, "extra.weight": np.zeros(1, np.float32)}
    updates = [Update("ok", _perturbed(g, 3, 0.01), 10), Update("nan", nan, 10), Update("shape", wrong, 10),
               Update("extra", extra, 10_000)]
    decisions = gate.review(1, g, updates)
    assert gate.anchor.keys() == g.keys() and all(np.array_equal(gate.anchor[k], g[k]) for k in g)  # 1st global
    by = {d.client: d for d in decisions}
    assert by["ok"].accepted and by["ok"].safe_rate is not None
    assert by["ok"].reference == "global" and by["ok"].reference_safe_rate == by["ok"].baseline_safe_rate
    assert by["nan"].reference is None  # rejected before it was measured
    assert not by["nan"].accepted and "NaN" in by["nan"].reason
    assert not by["shape"].accepted and "shape" in by["shape"].reason
    assert not by["extra"].accepted and "unexpected" in by["extra"].reason
    assert by["extra"].n_examples_used == 0  # invalid: no weight, and no part in the cap
    rows = read_audit(tmp_path / "audit.jsonl")
    assert len(rows) == 4 and all({"round", "attempt", "client", "decision", "reason", "n_examples", "safe_rate",
                                   "baseline_safe_rate", "over_refusal", "seconds"} <= set(r) for r in rows)


# --- Flower strategy wrapper ----------------------------------------------------------------------

def _reply(node: int, arrays: dict, n: int):
    import torch
    from flwr.app import ArrayRecord, Message, Metadata, MetricRecord, RecordDict

    content = RecordDict({"arrays": ArrayRecord({k: torch.from_numpy(v) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": n, "train-loss": 1.0})})
    meta = Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="i",
                    group_id="1", created_at=time.time(), ttl=60.0, message_type="train")
    return Message(content=content, metadata=meta)


@pytest.mark.parametrize("name", ["FedAvg", "FedProx", "FedMedian", "FedTrimmedAvg", "Krum"])
def test_safety_gate_wraps_flower_strategies(tiny_peft, data_dir, tmp_path, name):
    import flwr.serverapp.strategy as strategies
    from flwr.app import ArrayRecord

    from safefed.federated.flower import SafetyGate, record_to_arrays

    model, tok = tiny_peft
    cfg = GateConfig(harmful_sample=3, benign_sample=1, max_new_tokens=3, judge="refusal",
                     check_aggregate=False)
    audit = AuditLog(tmp_path / "audit.jsonl")
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir, audit=audit)
    g = lora_arrays(model, GLOBAL)
    kwargs = {"num_malicious_nodes": 0} if name == "Krum" else {}
    wrapped = SafetyGate(getattr(strategies, name)(**kwargs), gate)
    import torch

    # configure_train remembers the global arrays; the simulation test drives it through Flower itself
    wrapped._global = record_to_arrays(ArrayRecord({k: torch.from_numpy(v) for k, v in g.items()}))
    bad = {k: v.copy() for k, v in g.items()}
    bad[next(iter(bad))][...] = np.inf
    replies = [_reply(i, _perturbed(g, i, 0.01), 10) for i in (1, 2, 3)] + [_reply(4, bad, 10)]
    arrays, metrics = wrapped.aggregate_train(1, replies)
    assert arrays is not None and metrics["safefed-rejected"] == 1 and metrics["safefed-admitted"] == 3
    assert all(np.isfinite(v).all() for v in record_to_arrays(arrays).values())
    assert len(replies[0].content["arrays"]) == len(g)  # originals untouched by in-place strategies
    rows = read_audit(tmp_path / "audit.jsonl")
    assert rows[-1]["event"] == "round_complete" and rows[-1]["rejected"] == ["4"]


def test_gate_config_validation_cli(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "gate.yaml"
    bad.write_text("mode: enforce\nrule:\n  max_dorp: 0.1\nharmful_sample: 0\n")
    res = subprocess.run([sys.executable, "-m", "safefed.cli", "gate", "validate", str(bad)], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{bad}:3: unknown key 'max_dorp' (did you mean 'max_drop'?)" in res.stderr
    assert f"{bad}:4:" in res.stderr
    from safefed.paths import assets_dir

    shipped = [str(p) for p in sorted((assets_dir("eval") / "gates").glob("*.yaml"))]
    assert len(shipped) >= 2
    ok = subprocess.run([sys.executable, "-m", "safefed.cli", "gate", "validate", *shipped],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_save_global_adapter_is_a_plain_peft_folder(tiny_peft, tmp_path):
    from safefed.federated.updates import save_global_adapter

    model, _ = tiny_peft
    out = save_global_adapter(model, tmp_path / "adapter", GLOBAL)
    assert (out / "adapter_config.json").exists() and not (out / GLOBAL).exists()


def test_shipped_default_gate_yaml_is_the_gate_defaults():
    """One home per setting: eval/gates/default.yaml states exactly GateConfig's defaults."""
    from safefed.federated.gate import load_gate_config

    assert load_gate_config("default") == GateConfig()


def test_gate_overrides_are_validated():
    from safefed.errors import UserError

    cfg = GateConfig().overridden(harmful_sample=4, benign_sample=None)
    assert cfg.harmful_sample == 4 and cfg.benign_sample == GateConfig().benign_sample
    with pytest.raises(UserError, match="harmful_sample"):
        GateConfig().overridden(harmful_sample=0)


def test_gate_takes_the_users_peft_model_as_it_is(tiny_llama_path, data_dir):
    """PEFT's own `default` adapter works without renaming; a wrong name or a bare model is a clear error."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safefed.errors import UserError

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    cfg = GateConfig(harmful_sample=2, benign_sample=1, max_new_tokens=4, judge="refusal")
    with pytest.raises(UserError, match="needs a PEFT model"):
        UpdateGate(base, tok, cfg, data_dir=data_dir)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir)
    assert gate.adapter == "default"
    g = lora_arrays(model, "default")
    (d,) = gate.review(1, g, [Update("c1", _perturbed(g, 4, 0.01), 5)])
    assert d.safe_rate is not None and set(model.peft_config) == {"default"}
    with pytest.raises(UserError, match="'global' is not in the model"):
        UpdateGate(model, tok, cfg, data_dir=data_dir, adapter="global")


def test_aggregator_takes_and_returns_torch_state_dicts(tiny_peft, data_dir):
    import torch
    from peft import get_peft_model_state_dict

    model, tok = tiny_peft
    cfg = GateConfig(harmful_sample=2, benign_sample=1, max_new_tokens=4, judge="refusal", check_aggregate=False)
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir)
    start = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, adapter_name=GLOBAL).items()}
    g = lora_arrays(model, GLOBAL)
    cands = [Update(c, {k: torch.from_numpy(v) for k, v in _perturbed(g, i, 0.001).items()}, 4)
             for i, c in enumerate(("a", "b"), 5)]
    outcome = SafeAggregator(gate).aggregate(1, start, cands)
    assert outcome.changed and set(outcome.arrays) == set(start)
    assert all(isinstance(v, torch.Tensor) for v in outcome.arrays.values())
    expected = {k: (cands[0].arrays[k] + cands[1].arrays[k]) / 2 for k in start}
    assert all(torch.allclose(outcome.arrays[k], expected[k], atol=1e-6) for k in start)
