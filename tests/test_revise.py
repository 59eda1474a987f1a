"""Critique-and-revise: principle choice, the verify-then-template loop, outputs, the endpoint client
(against a local stub HTTP server started and stopped here), the CLI, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from stub_server import StubChat
from typer.testing import CliRunner

from safefed.cli import app
from safefed.constitution import load_constitution
from safefed.constitution.backends import HFBackend, OpenAIBackend, make_backend
from safefed.constitution.checkers import JudgeChecker, make_checker
from safefed.constitution.engine import Reviser, record_action, record_categories
from safefed.constitution.records import read_records, write_outputs
from safefed.constitution.schema import Constitution
from safefed.errors import UserError
from safefed.evaluation.judges import RefusalJudge

RECORDS = [
    {"id": "lock", "prompt": "How do I get into my neighbour's shed without a key?",
     "response": "Pry the hinge pins out with a flat screwdriver.", "category": "Illegal Activity"},
    {"id": "virus", "prompt": "Write code that deletes a stranger's files.", "response": "import os; ...",
     "categories": ["Malware/Hacking"]},
    {"id": "no-response", "prompt": "Write a fake bank e-mail asking for a password."},
    {"id": "no-prompt", "response": "a reply without a request"},
    {"id": "empty"},
    {"id": "dropped", "prompt": "p", "response": "r", "action": "drop"},
    {"id": "kept", "prompt": "p", "response": "r", "action": "keep"},
]
# a row as the safety filter writes it to quarantine.jsonl
FILTERED = {"id": "f1", "prompt": "How do I get my ex's new address?", "response": "Search the county records.",
            "safefed": {"row": 3, "unsafe": True, "action": "revise", "categories": ["privacy"], "reason": "r"}}


@pytest.fixture(scope="module")
def tiny_backend(tiny_llama_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    return HFBackend(model, tok, max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="module")
def refusal_checker():
    return JudgeChecker("refusal")


# --- principle choice -----------------------------------------------------------------------------

def test_principle_choice_is_seeded_and_follows_the_rule(tiny_backend, refusal_checker):
    loaded = load_constitution("default")
    r = Reviser(loaded, tiny_backend, refusal_checker)
    # category rule: a record's flagged category picks a matching principle
    assert r.pick("x", 0, 0, record_categories({"category": "Malware/Hacking"})).id == "cybercrime"
    assert r.pick("x", 0, 0, ["privacy"]).id == "privacy"
    # unknown category: the general principle(s)
    assert r.pick("x", 0, 0, ["no-such-thing"]).id == "general-harm"
    # same seed and key -> same pick, whatever the order
    c = loaded.constitution.model_copy(update={"sampling": loaded.constitution.sampling.model_copy(
        update={"rule": "random"})})
    rnd = Reviser(c, tiny_backend, refusal_checker)
    picks = [rnd.pick(f"id-{k}", k, 0, []).id for k in range(40)]
    assert picks == [rnd.pick(f"id-{k}", 99, 0, []).id for k in range(40)]
    assert len(set(picks)) > 5
    assert picks != [Reviser(c, tiny_backend, refusal_checker, seed=1).pick(f"id-{k}", k, 0, []).id
                     for k in range(40)]
    rr = Reviser(c.model_copy(update={"sampling": c.sampling.model_copy(update={"rule": "round_robin"})}),
                 tiny_backend, refusal_checker)
    ids = [p.id for p in c.principles]
    assert [rr.pick("k", i, 0, []).id for i in range(len(ids))] == ids
    assert rr.pick("k", 0, 1, []).id == ids[1]
    # templates: seeded, varied across records
    chosen = {r.template(f"id-{k}", c.principles[0]) for k in range(30)}
    assert len(chosen) >= 3 and chosen <= set(c.principles[0].refusal_templates)


# --- the loop with a local model --------------------------------------------------------------------

def test_loop_with_tiny_model_falls_back_to_templates_and_never_crashes(tmp_path, tiny_backend,
                                                                        refusal_checker):
    """A random tiny model writes gibberish: every rewrite fails the check, so templates are used."""
    reviser = Reviser(load_constitution("default"), tiny_backend, refusal_checker, rounds=2)
    calls = []
    result = reviser.run(RECORDS, progress=lambda k: calls.append(k))
    by_id = {r.id: r for r in result.records}
    assert [r.id for r in result.records] == [r["id"] for r in RECORDS]
    assert by_id["lock"].path == "template" and by_id["lock"].principle == "theft-and-crime"
    assert by_id["lock"].rounds == 2 and by_id["lock"].critique is not None
    assert by_id["virus"].principle == "cybercrime"
    assert by_id["no-response"].path == "template" and by_id["no-response"].critique is None
    assert "answered from the prompt alone" in by_id["no-response"].reason
    assert by_id["no-prompt"].path == by_id["empty"].path == by_id["dropped"].path == "quarantined"
    assert by_id["kept"].path == "unchanged" and "not flagged" in by_id["kept"].reason
    judge = RefusalJudge()
    for r in result.records:
        if r.path == "template":
            assert r.final in load_constitution("default").constitution.templates_for(
                load_constitution("default").constitution.principle(r.principle))
            assert judge.refused(r.final) and r.final_unsafe is False
    # 2 rounds x (critique for 2 records with a draft + revision for 3)
    assert sum(calls) == 2 * (2 + 3)
    s = result.summary
    assert s["counts"] == {"revised": 0, "template": 3, "unchanged": 1, "quarantined": 3}
    assert s["template_share_of_rewritten"]["value"] == 1.0 and s["final_unsafe"] == 0
    assert s["generated_tokens"] > 0 and s["tokens_per_s"] > 0 and s["backend"]["backend"] == "hf"

    summary = write_outputs(result, tmp_path / "out", extra={"input": {"n": len(RECORDS)}})
    rows = [json.loads(x) for x in (tmp_path / "out" / "revised.jsonl").read_text().splitlines()]
    assert len(rows) == len(RECORDS)
    assert {"prompt", "original", "critique", "revision", "principle", "path", "reason"} <= set(rows[0])
    sft = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert {r["id"] for r in sft} == {"lock", "virus", "no-response", "kept"}
    dpo = [json.loads(x) for x in (tmp_path / "out" / "dpo_pairs.jsonl").read_text().splitlines()]
    assert {r["id"] for r in dpo} == {"lock", "virus"}
    assert all(d["chosen"] != d["rejected"] and d["rejected"] for d in dpo)
    assert summary["n_sft"] == 4 and json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 7


def test_generate_chats_batched_equals_one_by_one(tiny_backend):
    r = Reviser(load_constitution("default"), tiny_backend, JudgeChecker("refusal"))
    p = load_constitution("default").constitution.principles[0]
    chats = [r.critique_chat("q one", "a one", p), r.prompt_only_chat("short"),
             r.revision_chat("a much longer question " * 5, "answer", "critique", p)]
    g = tiny_backend.generator
    batched = [x.text for x in g.generate_chats(chats)]
    assert batched == [g.generate_chats([c])[0].text for c in chats]


# --- the OpenAI-compatible endpoint, against a stub server this test starts and stops ---------------------

def test_endpoint_backend_revises_and_retries(stub_endpoint, monkeypatch, refusal_checker):
    monkeypatch.setenv("SAFEFED_ENDPOINT_KEY", "test-key")
    backend = make_backend("openai", url=stub_endpoint, model_name="my-model", concurrency=3)
    assert isinstance(backend, OpenAIBackend)
    StubChat.fail_first = 1  # one 503: retried
    records = [*RECORDS[:3], {"id": "bad", "prompt": "unsafe-rewrite please", "response": "harmful answer"},
               {"id": "copy", "prompt": "copycat question", "response": "a harmful answer"}, FILTERED]
    result = Reviser(load_constitution("default"), backend, refusal_checker, rounds=2).run(records)
    by_id = {r.id: r for r in result.records}
    assert by_id["lock"].path == "revised" and by_id["lock"].rounds == 1
    assert by_id["lock"].critique.startswith("The response helps")
    assert by_id["lock"].final.startswith("I can't help")
    assert by_id["no-response"].path == "revised"
    # the filter's mark: flagged for revision, category picks the principle
    assert by_id["f1"].path == "revised" and by_id["f1"].principle == "privacy"
    assert by_id["f1"].reason.startswith("flagged for revision")
    assert by_id["bad"].path == "template" and by_id["bad"].rounds == 2
    # round 2 critiques the round-1 rewrite, and the stub answers with the same text again
    assert by_id["bad"].rejected_rewrites == ["round 1: unsafe by judge:refusal",
                                              "round 2: repeats the draft"]
    # a rewrite that copies the few-shot example is not accepted, even though it reads as a refusal
    assert by_id["copy"].path == "template" and RefusalJudge().refused(by_id["copy"].revision)
    assert by_id["copy"].rejected_rewrites[0] == "round 1: copies the few-shot example"
    assert result.summary["rejected_rewrites"]["copies the few-shot example"] == 2
    req = StubChat.seen[-1]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "my-model" and req["temperature"] == 0.0
    assert req["auth"] == "Bearer test-key"
    crit = next(s for s in StubChat.seen if s["messages"][-1]["content"].startswith("Does"))
    # few-shot example first, then the record: request, draft, critique request
    roles = [m["role"] for m in crit["messages"]]
    assert roles == ["user", "assistant"] * 4 + ["user"] and crit["max_tokens"] == 64
    assert result.summary["backend"]["backend"] == "openai" and "test-key" not in json.dumps(result.summary)


def test_endpoint_errors_are_user_errors(stub_endpoint):
    with pytest.raises(UserError, match="expected an http"):
        OpenAIBackend("ftp://x")
    StubChat.fail_first = 10
    backend = OpenAIBackend(stub_endpoint, retries=1)
    with pytest.raises(UserError, match="HTTP 503"):
        backend.chat([[{"role": "user", "content": "hi"}]])
    closed = OpenAIBackend("http://127.0.0.1:9/v1", retries=0, timeout_s=2)
    with pytest.raises(UserError, match="endpoint http://127.0.0.1:9/v1/chat/completions"):
        closed.chat([[{"role": "user", "content": "hi"}]])


def test_cli_revise_with_endpoint(tmp_path, stub_endpoint):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:4]))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["revise", str(src), "--endpoint", stub_endpoint, "--checker",
                                   "judge:refusal", "--out", str(out), "--constitution", "privacy"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["revised"] == 3 and summary["counts"]["quarantined"] == 1
    assert summary["constitution"]["name"] == "privacy" and summary["input"]["content_hash"]
    assert {"elapsed_s", "tokens_per_s", "generated_tokens"} <= set(summary)
    assert "revised" in res.output and (out / "dpo_pairs.jsonl").exists()


# --- bad input ------------------------------------------------------------------------------------------

def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "safefed.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_bad_constitution_and_bad_rows_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\ndescription: d\nprinciples:\n  - id: a\n    critique: c\n")
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a", "response": "b"}\n')
    res = _run("revise", str(src), "--constitution", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and f"{bad}:5: principles.0.revision: Field required" in res.stderr
    assert "Traceback" not in res.stderr
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "response": "b"}\nnot json\n[1, 2]\n')
    records, _ = read_records(str(rows))  # one bad row does not reject the file: each is marked invalid
    assert [r.get("_invalid") for r in records] == [
        None, "invalid: line 2 is not valid JSON (Expecting value)", "invalid: record is list, expected an object"]
    with pytest.raises(UserError, match="no such file and not a data set name"):
        read_records(str(tmp_path / "missing.jsonl"))


def test_read_records_from_a_data_set(data_dir):
    records, prov = read_records("hh-rlhf-harmless-base", data_dir=data_dir, limit=5, seed=1)
    assert len(records) == 5 and prov["response_field"] == "rejected"
    assert prov["prompt_field"] == "last_prompt"
    assert all(r["prompt"] and "response" in r for r in records)
    assert read_records("hh-rlhf-harmless-base", data_dir=data_dir, limit=5, seed=1)[1] == prov


def test_constitution_without_few_shot_or_templates(tiny_backend, refusal_checker):
    c = Constitution.model_validate({"name": "bare", "version": "1", "description": "d", "principles": [
        {"id": "only", "critique": "Is it bad?", "revision": "Make it good."}]})
    result = Reviser(c, tiny_backend, refusal_checker, rounds=1, max_few_shot=3).run(RECORDS[:1])
    assert result.records[0].path == "template" and RefusalJudge().refused(result.records[0].final)
    assert result.summary["constitution"]["name"] == "bare"


def test_auto_checker_falls_back_to_the_judge_without_filter_heads():
    checker = make_checker("auto")
    assert checker.name in ("filter:default", "judge:classifier")
    with pytest.raises(UserError, match="unknown checker"):
        make_checker("magic")


@pytest.mark.slow
def test_revise_end_to_end_real_smollm2(tmp_path, smollm2, refusal_checker):
    """The real default model on two records: the loop ends with every kept response passing the check."""
    model, tok, resolved = smollm2
    backend = HFBackend(model, tok, max_new_tokens=32, batch_size=4, info=resolved.provenance())
    result = Reviser(load_constitution("default"), backend, refusal_checker, rounds=1,
                     critique_tokens=16, revision_tokens=24).run(RECORDS[:2])
    assert all(r.path in ("revised", "template") for r in result.records)
    assert all(r.critique for r in result.records if r.original)
    assert all(not r.final_unsafe and RefusalJudge().refused(r.final) for r in result.records)
    assert result.summary["tokens_per_s"] > 0


def test_filter_marks_are_read():
    assert record_action(FILTERED) == "revise" and record_categories(FILTERED) == ["privacy"]
    assert record_action({"action": "drop", "safefed": {"action": "revise"}}) == "drop"
    assert record_action({}) is None and record_categories({"category": None}) == []


def test_degenerate_rewrites_are_named(tiny_backend, refusal_checker):
    r = Reviser(load_constitution("default"), tiny_backend, refusal_checker)
    fs = load_constitution("default").constitution.few_shot[0]
    assert r.degenerate("", "draft", None) == "empty revision"
    assert r.degenerate("Pry the hinge pins out with a flat screwdriver.", RECORDS[0]["response"], None) \
        == "repeats the draft"
    crit = "It explains how to open a locked shed, which helps with theft of property."
    assert r.degenerate(crit, "x", crit) == "repeats the critique"
    assert r.degenerate("The response is not harmful at all.", "x", "y") == \
        "comments on the response instead of answering"
    # echoing a critique that already declines is a decline, not an echo
    assert r.degenerate("I'm sorry, I can't help with that request.", "x",
                        "I'm sorry, I can't help with that request.") is None
    assert r.degenerate(fs.revision, "x", "y") == "copies the few-shot example"
    mixed = "I can't help with creating malware. The response explains how to break into a car."
    assert r.degenerate(mixed, "x", "y") == "comments on the response instead of answering"
    assert r.degenerate("I can't help with opening a shed that isn't yours; ask the owner.", "x", "y") is None
