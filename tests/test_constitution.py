"""Constitutions: schema, hardened loading (hostile YAML), shipped files, and the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safefed.cli import app
from safefed.constitution import Rule, load_constitution
from safefed.constitution.importers import import_constitution, to_yaml
from safefed.constitution.schema import MIN_TEMPLATES, category_slug
from safefed.errors import UserError
from safefed.evaluation.judges import RefusalJudge
from safefed.paths import shipped_names

runner = CliRunner()

GOOD = """\
name: mine
version: 1.0
description: A small test constitution.
sampling: {rule: round_robin, seed: 3}
principles:
  - id: p-one
    categories: [Malware/Hacking]
    critique: Is it harmful?
    revision: Make it harmless.
  - id: p-two
    critique: Is it rude?
    revision: Make it polite.
    refusal_templates: ["No, sorry.", "I can't do that."]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(UserError) as exc:
        load_constitution(path)
    return exc.value.problems


def test_shipped_constitutions_are_valid_and_rich():
    names = shipped_names("constitutions")
    assert {"default", "privacy", "professional-advice"} <= set(names)
    judge = RefusalJudge()
    for name in names:
        c = load_constitution(name).constitution
        assert c.name == name and c.warnings() == []
        for p in c.principles:
            assert len(p.refusal_templates) >= MIN_TEMPLATES, p.id
            assert len(set(p.refusal_templates)) == len(p.refusal_templates)
            assert p.categories, p.id
            # every template is recognised as a refusal by the AdvBench refusal judge
            assert all(judge.refused(t) for t in p.refusal_templates), p.id
    default = load_constitution("default").constitution
    assert 10 <= len(default.principles) <= 16
    covered = {c for p in default.principles for c in p.categories}
    # the harm categories of the data sets the step sees map onto principles
    for label in ("Malware/Hacking", "Privacy", "Physical harm", "Fraud/Deception", "Illegal Activity",
                  "Hate/Harass/Violence", "Economic harm", "Sexual/Adult content", "Disinformation"):
        assert category_slug(label) in covered, label
    # and so do the safety filter's categories, which pick principles under the `category` rule
    head = Path(__file__).resolve().parents[1] / "safefed" / "artifacts" / "filter_text_head.json"
    if head.exists():
        labels = json.loads(head.read_text())["labels"]
        assert {category_slug(x) for x in labels if x != "benign"} <= covered


def test_good_file_loads_with_defaults_and_coercions(tmp_path):
    loaded = load_constitution(write(tmp_path, GOOD))
    c = loaded.constitution
    assert c.version == "1.0" and c.sampling.rule is Rule.round_robin and c.sampling.seed == 3
    assert c.principles[0].categories == ["malware-hacking"]
    # topped up to MIN_TEMPLATES, own templates first, no repeats
    t = c.templates_for(c.principles[1])
    assert t[:2] == ["No, sorry.", "I can't do that."] and len(t) == MIN_TEMPLATES == len(set(t))
    assert loaded.provenance()["hash"] and loaded.provenance()["n_principles"] == 2
    assert any("fewer than" in w for w in c.warnings())


@pytest.mark.parametrize("edit, line, fragment", [
    (("    revision: Make it polite.", "    revison: Make it polite."), 12, "did you mean 'revision'"),
    (("  - id: p-two", "  - id: p-one"), 10, "duplicate principle id 'p-one' (first at line 6)"),
    (("    critique: Is it rude?", "    critique: '   '"), 11, "critique: must not be empty"),
    (("sampling: {rule: round_robin, seed: 3}", "sampling: {rule: sometimes}"), 4, "sampling.rule"),
    (("  - id: p-two", "  - id: P Two"), 10, "must be lower case"),
    (("version: 1.0", "version: 1.0\nauthor: me"), 3, "unknown key 'author'"),
    (('["No, sorry.", "I can\'t do that."]', '["No, sorry.", "No, sorry."]'), 13,
     "repeats a refusal template"),
])
def test_schema_errors_point_at_file_and_line(tmp_path, edit, line, fragment):
    path = write(tmp_path, GOOD.replace(*edit))
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:{line}:") and fragment in p for p in problems), problems


def test_missing_and_empty_principles(tmp_path):
    assert any("principles" in p and "Field required" in p
               for p in problems_of(write(tmp_path, "name: a\nversion: '1'\ndescription: d\n")))
    empty = write(tmp_path, "name: a\nversion: '1'\ndescription: d\nprinciples: []\n")
    assert any(":4:" in p and "at least 1" in p for p in problems_of(empty))
    top = problems_of(write(tmp_path, "- just\n- a list\n"))[0]
    assert top.endswith(":1: expected a mapping of keys at the top level")


# --- hostile files: bounded time and memory, one clear line each ------------------------------------------

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9))


@pytest.mark.parametrize("text, fragment", [
    (ALIAS_BOMB, "aliases (*name) are not allowed"),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than"),
    ("name: !!python/object/apply:os.system ['echo pwned']\n", "python/object/apply"),
    ("name: !!python/name:os.system\n", "python/name"),
    ("x: !custom 1\n", "tag '!custom' is not allowed"),
    ("name: a\nname: b\n", "duplicate key 'name'"),
    ("name: [unclosed\n", ""),
    ("\t- tab indent\n", ""),
])
def test_hostile_yaml_is_rejected_fast(tmp_path, text, fragment):
    path = write(tmp_path, text)
    start = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - start < 2.0
    assert len(problems) == 1 and problems[0].startswith(f"{path}:") and fragment in problems[0], problems


def test_ten_megabyte_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as fh:
        fh.write("name: big\nprinciples:\n")
        line = "  - {id: x, critique: " + "a" * 100 + ", revision: b}\n"
        fh.write(line * (10_000_000 // len(line)))
    assert path.stat().st_size > 9_000_000
    start = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - start < 1.0
    assert problems[0].startswith(f"{path}:1: file is") and "more than" in problems[0]


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "name: ok\ndescription: caf\xe9\n".encode("latin-1"))
    assert problems_of(path) == [f"{path}:2: not valid UTF-8 (byte 25)"]


# --- import -------------------------------------------------------------------------------------------------

def test_import_llm_swarm_round_trips(tmp_path, data_dir):
    src = data_dir / "constitutional-ai" / "constitution_anthropic.json"
    c = import_constitution(src)
    assert len(c.principles) == 16 and len(c.few_shot) == 4
    assert c.principles[0].id == "cai-01" and c.principles[0].critique.startswith("Did the response")
    out = write(tmp_path, to_yaml(c, header="imported"), "cai.yaml")
    again = load_constitution(out).constitution
    assert again.model_dump() == c.model_dump()
    assert len(import_constitution(src, few_shot=False).few_shot) == 0


@pytest.mark.parametrize("text", [
    json.dumps([{"name": "Harmful", "critique_request": "Is it harmful?", "revision_request": "Fix it."},
                {"name": "Rude one", "critique_request": "Is it rude?", "revision_request": "Be polite.",
                 "extra": "ignored like LangChain's other fields"}]),
    "harmful:\n  critique_request: Is it harmful?\n  revision_request: Fix it.\n"
    "rude one:\n  critique_request: Is it rude?\n  revision_request: Be polite.\n",
])
def test_import_langchain_lists(tmp_path, text):
    c = import_constitution(write(tmp_path, text, "lc.json"))
    assert [p.id for p in c.principles] == ["harmful", "rude-one"]
    assert c.principles[1].revision == "Be polite."


def test_import_errors_have_lines(tmp_path):
    bad = write(tmp_path, '{"constitutions": [\n {"critic": "a", "revision": "b"},\n {"critic": "c"}\n]}\n',
                "bad.json")
    with pytest.raises(UserError) as exc:
        import_constitution(bad)
    assert exc.value.problems[0].startswith(f"{bad}:3:") and "revision" in exc.value.problems[0]
    with pytest.raises(UserError, match=r"unknown.json:1: not an llm-swarm file"):
        import_constitution(write(tmp_path, '{"rules": 1}', "unknown.json"))


# --- CLI ----------------------------------------------------------------------------------------------------

def test_cli_validate_show_import(tmp_path, data_dir):
    good = write(tmp_path, GOOD, "good.yaml")
    res = runner.invoke(app, ["constitution", "validate", "default", "privacy", str(good)])
    assert res.exit_code == 0, res.output
    assert "default.yaml: ok (default v1.0, 16 principles" in res.output and "warning" in res.output
    res = runner.invoke(app, ["constitution", "show", "professional-advice"])
    assert res.exit_code == 0 and "medication-" in res.output and "legal-advice" in res.output
    res = runner.invoke(app, ["constitution", "show", "default", "--json"])
    assert json.loads(res.output)["name"] == "default"
    out = tmp_path / "imported.yaml"
    res = runner.invoke(app, ["constitution", "import", "constitutional-ai", "--out", str(out),
                              "--name", "cai", "--data-dir", str(data_dir)])
    assert res.exit_code == 0, res.output
    assert load_constitution(out).constitution.name == "cai"


def test_cli_exit_2_with_file_line(tmp_path):
    """The real entry point: every invalid file reported, one line each, exit 2, no traceback."""
    bad1 = write(tmp_path, GOOD.replace("revision: Make it polite.", "revison: x"), "bad1.yaml")
    bad2 = write(tmp_path, "a: &x 1\nb: *x\n", "bad2.yaml")
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "safefed.cli", "constitution", "validate", "default", str(bad1), str(bad2)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad1}:12: unknown key 'revison'") for line in lines), lines
    assert f"{bad2}:2: aliases (*name) are not allowed" in lines
    assert "Traceback" not in res.stderr and "default.yaml: ok" in res.stdout
