"""A careless user controls files and paths: outputs pointed at inputs, files where folders go, rows in
every broken shape, JSON arrays. Nothing is lost, nothing crashes, the error names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_main
from hostile import not_a_regular_file

from safefed.errors import UserError
from safefed.recordio import FieldNames, open_source, rows

PAIRS = [{"prompt": f"Name a colour, please ({i}).", "response": "Blue."} for i in range(30)]


def _jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _lexicon(tmp_path: Path) -> Path:
    policy = tmp_path / "lex.yaml"
    policy.write_text("name: lex\nscorers:\n  - type: lexicon\n    options:\n      categories:\n"
                      "        weapons: {words: [sarin]}\nactions: {default: drop}\n")
    return policy


# 3. the filter and its own input --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kept.jsonl", "quarantine.jsonl", "sub/data.jsonl"])
def test_filter_never_shrinks_its_own_input(tmp_path, monkeypatch, capsys, name):
    out = tmp_path / "out"
    src = _jsonl(out / name, PAIRS)
    before = src.read_bytes()
    code, _, err = run_main(monkeypatch, capsys, "filter", str(src), "--policy", str(_lexicon(tmp_path)),
                            "--out", str(out))
    assert code == 2 and "inside the output folder" in err and "Traceback" not in err
    assert src.read_bytes() == before


def test_a_second_run_over_the_first_runs_output_is_refused_not_destructive(tmp_path, monkeypatch, capsys):
    src = _jsonl(tmp_path / "train.jsonl", PAIRS)
    out = tmp_path / "out"
    policy = str(_lexicon(tmp_path))
    assert run_main(monkeypatch, capsys, "filter", str(src), "--policy", policy, "--out", str(out))[0] == 0
    kept = (out / "kept.jsonl").read_bytes()
    assert len(kept.splitlines()) == 30
    code, _, _ = run_main(monkeypatch, capsys, "filter", str(out / "kept.jsonl"), "--policy", policy,
                          "--out", str(out))
    assert code == 2 and (out / "kept.jsonl").read_bytes() == kept


def test_a_failed_run_leaves_earlier_outputs_as_they_were(tmp_path):
    from safefed.safeio import output_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.jsonl").write_text("earlier\n")
    with pytest.raises(RuntimeError), output_dir(out) as tmp:
        (tmp / "kept.jsonl").write_text("half a new fi")
        raise RuntimeError("killed mid-write")
    assert (out / "kept.jsonl").read_text() == "earlier\n" and sorted(p.name for p in out.iterdir()) == ["kept.jsonl"]


# 7. --out that cannot be an output folder -------------------------------------------------------------------

def _eval_args(out: Path, tiny: Path, data_dir: Path) -> list[str]:
    return ["eval", "advbench", "--model", str(tiny), "--limit", "1", "--out", str(out), "--data-dir", str(data_dir)]


@pytest.mark.parametrize("command", ["filter", "revise", "eval", "demo", "align"])
def test_out_that_is_a_file_exits_2_before_any_work(tmp_path, monkeypatch, capsys, tiny_llama_path, data_dir,
                                                    command):
    src = _jsonl(tmp_path / "in.jsonl", PAIRS[:2])
    out = tmp_path / "results"
    out.write_text("my notes\n")
    args = {"filter": ["filter", str(src), "--policy", str(_lexicon(tmp_path)), "--out", str(out)],
            "revise": ["revise", str(src), "--model", "no-such-model-would-be-loaded-later", "--out", str(out)],
            "eval": _eval_args(out, tiny_llama_path, data_dir),
            "demo": ["demo", "--preset", "smoke", "--out", str(out)],
            "align": ["align", "--out", str(out)]}[command]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and f"{out}: exists and is not a folder" in err and "Traceback" not in err
    assert out.read_text() == "my notes\n"


def test_out_inside_a_file_exits_2(tmp_path, monkeypatch, capsys):
    src = _jsonl(tmp_path / "in.jsonl", PAIRS[:2])
    (tmp_path / "notes").write_text("x")
    code, _, err = run_main(monkeypatch, capsys, "filter", str(src), "--policy", str(_lexicon(tmp_path)),
                            "--out", str(tmp_path / "notes" / "out"))
    assert code == 2 and "cannot write there" in err and "Traceback" not in err


# revise: rows in every broken shape ------------------------------------------------------------------------

def test_revise_quarantines_bad_rows_and_keeps_the_rest(tmp_path, monkeypatch, capsys, tiny_llama_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"prompt": "Name a colour.", "response": "Blue."}).encode(),
             b'{"prompt": "lone surrogate \\ud800 here", "response": "ok"}',
             b'{"prompt": "bad bytes \xff\xfe", "response": "ok"}',
             json.dumps({"prompt": ["a"], "response": "ok"}).encode(),
             json.dumps({"prompt": "fine", "response": {"text": "no"}}).encode(),
             b"[1, 2]",
             json.dumps({"prompt": "Say hello.", "response": "Hello."}).encode()]
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    code, stdout, err = run_main(monkeypatch, capsys, "revise", str(src), "--model", str(tiny_llama_path),
                                 "--checker", "judge:refusal", "--rounds", "1", "--critique-tokens", "2",
                                 "--revision-tokens", "2", "--out", str(out))
    assert code == 0, err
    revised = [json.loads(x) for x in (out / "revised.jsonl").read_text().splitlines()]
    assert len(revised) == len(lines)  # every input row accounted for
    quarantined = [r for r in revised if r["path"] == "quarantined"]
    assert len(quarantined) == 5
    reasons = " | ".join(r["reason"] for r in quarantined)
    assert "line 3" in reasons and "UTF-8" in reasons  # the line the bad bytes are on
    sft = (out / "sft.jsonl").read_text()
    assert "['a']" not in sft and "{'text'" not in sft and "\\ud800" not in sft


# JSON arrays, pretty-printed ----------------------------------------------------------------------------------

def test_a_pretty_printed_json_array_is_two_records_for_filter_and_revise(tmp_path, monkeypatch, capsys):
    from safefed.constitution.records import read_records

    src = tmp_path / "pairs.json"
    src.write_text(json.dumps(PAIRS[:2], indent=2))
    out = tmp_path / "out"
    code, _, err = run_main(monkeypatch, capsys, "filter", str(src), "--policy", str(_lexicon(tmp_path)),
                            "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["input"] == 2 and summary["kept"] == 2, err
    records, _ = read_records(str(src))
    assert [r["prompt"] for r in records] == [p["prompt"] for p in PAIRS[:2]]


def test_a_json_file_that_is_neither_array_nor_lines(tmp_path):
    src = tmp_path / "one.json"
    src.write_text('{"prompt": "a",\n "response": "b"}\n')  # one object over two lines: two invalid rows
    got = list(rows(open_source(src), FieldNames(["prompt"], ["response"]), 1000))
    assert len(got) == 2 and all(r.problem for r in got)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "folder"])
def test_data_inputs_that_are_not_regular_files(tmp_path, kind):
    path = not_a_regular_file(tmp_path, kind, "in.jsonl")
    with pytest.raises(UserError):
        list(rows(open_source(path), FieldNames(["prompt"], ["response"]), 1000))


@pytest.mark.parametrize("args, expect", [
    (["constitution", "import", "{src}", "--out", "{src}"], "is also the input"),
    (["constitution", "import", "{src}", "--out", "{dir}"], "a folder; give --out a file name"),
    (["filter", "train", "{src}", "--out", "{src}"], "is also the input"),
    (["judge", "train", "--out", "{dir}"], "a folder; give --out a file name"),
])
def test_out_files_that_would_replace_an_input_or_are_folders(tmp_path, monkeypatch, capsys, args, expect):
    src = tmp_path / "principles.json"
    src.write_text('[{"name": "a", "critique_request": "c", "revision_request": "r"}]')
    before = src.read_bytes()
    (tmp_path / "folder").mkdir()
    args = [a.format(src=src, dir=tmp_path / "folder") for a in args]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and expect in err and "Traceback" not in err
    assert src.read_bytes() == before
