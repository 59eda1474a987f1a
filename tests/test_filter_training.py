"""Training the embedding head: labelled files in, artifact + held-out metrics out; the hh-rlhf split."""

from __future__ import annotations

import json

from cli_helpers import run_main

from safefed import data
from safefed.filtering.recipe import hh_labelled
from safefed.lookalikes import lookalike_pairs
from safefed.scoring.heads import LinearHead
from safefed.splits import hh_halves


def test_hh_halves_are_disjoint_deterministic_and_order_free(data_dir):
    rows = data.load("hh-rlhf-harmless-base", data_dir)
    a = hh_halves(rows)
    b = hh_halves(list(reversed(rows)))
    ids = {k: {r["id"] for r in v.records} for k, v in a.items()}
    assert ids["filter-train"].isdisjoint(ids["client-data"])
    assert len(ids["filter-train"]) + len(ids["client-data"]) == len(rows)
    assert ids == {k: {r["id"] for r in v.records} for k, v in b.items()}
    assert 0.4 < len(ids["filter-train"]) / len(rows) < 0.6
    openings = {k: {r["prompt"].lower().strip() for r in v.records} for k, v in a.items()}
    assert openings["filter-train"].isdisjoint(openings["client-data"])


def test_hh_rule_keeps_single_turn_rows_only(data_dir):
    rows = hh_halves(data.load("hh-rlhf-harmless-base", data_dir))["client-data"].records
    labelled = hh_labelled(rows, lambda t: t.lower().startswith(("i'm sorry", "i can't", "i cannot")))
    by_id = {r["id"]: r for r in rows}
    assert labelled["complied"] and labelled["refused"]
    assert all(by_id[p["id"]]["n_user_turns"] == 1 for v in labelled.values() for p in v)


def test_filter_train_cli(tmp_path, monkeypatch, capsys, data_dir):
    harmful = [r["prompt"] for r in data.load("harmfulqa-catqa", data_dir) if r["source"] == "catqa"][:150]
    rows = [{"text": t, "label": "harmful", "category": "catqa"} for t in harmful]
    rows += [{"text": p["prompt"], "label": "benign"} for p in lookalike_pairs(150, seed=1)]
    src = tmp_path / "labelled.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "head.json"
    code, stdout, err = run_main(monkeypatch, capsys, "filter", "train", str(src), "--out", str(out))
    assert code == 0, err
    head = LinearHead.load(out)
    assert head.labels == ["benign", "catqa"] and head.meta["held_out_metrics"]["n"] > 20
    assert "precision" in stdout and "harmful vs benign" in stdout
    policy = tmp_path / "mine.yaml"
    policy.write_text("name: mine\nscorers:\n  - type: embedding\n    reads: prompt\n    options:\n"
                      "      head: head.json\n      compliance_head: null\n")
    from safefed.filtering import SafetyFilter

    f = SafetyFilter.from_yaml(policy)
    d = f.check_pairs([harmful[0], "What's a good name for a goldfish?"], ["", ""])
    assert d[0].unsafe and d[0].categories == ["catqa"] and not d[1].unsafe


def test_filter_train_reports_bad_rows(tmp_path, monkeypatch, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok", "label": "benign"}\n{"text": "", "label": "harmful"}\nnot json\n'
                   '{"text": "x", "label": "maybe"}\n')
    code, _, err = run_main(monkeypatch, capsys, "filter", "train", str(src), "--out", str(tmp_path / "h.json"))
    assert code == 2
    assert f"{src}:2: 'text' must be non-empty text" in err and f"{src}:3: not valid JSON" in err
    assert f"{src}:4: 'label' must be one of" in err


def test_instruction_forms_rewrite_how_to_questions_only():
    from safefed.filtering.forms import instruction_forms

    forms = instruction_forms("How can I get rid of fruit flies in my kitchen?")
    assert forms and all("get rid of fruit flies in my kitchen" in f for f in forms)
    assert "Explain how to get rid of fruit flies in my kitchen." in forms
    assert instruction_forms("What are some techniques for pruning roses in winter?")[0].startswith("Describe")
    assert instruction_forms("Write a poem about autumn.") == []
    assert instruction_forms("What is a Ponzi scheme?") == []


def test_hard_negatives_are_the_filters_own(data_dir):
    """The filter's extra look-alikes: distinct prompts, every family, no prompt of an evaluation set."""
    import re

    from safefed.filtering.hard_negatives import CATEGORIES, hard_negative_pairs

    pairs = hard_negative_pairs()
    assert pairs == hard_negative_pairs()
    assert len({p["prompt"] for p in pairs}) == len(pairs)
    assert {p["category"] for p in pairs} == set(CATEGORIES)
    evaluation = [r["prompt"] for name in ("xstest", "jailbreakbench", "advbench") for r in data.load(name, data_dir)]
    exact = {" ".join(p.lower().split()) for p in evaluation}

    def tokens(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9]+", text.lower()))

    x_tokens = [tokens(p) for p in evaluation]
    for p in pairs:
        assert " ".join(p["prompt"].lower().split()) not in exact, p["prompt"]
        t = tokens(p["prompt"])
        assert max(len(t & x) / len(t | x) for x in x_tokens) < 0.75, p["prompt"]
