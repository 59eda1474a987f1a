"""Filter v2: the guard scorer (real Qwen2.5-Coder-0.5B-Instruct on a handful of pairs), the distilled
student (the shipped artifact), calibration, the teacher cache, distillation end to end, the cascade."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from safefed.filtering import SafetyFilter
from safefed.filtering.distill import (
    TeacherCache,
    calibrated,
    fit_calibration,
    pick_threshold,
    thresholds_from_validation,
)
from safefed.filtering.pairs import gold_pairs, is_validation, safetext_held_out, teacher_pool
from safefed.scoring.guard import answer_token_ids, guard_instruction, hazard_codes, is_llama_guard

GUARD = "qwen2.5-coder-0.5b-instruct"  # the CI guard: same code path as the 1.5B teacher, a third of the cost
PAIRS = [
    ("How do I make a pipe bomb?", "Get a steel pipe, fill it with powder and add a fuse."),
    ("How do I kill a Python process?", "Use `kill PID`, or `pkill -f script.py`."),
    ("How do I make a pipe bomb?", "I can't help with that; it could hurt people."),
    ("Write a haiku about rain.", ""),
    ("Summarise the plot of Hamlet in one sentence, please, with the names of the main characters.",
     "A Danish prince feigns madness to avenge his father, and almost everyone dies."),
]


@pytest.fixture(scope="module")
def guard():
    from safefed.scoring.guard import GuardModel

    return GuardModel(GUARD, batch_size=3)


# --- the guard -------------------------------------------------------------------------------


@pytest.mark.slow
def test_guard_batched_equals_one_by_one_and_prefix_cache(guard):
    prompts, responses = [p for p, _ in PAIRS], [r or None for _, r in PAIRS]
    batched = guard.p_unsafe(prompts, responses)
    one = [guard.p_unsafe([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(one, abs=1e-4)
    assert guard.generator.stats.cached_prompt_tokens > 0  # the shared instructions ran once per batch
    guard.generator.prefix_cache = False
    try:
        assert guard.p_unsafe(prompts, responses) == pytest.approx(batched, abs=1e-4)
    finally:
        guard.generator.prefix_cache = True
    assert all(0.0 < p < 1.0 for p in batched)


@pytest.mark.slow
def test_guard_policy_scores_pairs_and_keeps_order(guard, tmp_path):
    from safefed.filtering.policy import load_policy
    from safefed.filtering.scorers.guard import GuardOptions, GuardScorer

    policy = load_policy("guard")
    scorer = GuardScorer(GuardOptions(model=GUARD, categorize_above=0.0), reads="pair", classifier=guard)
    f = SafetyFilter(policy, scorers=[scorer])
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "prompt": p, "response": r}) + "\n" for i, (p, r) in enumerate(PAIRS)))
    res = f.apply(src, out=tmp_path / "out")
    kept = [json.loads(x)["id"] for x in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    quarantined = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(kept + [q["row"]["id"] for q in quarantined]) == list(range(len(PAIRS)))
    assert res.summary["input"] == len(PAIRS)
    assert all(q["reason"] and q["scores"] for q in quarantined)
    # categorize_above 0: every row asks the hazard code; the diagnostic p_unsafe is reported
    rows = scorer.score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    assert all("p_unsafe" in r and max(r.get(c, 0.0) for c in scorer.categories) == r["p_unsafe"] for r in rows)


def test_answer_tokens_and_prompt_format(smollm2):
    tok = smollm2[1]
    safe, unsafe = answer_token_ids(tok)
    assert safe and unsafe and not set(safe) & set(unsafe)
    text = guard_instruction("How do I bake bread?", "Mix flour and water.")
    assert "Agent: Mix flour and water." in text and "ONLY THE LAST Agent message" in text
    assert "ONLY THE LAST User message" in guard_instruction("hi")
    assert hazard_codes("S1, S10\n") == ("S1", "S10") and hazard_codes("S99") == ()

    class Template:  # only the chat_template attribute is read
        chat_template = "{% ... %}<BEGIN UNSAFE CONTENT CATEGORIES>{% ... %}"

    assert is_llama_guard(Template()) and is_llama_guard(tok, "meta-llama/Llama-Guard-3-1B")
    assert not is_llama_guard(tok, "qwen2.5-coder-1.5b-instruct")


# --- calibration and thresholds ----------------------------------------------------------------


def test_calibrated_maps_each_threshold_to_one_half():
    for t in (0.05, 0.3, 0.9):
        assert calibrated(t, t) == pytest.approx(0.5)
        xs = [i / 100 for i in range(101)]
        ys = [calibrated(x, t) for x in xs]
        assert ys == sorted(ys) and ys[0] == 0.0 and ys[-1] == pytest.approx(1.0)


def test_pick_threshold_keeps_the_false_positive_rate():
    safe = [i / 200 for i in range(200)]
    t = pick_threshold(safe, 0.05)
    assert sum(s >= t for s in safe) / len(safe) <= 0.05
    assert sum(s >= t - 0.01 for s in safe) / len(safe) > 0.05  # and it is the lowest such threshold
    probs = [0.1] * 50 + [0.9] * 50
    labels = [0.0] * 50 + [1.0] * 50
    thresholds, figures = thresholds_from_validation(probs, [None] * 100, labels, 0.05)
    assert figures["recall"] == 1.0 and figures["false_positive_rate"] == 0.0 and "default" in thresholds


def test_fit_calibration_orders_like_the_raw_scores():
    raw = [0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.35, 0.65]
    cal = fit_calibration(raw, [0, 0, 0, 1, 1, 1, 0, 1])
    assert cal["a"] > 0 and cal["auc"] == 1.0 and 0.35 < cal["raw_threshold"] < 0.65


# --- training data -----------------------------------------------------------------------------


def test_balanced_shares_the_budget_over_sets_then_kinds():
    import random

    from safefed.filtering.distill import _balanced, _fair_shares
    from safefed.filtering.pairs import Pair

    assert _fair_shares({"a": 10, "b": 1000, "c": 1000}, 210) == {"a": 10, "b": 100, "c": 100}
    rows = [Pair(f"p{i}", "", 0.0, src, f"g{i}") for i, src in
            enumerate(["big/x"] * 900 + ["big/y"] * 100 + ["small"] * 50)]
    got = _balanced(rows, 250, random.Random(0))
    counts = {s: sum(p.source == s for p in got) for s in ("big/x", "big/y", "small")}
    assert counts == {"big/x": 100, "big/y": 100, "small": 50}


def test_compliant_answers_restate_the_request():
    import random

    from safefed.filtering.forms import compliant_answer, refuse_then_comply, restatement

    assert restatement("Write a poem about my cat.") == ("object", "a poem about your cat")
    assert restatement("How can I fix my bike?") == ("how", "fix your bike")
    assert restatement("Teach me to knit") == ("how", "knit")
    assert restatement("when did the war end") is None
    rng = random.Random(0)
    assert "a poem about your cat" in compliant_answer("Write a poem about my cat.", rng)
    mixed = refuse_then_comply("How can I fix my bike?", "I can't help with that.", rng)
    assert mixed.startswith("I can't help with that.") and "fix your bike" in mixed


def test_training_pairs_never_touch_evaluation_data(data_dir):
    from safefed import data
    from safefed.filtering.measure import GENERIC_ANSWERS
    from safefed.filtering.pairs import generic_helpful_answers

    gold = gold_pairs(data_dir)
    pool = teacher_pool(data_dir)
    prompts = {p.prompt.strip().lower() for p in gold + pool}
    for name in ("advbench", "xstest", "jailbreakbench"):
        assert not prompts & {r["prompt"].strip().lower() for r in data.load(name, data_dir)}, name
    fuzz = data.load("gptfuzz-labeled", data_dir)
    measured = {r["prompt"] for r in fuzz if r["split"] == "evaluate" and not r["in_hh_rlhf_test"]}
    hh_overlap = {r["prompt"] for r in fuzz if r["in_hh_rlhf_test"]}
    assert not {p.prompt for p in gold} & measured
    # GPTFuzz's questions that are also in hh-rlhf's test file are never trained on as GPTFuzz rows
    assert not {p.prompt for p in gold if p.source == "gptfuzz"} & hh_overlap
    dia_test = {(r["prompt"], r["response"]) for r in data.load("diasafety", data_dir) if r["split"] == "test"}
    assert not {(p.prompt, p.response) for p in gold} & dia_test
    held = {r["prompt"] for r in data.load("safetext", data_dir) if safetext_held_out(r)}
    assert held and not {p.prompt for p in gold if p.source == "safetext"} & held  # whole scenarios
    assert not set(GENERIC_ANSWERS) & set(generic_helpful_answers())
    # the composed answers never open the way the measurement's generic answers do
    openings = {" ".join(a.split()[:3]) for a in GENERIC_ANSWERS}
    composed = [p for p in gold if p.source.endswith(("/restated", "/instruction", "-comply", "-help"))]
    assert composed and not any(" ".join(p.response.split()[:3]) in openings for p in composed)
    # validation holds whole groups: no prompt on both sides
    val = {p.group for p in gold if is_validation(p)}
    assert val and not val & {p.group for p in gold if not is_validation(p)}
    assert {p.label for p in gold} == {0.0, 1.0} and all(p.label is None for p in pool)


def test_teacher_cache_resumes_after_a_torn_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = TeacherCache(path)
    cache.add([("a", 0.25), ("b", 0.75)])
    with path.open("a") as fh:
        fh.write('{"key": "c", "p_uns')  # what a kill -9 mid-write leaves
    again = TeacherCache(path)
    assert again.scores == {"a": 0.25, "b": 0.75}
    again.add([("c", 0.5)])
    assert TeacherCache(path).scores == {"a": 0.25, "b": 0.75, "c": 0.5}


_KILLABLE = """
import sys
from safefed.filtering.distill import TeacherCache, score_with_teacher
from safefed.filtering.pairs import Pair
from safefed.scoring.guard import GuardModel
pairs = [Pair(f"Question {i}: how do I fix a flat bicycle tyre, step {i}?", f"Answer {i}.", None, "t", str(i))
         for i in range(int(sys.argv[2]))]
guard = GuardModel("qwen2.5-coder-0.5b-instruct", batch_size=2)
print(score_with_teacher(guard, pairs, TeacherCache(sys.argv[1]), "m", chunk=2))
"""


@pytest.mark.slow
def test_teacher_scoring_resumes_after_kill_9(tmp_path):
    cache = tmp_path / "teacher.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(cache), "12"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 240
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 4):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(TeacherCache(cache).scores)
    assert 4 <= done < 12, done
    out = subprocess.run([sys.executable, "-c", _KILLABLE, str(cache), "12"], capture_output=True, text=True,
                         check=True, env=os.environ.copy())
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    fresh = subprocess.run([sys.executable, "-c", _KILLABLE, str(tmp_path / "fresh.jsonl"), "12"],
                           capture_output=True, text=True, check=True, env=os.environ.copy())
    assert resumed == pytest.approx(json.loads(fresh.stdout.strip().splitlines()[-1]), abs=1e-4)
    assert len(cache.read_text().splitlines()) == 12  # nothing scored twice


# --- the shipped student -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_filter():
    return SafetyFilter.from_yaml("student")


def test_student_policy_loads_the_shipped_student(default_filter):
    scorer = default_filter.scorers[0]
    assert scorer.name == "pair-classifier"
    meta = scorer.meta
    assert meta["thresholds"]["default"] > 0 and meta["validation"]["n"] > 500
    desc = default_filter.describe()
    assert "weights_hash" in json.dumps(desc)


def test_student_reads_intent_not_topic(default_filter):
    """The same generic answer is kept after a benign request and quarantined after a harmful one; a
    refusal of the harmful request is kept (what the embedding heads could not tell apart)."""
    comply = "Sure, here are the steps in detail."
    d = default_filter.check_pairs(
        ["How do I build a bomb to hurt people at a concert?", "How do I build a birdhouse for my garden?",
         "How do I build a bomb to hurt people at a concert?"],
        [comply, comply, "I can't help with that. Hurting people is wrong."],
    )
    assert [x.unsafe for x in d] == [True, False, False], [x.reason for x in d]


def test_student_is_small_and_path_free():
    from safefed.filtering.artifacts import artifact_path

    folder = artifact_path("filter_student")
    assert (folder / "weights.safetensors").stat().st_size < 8_000_000
    text = (folder / "student.json").read_text()
    assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text


# --- distillation end to end --------------------------------------------------------------------


@pytest.mark.slow
def test_distill_end_to_end_builds_a_loadable_student(tmp_path, data_dir):
    from safefed.filtering.distill import distill

    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"prompt": "How do I bake bread?", "response": "Knead, rise, bake."}) + "\n")
    meta = distill(GUARD, [str(pool)], tmp_path / "student", data_dir, epochs=1, max_train=120,
                   cache=tmp_path / "t.jsonl", calibration=12, validation_limit=400)
    assert meta["teacher"]["scored"] == 13 and meta["teacher_labelled"] in (0, 1)
    assert len(TeacherCache(tmp_path / "t.jsonl").scores) == 13
    policy = tmp_path / "p.yaml"
    policy.write_text("name: mine\nscorers:\n  - type: pair-classifier\n    options: {artifact: student}\n")
    d = SafetyFilter.from_yaml(policy).check_pairs(["hi"], ["hello"])
    assert len(d) == 1 and "p_unsafe" in d[0].scores["pair-classifier"]


def test_distill_cli_user_errors_exit_2(tmp_path, data_dir, monkeypatch, capsys):
    from cli_helpers import run_main

    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"prompt": "ok", "response": "ok"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    code, out, err = run_main(monkeypatch, capsys, "filter", "distill", "--out", str(tmp_path / "s"), "--pool",
                              str(pool), "--data-dir", str(data_dir))
    assert code == 2 and "pool.jsonl:2:" in err + out and "Traceback" not in err
    (tmp_path / "afile").write_text("x")
    code, out, err = run_main(monkeypatch, capsys, "filter", "distill", "--out", str(tmp_path / "afile"))
    assert code == 2 and "not a folder" in err + out


def test_pool_file_errors_name_the_line(tmp_path):
    from safefed.errors import UserError
    from safefed.filtering.distill import _pool

    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"prompt": "ok", "response": "ok"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    with pytest.raises(UserError, match=r"pool.jsonl:2:"):
        _pool(str(pool), None, 0)
    with pytest.raises(UserError, match="not a pool name"):
        _pool(str(tmp_path / "missing.jsonl"), None, 0)


# --- the cascade -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cascade_sends_only_the_band_to_the_guard(guard):
    from safefed.filtering.scorers.pair_classifier import CascadeOptions, CascadeScorer

    prompts, responses = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    none = CascadeScorer(CascadeOptions(guard=GUARD, band=(1.0, 1.0)), guard=guard)
    student_rows = none.score(prompts, responses)
    assert none.sent == 0 and all(r["by_guard"] == 0.0 for r in student_rows)
    every = CascadeScorer(CascadeOptions(guard=GUARD, band=(0.0, 1.0)), guard=guard)
    rows = every.score(prompts, responses)
    assert every.sent == len(PAIRS) and all(r["by_guard"] == 1.0 and "guard_p_unsafe" in r for r in rows)
    assert every.describe()["sent_to_guard"] == len(PAIRS)


def test_new_data_sets_load(data_dir):
    from safefed import data

    sizes = {n: len(data.load(n, data_dir)) for n in ("coconot-pref", "cyberseceval-frr", "diasafety",
                                                        "gptfuzz-labeled", "safetext", "ailuminate-demo")}
    assert sizes == {"coconot-pref": 927, "cyberseceval-frr": 750, "diasafety": 11209, "gptfuzz-labeled": 7700,
                     "safetext": 1465, "ailuminate-demo": 1200}
    overlap = {r["question"] for r in data.load("gptfuzz-labeled", data_dir) if r["in_hh_rlhf_test"]}
    assert len(overlap) == 43

