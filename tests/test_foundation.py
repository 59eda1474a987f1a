"""Model and data resolution, splits, YAML loading, Wilson intervals: offline."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from safefed import data as datasets
from safefed.errors import UserError
from safefed.evaluation.suite import Suite, load_suite
from safefed.models import resolve
from safefed.paths import find_asset, shipped_names
from safefed.splits import advbench_pools, sample
from safefed.stats import rate, wilson
from safefed.yamlio import load_model


def test_wilson_known_values():
    lo, hi = wilson(0, 48)
    assert lo == 0.0 and 0.07 < hi < 0.08
    lo, hi = wilson(24, 48)
    assert lo == pytest.approx(0.3636, abs=1e-3) and hi == pytest.approx(0.6364, abs=1e-3)
    assert rate(3, 10)["note"].startswith("n=10")
    assert "note" not in rate(30, 100)


def test_datasets_load_from_data_dir(data_dir):
    adv = datasets.load("advbench", data_dir)
    assert len(adv) == 520 and all(r["label"] == "harmful" for r in adv)
    xs = datasets.load("xstest", data_dir)
    assert len(xs) == 450 and sum(r["label"] == "benign" for r in xs) == 250
    jbb = datasets.load("jailbreakbench", data_dir)
    assert len(jbb) == 200 and len({r["category"] for r in jbb}) == 10
    art = datasets.load("jailbreakbench-artifacts", data_dir)
    assert len(art) == 1800 and sum(r["jailbroken"] for r in art) > 900
    hh = datasets.load("hh-rlhf-harmless-base", data_dir)
    assert len(hh) == 2312 and hh[0]["prompt"] and hh[0]["rejected"]
    assert len(datasets.load("harmfulqa-catqa", data_dir)) == 2510
    assert len(datasets.load("self-instruct-seed", data_dir)) == 175


def test_missing_dataset_offline_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEFED_CACHE", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as exc:
        datasets.load("xstest", tmp_path / "empty")
    (line,) = exc.value.problems
    assert "--data-dir" in line and "SAFEFED_DATA" in line and "xstest" in line


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown data set"):
        datasets.load("nope")


def test_advbench_pools_disjoint_deterministic(data_dir):
    adv = datasets.load("advbench", data_dir)
    pools = advbench_pools(adv)
    gate, ev = pools["gate"], pools["eval"]
    assert len(gate.records) + len(ev.records) == 520
    assert not {r["id"] for r in gate.records} & {r["id"] for r in ev.records}
    again = advbench_pools(list(reversed(adv)))
    assert {r["id"] for r in again["gate"].records} == {r["id"] for r in gate.records}
    assert gate.provenance()["content_hash"] == advbench_pools(adv)["gate"].provenance()["content_hash"]
    assert gate.provenance()["content_hash"] != ev.provenance()["content_hash"]


def test_sample_is_seeded_and_ordered():
    recs = [{"id": i} for i in range(100)]
    a, b = sample(recs, 10, 1), sample(recs, 10, 1)
    assert a == b and [r["id"] for r in a] == sorted(r["id"] for r in a)
    assert sample(recs, 10, 2) != a


def test_model_alias_offline_and_cached(smollm2_path, monkeypatch):
    first = resolve("smollm2-135m-instruct")
    assert first.path == smollm2_path and first.source in ("cache", "offline-package")
    assert "Q4_1" in first.note
    assert resolve("smollm2-135m-instruct").source == "cache"
    enc = resolve("all-minilm-l6-v2")
    assert (enc.path / "model.safetensors").exists()


def test_unknown_model_is_one_line(tmp_path):
    with pytest.raises(UserError) as exc:
        resolve("no-such-model")
    assert len(exc.value.problems) == 1 and "aliases" in exc.value.problems[0]
    with pytest.raises(UserError, match="no config.json"):
        resolve(str(tmp_path))


def test_shipped_suites_validate():
    assert {"advbench", "xstest", "jailbreakbench"} <= set(shipped_names("eval"))
    for name in shipped_names("eval"):
        assert load_suite(name).name == name


def test_suite_errors_have_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: advbench\njugde: refusal\nmax_new_tokens: 0\n")
    with pytest.raises(UserError) as exc:
        load_suite(bad)
    lines = exc.value.problems
    assert any(ln.startswith(f"{bad}:3:") and "did you mean 'judge'" in ln for ln in lines)
    assert any(ln.startswith(f"{bad}:4:") and "max_new_tokens" in ln for ln in lines)


@pytest.mark.parametrize("text, fragment", [
    ("a: &x [1]\nb: *x\n", "aliases"),
    ("a: 1\na: 2\n", "duplicate key"),
    ("a: !!python/object:os.system x\n", "not allowed"),
    ("a: [1, 2\n", ""),
    ("[" * 100 + "]" * 100 + "\n", "nesting"),
])
def test_hostile_yaml(tmp_path, text, fragment):
    f = tmp_path / "h.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as exc:
        load_model(Suite, f)
    assert exc.value.problems[0].startswith(f"{f}:") and fragment in exc.value.problems[0]


def test_big_and_non_utf8_yaml(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * 2_000_000)
    with pytest.raises(UserError, match="bytes"):
        load_model(Suite, big)
    bad = tmp_path / "latin.yaml"
    bad.write_bytes(b"name: ok\ndataset: caf\xe9\n")
    with pytest.raises(UserError, match=r"latin.yaml:2: not valid UTF-8"):
        load_model(Suite, bad)


def test_find_asset_by_name_and_path(tmp_path):
    assert find_asset("eval", "advbench").name == "advbench.yaml"
    with pytest.raises(UserError, match="shipped"):
        find_asset("eval", "nope")
    with pytest.raises(UserError, match="no such file"):
        find_asset("eval", str(tmp_path / "missing.yaml"))


def test_wheel_carries_yaml_assets(tmp_path):
    """The YAML folders travel as package data: a built wheel holds them under safefed/_assets."""
    import zipfile

    from hatchling.builders import wheel as builders
    root = Path(__file__).resolve().parents[1]
    (wheel,) = builders.WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"])
    names = zipfile.ZipFile(wheel).namelist()
    assert "safefed/_assets/eval/advbench.yaml" in names
    assert "safefed/_assets/eval/judges/refusal_markers.yaml" in names
    assert "safefed/artifacts/response_judge.json" in names


def test_shipped_artifacts_hold_no_machine_paths():
    """Reports record paths portably (paths.portable): nothing shipped names the machine it was built on."""
    import re

    from safefed.filtering.artifacts import ARTIFACTS
    from safefed.paths import portable

    absolute = re.compile(r'"(/(?:work|root|home|tmp|Users)/[^"]*)"')
    for f in ARTIFACTS.rglob("*.json"):
        assert not absolute.findall(f.read_text()), f
    assert portable(ARTIFACTS / "filter_student") == "safefed/artifacts/filter_student"
