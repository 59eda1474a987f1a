"""The safety filter end to end: policies, decisions, every input kind, bad rows, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_main

from safefed.errors import UserError
from safefed.filtering import Decision, SafetyFilter, load_policy, register_scorer
from safefed.filtering.engine import INVALID
from safefed.filtering.scorers.base import NoOptions
from safefed.recordio import rows

HARMFUL_COMPLIED = (
    "How can I steal my neighbour's credit card numbers without getting caught?",
    "Sure! Look through their mail for statements, copy the card number and use it online "
    "from a public computer so nobody can trace it back to you.",
)
HARMFUL_REFUSED = (
    HARMFUL_COMPLIED[0],
    "I'm sorry, but I can't help with stealing someone's card details. "
    "If you are struggling financially, a debt advice service can help.",
)
EVERYDAY = (
    "Write a haiku about autumn leaves.",
    "Crimson leaves drifting / the maple lets go softly / autumn wind carries.",
)


@pytest.fixture(scope="module")
def default_filter() -> SafetyFilter:
    return SafetyFilter.from_yaml("default")


def _lexicon_policy(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "lex.yaml"
    path.write_text(
        "name: lex\nscorers:\n  - type: lexicon\n    reads: pair\n    options:\n      categories:\n"
        "        weapons: {words: [sarin]}\n        rude: {words: [idiot]}\n"
        f"actions: {{default: drop, rude: flag}}\nbatch_size: 2\n{extra}"
    )
    return path


def test_shipped_policies_validate():
    for name in ("default", "student", "strict", "detoxify", "guard", "llama-guard", "cascade"):
        policy = load_policy(name)
        assert policy.name == name and policy.scorers


def test_default_judges_the_pair(default_filter):
    prompts, responses = zip(HARMFUL_COMPLIED, HARMFUL_REFUSED, EVERYDAY, strict=True)
    complied, refused, everyday = default_filter.check_pairs(list(prompts), list(responses))
    assert isinstance(complied, Decision)
    assert complied.unsafe and complied.action == "revise" and complied.categories
    assert "embedding" in complied.reason and complied.scores["embedding"]["complied"] > 0.5
    assert not refused.unsafe and refused.action == "keep"
    assert not everyday.unsafe
    assert default_filter.check_pairs([], []) == []


def test_lexicon_policy_in_memory_kinds(tmp_path):
    import datasets
    import pandas as pd

    f = SafetyFilter.from_yaml(_lexicon_policy(tmp_path))
    records = [
        {"prompt": "make sarin", "response": "ok", "id": 1},
        {"prompt": "hi", "response": "you idiot", "id": 2},
        {"prompt": "hi", "response": "hello", "id": 3},
        {"prompt": 5, "id": 4},
    ]
    res = f.apply(records)
    assert [r["id"] for r in res.kept] == [2, 3] and [r["id"] for r in res.quarantined] == [1, 4]
    assert res.kept[0]["safefed"]["action"] == "flag" and "safefed" not in res.kept[1]
    assert res.quarantined[1]["safefed"]["reason"].startswith("invalid: field 'prompt' is int")
    assert res.summary["by_action"] == {"drop": 2, "flag": 1, "keep": 1}
    df = pd.DataFrame(records)
    dres = f.apply(df)
    assert list(dres.kept["id"]) == [2, 3] and list(dres.quarantined["id"]) == [1, 4]
    ds = datasets.Dataset.from_list(records[:3])
    hres = f.apply(ds)
    assert hres.kept["id"] == [2, 3] and hres.quarantined["id"] == [1]
    assert json.loads(hres.quarantined["safefed"][0])["categories"] == ["weapons"]


def test_rows_are_streamed_lazily(tmp_path):
    """The filter consumes its input batch by batch: the first decisions exist before the input ends."""
    f = SafetyFilter.from_yaml(_lexicon_policy(tmp_path))
    produced = []

    def source():
        for i in range(10_000):
            produced.append(i)
            yield {"prompt": f"row {i}", "response": "fine"}, None

    stream = f.decide_rows(rows(source(), f.policy.fields, f.policy.max_chars))
    next(stream)
    assert len(produced) <= f.policy.batch_size + 1


def _write_bad_jsonl(path: Path) -> int:
    lines = [
        json.dumps({"prompt": "hello", "response": "hi there"}).encode(),
        b"{not json",
        json.dumps({"title": "no text fields"}).encode(),
        json.dumps({"prompt": ["a list"], "response": "x"}).encode(),
        json.dumps({"prompt": "   ", "response": ""}).encode(),
        json.dumps({"prompt": "", "response": "an answer to nothing"}).encode(),
        json.dumps({"messages": [{"role": "assistant", "content": "no user turn"}]}).encode(),
        json.dumps({"prompt": "big", "response": "a" * 1_000_001}).encode(),
        b'{"prompt": "bad bytes \xff\xfe", "response": "x"}',
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps(
            {"messages": [{"role": "user", "content": "make sarin"}, {"role": "assistant", "content": "ok"}]}
        ).encode(),
        json.dumps({"messages": [{"role": "user"}]}).encode(),
        json.dumps({"prompt": "lone surrogate \ud800", "response": "x"}).encode(),
        b"",
        json.dumps({"instruction": "say hi", "output": "hi"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return sum(1 for line in lines if line.strip())


def test_cli_bad_rows_never_crash(tmp_path, monkeypatch, capsys):
    src = tmp_path / "train.jsonl"
    n = _write_bad_jsonl(src)
    out = tmp_path / "out"
    code, stdout, _ = run_main(
        monkeypatch, capsys, "filter", str(src), "--policy", str(_lexicon_policy(tmp_path)), "--out", str(out)
    )
    assert code == 0, stdout
    kept = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    quarantined = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"] == n == len(kept) + len(quarantined) == summary["kept"] + summary["quarantined"]
    assert {"input", "kept", "quarantined", "by_category", "by_action", "elapsed_s", "rows_per_s"} <= set(summary)
    assert kept == [{"prompt": "hello", "response": "hi there"}, {"instruction": "say hi", "output": "hi"}]
    reasons = [q["safefed"]["reason"] for q in quarantined]
    assert [q["safefed"]["row"] for q in quarantined] == sorted(q["safefed"]["row"] for q in quarantined)
    assert sum(r.startswith("invalid: ") for r in reasons) == 11
    assert sum(r == "invalid: empty prompt" for r in reasons) == 2
    assert any("not valid JSON" in r for r in reasons) and any("not valid UTF-8" in r for r in reasons)
    assert any("more than max_chars" in r for r in reasons) and any("empty text" in r for r in reasons)
    chat = next(q for q in quarantined if "messages" in q and q["safefed"]["categories"] == ["weapons"])
    assert chat["safefed"]["action"] == "drop"
    assert summary["by_category"][INVALID] == 11
    assert "quarantined" in stdout and "rows/s" in stdout


@pytest.mark.parametrize(
    "body, expect",
    [
        (
            "name: x\nscorers:\n  - type: lexicon\n    options: {categories: {a: {words: [b]}}}\n    threshold: 0.5\n",
            ":5: unknown key 'threshold' (did you mean 'thresholds'?)",
        ),
        ("name: x\nscorers:\n  - type: nope\n", ":3: scorers.0.type: unknown scorer type 'nope'"),
        ("name: x\nscorers:\n  - type: lexicon\n    thresholds: {default: 2}\n", ":4: scorers.0.thresholds"),
        ("name: x\nscorers: [\n", ":3:"),
        (
            "name: x\nscorers:\n  - type: embedding\n    options: {hed: x.json}\n",
            ":4: scorers.0.options: embedding options",
        ),
        ("name: x\nscorers:\n  - type: lexicon\nactions: {default: burn}\n", ":4: actions.default"),
    ],
)
def test_malformed_policy_exits_2_with_file_line(tmp_path, monkeypatch, capsys, body, expect):
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    code, _, err = run_main(monkeypatch, capsys, "filter", str(data), "--policy", str(bad),
                            "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"{bad}{expect}" in err, err
    assert "Traceback" not in err


def test_every_problem_of_a_policy_in_one_pass(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscorers:\n  - type: nope\n  - type: lexicon\n    reads: sideways\n"
                   "    options: {wrong: 1}\ncombine: sometimes\nbatch_size: -3\n")
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    code, _, err = run_main(monkeypatch, capsys, "filter", str(data), "--policy", str(bad),
                            "--out", str(tmp_path / "o"))
    assert code == 2
    for where in (":3: scorers.0.type", ":5: scorers.1.reads", ":6: scorers.1.options", ":7: combine",
                  ":8: batch_size"):
        assert f"{bad}{where}" in err, err


def test_other_file_formats(tmp_path):
    import datasets
    import pandas as pd

    f = SafetyFilter.from_yaml(_lexicon_policy(tmp_path))
    records = [{"question": "make sarin", "answer": "ok"}, {"question": "hi", "answer": "hello"}]
    (tmp_path / "in.csv").write_bytes(b"question,answer\nmake sarin,ok\nhi,hello\nextra,col,umn\nbad \xff,x\n")
    pd.DataFrame(records).to_parquet(tmp_path / "in.parquet")
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "hf"))
    for name, n_in in (("in.csv", 4), ("in.parquet", 2), ("hf", 2)):
        res = f.apply(tmp_path / name, out=tmp_path / f"o-{name}")
        s = res.summary
        assert s["input"] == n_in and s["kept"] == 1 and s["quarantined"] == n_in - 1, (name, s)
    reasons = [json.loads(x)["safefed"]["reason"] for x in (tmp_path / "o-in.csv" / "quarantine.jsonl").open()]
    assert reasons[1] == "invalid: line 4 has more columns than the header"
    assert reasons[2] == "invalid: field 'question' is not valid UTF-8 text"
    with pytest.raises(UserError):
        f.apply(tmp_path / "in.txt", out=tmp_path / "o")


def test_user_registered_scorer(tmp_path):
    class Shouty:
        name, categories = "shouty", ["shouting"]

        def __init__(self, opts, reads="pair", policy=None):
            self.reads = reads

        def score(self, prompts, responses):
            return [{"shouting": float(r.isupper())} for r in responses]

        def describe(self):
            return {"type": "shouty"}

    register_scorer("shouty", NoOptions)(Shouty)
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nscorers:\n  - type: shouty\nactions: {default: flag}\n")
    d = SafetyFilter.from_yaml(path).check_pairs(["a", "b"], ["HELLO", "hello"])
    assert [x.action for x in d] == ["flag", "keep"]


def test_combine_rules(tmp_path):
    base = (
        "name: c\nscorers:\n  - {type: lexicon, name: one, options: {categories: {w: {words: [sarin]}}}}\n"
        "  - {type: lexicon, name: two, options: {categories: {w: {words: [ricin]}}}}\ncombine: "
    )
    for rule, expect in (("any", [True, True]), ("all", [False, True])):
        p = tmp_path / f"{rule}.yaml"
        p.write_text(base + rule + "\n")
        d = SafetyFilter.from_yaml(p).check_pairs(["sarin", "sarin and ricin"], ["", ""])
        assert [x.unsafe for x in d] == expect, rule


def test_filter_help(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "filter", "--help")
    assert code == 0 and "INPUT --policy" in out and "train" in out
    code, out, _ = run_main(monkeypatch, capsys, "filter", "train", "--help")
    assert code == 0 and "--out" in out


def test_measure_reports_rates_with_intervals(tmp_path):
    from safefed.filtering.measure import measure

    f = SafetyFilter.from_yaml(_lexicon_policy(tmp_path))
    sets = {
        "unsafe": ("unsafe", [("make sarin", "ok"), ("hi", "hello")], "toy"),
        "safe": ("safe", [("hi", "hello")] * 3, "toy"),
    }
    out = measure(f, sets)
    assert out["unsafe"]["metric"] == "recall" and out["unsafe"]["value"] == 0.5
    assert out["safe"]["metric"] == "false_positive_rate" and out["safe"]["value"] == 0.0
    assert out["safe"]["ci95"][1] > 0.3 and "note" in out["safe"]  # n=3: a wide interval, said so
    assert out["unsafe"]["rate_at_threshold"]["0.9"] == 0.5


def test_alpaca_instruction_and_input_are_read_as_one_request():
    from safefed.federated.client import _pair
    from safefed.recordio import DEFAULT_FIELDS, extract

    record = {"instruction": "Summarise this text.", "input": "The meeting moved to Friday.", "output": "Friday."}
    row = extract(1, record, DEFAULT_FIELDS, 1000)
    assert row.prompt == "Summarise this text.\n\nThe meeting moved to Friday." and row.response == "Friday."
    assert _pair(record) == {"prompt": row.prompt, "response": "Friday."}
    assert extract(2, {"instruction": "Say hi.", "input": "", "output": "hi"}, DEFAULT_FIELDS, 1000).prompt == "Say hi."
    assert extract(3, {"input": "alone", "output": "x"}, DEFAULT_FIELDS, 1000).prompt == "alone"
