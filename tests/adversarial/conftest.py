"""The adversarial suite's fixture: a cheap gate on a tiny random Llama."""

from __future__ import annotations

import pytest

from safefed.federated.audit import AuditLog
from safefed.federated.gate import GLOBAL, GateConfig, UpdateGate
from safefed.federated.updates import lora_arrays, with_global_adapter


@pytest.fixture()
def cheap_gate(tiny_llama_path, data_dir, tmp_path):
    """(gate, global arrays, audit path): 2 harmful + 1 benign prompt, 2 new tokens, the refusal judge,
    no aggregate check (so that only the per-update checks stand between a client and the average)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = with_global_adapter(model, name=GLOBAL, r=2, target_modules=("q_proj", "v_proj"))
    cfg = GateConfig(harmful_sample=2, benign_sample=1, max_new_tokens=2, judge="refusal", check_aggregate=False,
                     rule={"max_drop": None, "max_over_refusal_rise": None})
    audit = AuditLog(tmp_path / "audit.jsonl")
    gate = UpdateGate(model, tok, cfg, data_dir=data_dir, audit=audit)
    return gate, lora_arrays(model, GLOBAL), tmp_path / "audit.jsonl"
