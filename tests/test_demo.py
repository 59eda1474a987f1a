"""``safefed demo``: presets and config errors, arms, outputs and plots, resume; the smoke preset end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safefed.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


# --- configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_presets_load(preset):
    from safefed.demo.config import MAIN_ARMS, load_demo_config

    cfg, path = load_demo_config(preset)
    assert path.name == f"{preset}.yaml"
    assert set(MAIN_ARMS) <= set(cfg.arms)
    assert cfg.federation.initial_adapter == "aligned"
    if preset == "paper":
        f = cfg.federation
        assert (f.num_clients, round(f.num_clients * f.fraction_train), f.rounds) == (20, 5, 50)
        assert {"krum", "median"} <= set(cfg.arms)
        assert f.harmful_fraction == 0.3 and f.layout == "mixed"


def test_arms_switch_only_their_safeguards(tmp_path):
    from safefed.demo.config import load_demo_config

    cfg, _ = load_demo_config("quick")
    arms = {a: cfg.arm_config(a, out=tmp_path / a) for a in ("baseline", "filter", "revise", "gate", "all", "krum",
                                                              "median")}
    on = {a: (c.filter_policy, c.gate, c.cai_constitution, c.strategy) for a, c in arms.items()}
    assert on["baseline"] == (None, None, None, "fedavg")
    assert on["filter"] == ("default", None, None, "fedavg")
    assert on["revise"] == (None, None, "default", "fedavg")
    assert on["gate"] == (None, "default", None, "fedavg")
    assert on["all"] == ("default", "default", "default", "fedavg")
    assert on["krum"] == (None, None, None, "krum") and on["median"] == (None, None, None, "median")
    shared = {k for k in cfg.federation.model_dump()}
    for c in arms.values():  # same seeds and data everywhere
        assert {k: getattr(c, k) for k in shared - {"strategy"}} == \
               {k: getattr(arms["baseline"], k) for k in shared - {"strategy"}}


def test_config_key_ignores_arms_but_not_sizes():
    from safefed.demo.config import load_demo_config

    cfg, _ = load_demo_config("smoke")
    assert cfg.model_copy(update={"arms": ["gate"]}).key() == cfg.key()
    other = cfg.model_copy(deep=True)
    other.federation.rounds = 2
    assert other.key() != cfg.key()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "line", "words"), [
    ("arms: [baseline]\nfederation:\n  rounds: 2\n  roundz: 3\n", 4, "unknown key 'roundz' (did you mean 'rounds'?)"),
    ("federation:\n  gate: default\n", 2, "unknown key 'gate'"),  # safeguards are set per arm, not shared
    ("arms: [baseline, bogus]\n", 1, "unknown arm(s) 'bogus'"),
    ("evaluation:\n  advbench: 0\n", 2, "evaluation.advbench"),
    ("federation:\n  layout: both\n", 2, "federation.layout"),
])
def test_bad_config_is_a_file_line_error(tmp_path, text, line, words):
    from safefed.demo.config import load_demo_config

    path = _write(tmp_path, text)
    with pytest.raises(UserError) as exc:
        load_demo_config(config=path)
    assert any(p.startswith(f"{path}:{line}:") and words in p for p in exc.value.problems), exc.value.problems


def test_cli_user_errors_exit_2(tmp_path, monkeypatch, capsys):
    from cli_helpers import run_main

    bad = _write(tmp_path, "federation:\n  rounds: -1\n")
    out = str(tmp_path / "o")
    for args, words in (
        (["--config", str(bad)], f"{bad}:2: federation.rounds"),
        (["--preset", "smoke", "--arms", "baseline,nope"], "--arms: unknown arm(s) 'nope'"),
        (["--preset", "nonesuch"], "not a shipped demos name"),
        (["--preset", "smoke", "--config", str(bad)], "not both"),
    ):
        code, stdout, stderr = run_main(monkeypatch, capsys, "demo", *args, "--out", out)
        assert code == 2 and words in stderr and "Traceback" not in stderr + stdout, (args, stderr)
    assert not (tmp_path / "o").exists()  # nothing written for a mistake


def test_out_folder_of_another_configuration_is_refused(tmp_path):
    from safefed.demo.config import load_demo_config
    from safefed.demo.runner import DemoRunner

    cfg, _ = load_demo_config("smoke")
    out = tmp_path / "run"
    DemoRunner(cfg, out)._claim_out()
    (out / "results.json").write_text("{}")
    (out / "mine.txt").write_text("not the demo's")
    other = cfg.model_copy(deep=True)
    other.evaluation.advbench = 9
    with pytest.raises(UserError, match="different configuration.*--fresh"):
        DemoRunner(other, out)._claim_out()
    DemoRunner(other, out, fresh=True)._claim_out()
    assert json.loads((out / "demo.json").read_text())["config_key"] == other.key()
    assert not (out / "results.json").exists() and (out / "mine.txt").exists()  # only the demo's files go


# --- building blocks: tagged audit log, round numbering, seeded sampling ------------------------------

def test_audit_tags_keep_runs_apart(tmp_path):
    from safefed.federated.audit import AuditLog, read_audit

    path = tmp_path / "audit.jsonl"
    a, b = AuditLog(path, tags={"arm": "gate"}), AuditLog(path, tags={"arm": "all"})
    a.decision(1, client="x")
    a.complete(1)
    b.decision(1, client="y")
    assert a.completed_rounds() == {1} and b.completed_rounds() == set()
    again = AuditLog(path, tags={"arm": "all"})  # a resumed run of arm "all": a new attempt of round 1
    again.decision(1, client="y")
    rows = read_audit(path)
    assert [(r["arm"], r["round"], r["attempt"]) for r in rows] == [("gate", 1, 1), ("gate", 1, 1), ("all", 1, 1),
                                                                    ("all", 1, 2)]


class _Inner:
    """A stand-in strategy that records the rounds it is asked about and samples like FedAvg."""

    def __init__(self):
        self.seen = []

    def configure_train(self, server_round, arrays, config, grid):
        import random

        self.seen.append(("train", server_round))
        return random.sample(list(grid.get_node_ids()), 2)

    def aggregate_train(self, server_round, replies):
        from flwr.app import MetricRecord

        self.seen.append(("aggregate", server_round))
        return None, MetricRecord({"train-loss": 1.0})


class _Grid:
    def __init__(self, partitions):
        self.partitions = partitions  # node id -> partition id

    def get_node_ids(self):
        return set(self.partitions)

    def send_and_receive(self, messages, timeout=None):
        from types import SimpleNamespace

        return [SimpleNamespace(has_error=lambda: False, metadata=SimpleNamespace(src_node_id=m.metadata.dst_node_id),
                                content=SimpleNamespace(metric_records={"metrics": {
                                    "partition-id": self.partitions[m.metadata.dst_node_id]}}))
                for m in messages]


def test_resumable_numbers_rounds_from_the_checkpoint_and_samples_the_same_partitions(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    from safefed.federated.flower import PartitionOrderedGrid, Resumable

    for name in ("_task_id", "_run_id", "_node_id"):  # what a running ServerApp has: a Message needs it
        monkeypatch.setattr(TaskIdentity, name, 1)

    picks = []
    for node_ids in ([901, 17, 5550, 42, 3], [8, 77777, 12, 4040, 6]):  # two runs: other random node ids
        grid = PartitionOrderedGrid(_Grid({n: i for i, n in enumerate(node_ids)}))
        inner = _Inner()
        s = Resumable(inner, first_round=3, sample_seed=0)
        chosen = s.configure_train(1, None, None, grid)
        s.aggregate_train(1, [])
        assert inner.seen == [("train", 3), ("aggregate", 3)] and s.train_metrics == {3: {"train-loss": 1.0}}
        picks.append(sorted(grid.partitions[n] for n in chosen))
    assert picks[0] == picks[1]


def test_update_cache_keys_on_everything_that_shapes_an_update(tmp_path):
    import numpy as np

    from safefed.federated.app import FedConfig, UpdateCache

    cache = UpdateCache(tmp_path / "c")
    cfg = FedConfig()
    g = {"a": np.zeros((2, 2), np.float32)}
    pairs = [{"prompt": "p", "response": "r"}]
    k = cache.key(g, pairs, cfg, seed=1)
    assert cache.get(k) is None
    cache.put(k, {"a": np.ones((2, 2), np.float32)}, 0.5)
    arrays, loss = cache.get(k)
    assert loss == 0.5 and arrays["a"].sum() == 4
    assert k == cache.key({"a": np.zeros((2, 2), np.float32)}, [dict(pairs[0])], FedConfig(), seed=1)
    others = [cache.key({"a": np.full((2, 2), 1e-6, np.float32)}, pairs, cfg, 1),
              cache.key(g, [{"prompt": "p", "response": "r2"}], cfg, 1), cache.key(g, pairs, cfg, 2),
              cache.key(g, pairs, FedConfig(lr=1e-3), 1), cache.key(g, pairs, FedConfig(local_steps=5), 1)]
    assert k not in others and len(set(others)) == len(others)


# --- outputs from a synthetic run ---------------------------------------------------------------------

def _rate(k, n):
    from safefed.stats import rate

    return rate(k, n)


def _summary():
    rounds = []
    for arm, path in (("baseline", [10, 6, 4]), ("gate", [10, 9, 9])):
        for r, k in enumerate(path):
            decisions = [{"partition": 0, "accepted": False, "safe_rate": 0.2},
                         {"partition": 1, "accepted": True, "safe_rate": 0.6}] if arm == "gate" and r else None
            rounds.append({"arm": arm, "round": r, "safe_rate": k / 16, "safe_rate_ci95": [0.1, 0.9], "n": 16,
                           "clients": [0, 1] if r else [], "accepted": [1] if decisions else None,
                           "rejected": [0] if decisions else None, "gate_decisions": decisions, "seconds": 1.0})
    arm = {"what": "x", "rounds": 2, "seconds": 12.0, "gate": None}
    return {
        "demo": {"config": {"federation": {"num_clients": 2, "rounds": 2, "layout": "mixed"}}},
        "start": {"safe_rate": _rate(30, 48), "over_refusal": _rate(5, 48), "utility": _rate(30, 32)},
        "arms": {"baseline": {**arm, "safe_rate": _rate(10, 48), "over_refusal": _rate(4, 48),
                              "utility": _rate(31, 32), "delta": {"safe_rate": 0.0}},
                 "gate": {**arm, "safe_rate": _rate(28, 48), "over_refusal": _rate(6, 48), "utility": _rate(30, 32),
                          "gate": {"accepted": 2, "rejected": 2}, "delta": {"safe_rate": 0.375}}},
        "rounds": rounds,
    }


def test_outputs_files_tables_and_plots(tmp_path):
    from rich.console import Console

    from safefed.demo.report import markdown_table, results_table, write_outputs

    summary = _summary()
    written = write_outputs(summary, tmp_path)
    assert {p.name for p in written} == {"results.json", "results.csv", "rounds.csv", "safe_rate_by_round.png",
                                         "gate_decisions.png"}
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["arm"] for r in rows] == ["start", "baseline", "gate"]
    assert rows[2]["safe_rate"] == "0.5833" and rows[2]["safe_rate_n"] == "48" and rows[2]["gate_rejected"] == "2"
    rounds = list(csv.DictReader((tmp_path / "rounds.csv").open()))
    assert len(rounds) == 6 and rounds[4]["arm"] == "gate" and rounds[4]["rejected"] == "0"
    assert rounds[4]["accepted"] == "1" and rounds[0]["accepted"] == ""
    for name in ("safe_rate_by_round.png", "gate_decisions.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and 5_000 < len(data) < 400_000
    console = Console(record=True, width=160)
    console.print(results_table(summary))
    text = console.export_text()
    assert "start (aligned)" in text and "0.58 [" in text and "2/2" in text
    md = markdown_table(summary)
    assert md.count("\n") == 4 and "| gate | 0.58 [" in md and "+0.38" in md

    no_gate = {**summary, "rounds": [r for r in summary["rounds"] if r["arm"] == "baseline"]}
    written = write_outputs(no_gate, tmp_path)
    assert not (tmp_path / "gate_decisions.png").exists()  # no gated arm: no stale plot either


# --- the smoke preset, end to end (real SmolLM2, Flower's simulation engine) --------------------------

def _demo_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAFEFED_DATA": str(data_dir), "HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "safefed.cli", "demo", *args], capture_output=True, text=True,
                          env=env, timeout=1800)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir, smollm2_path):
    out = tmp_path_factory.mktemp("demo") / "smoke"
    res = _demo_cli("--preset", "smoke", "--out", str(out), data_dir=data_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


@pytest.mark.slow
def test_smoke_preset_end_to_end(smoke_run):
    from safefed.demo.config import load_demo_config
    from safefed.federated.audit import read_audit

    out, output = smoke_run
    cfg, _ = load_demo_config("smoke")
    ev = cfg.evaluation
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == ["baseline", "filter", "revise", "gate", "all"]
    for entry in [results["start"], *results["arms"].values()]:
        for key, n in (("safe_rate", ev.advbench), ("over_refusal", ev.xstest), ("utility", ev.utility)):
            r = entry[key]
            assert r["n"] == n and 0 <= r["value"] <= 1 and r["ci95"][0] <= r["value"] <= r["ci95"][1]
    for arm, r in results["arms"].items():
        assert r["rounds"] == 1 and r["seconds"] > 0 and r["arm"] == arm
        assert (out / "arms" / arm / "adapter" / "adapter_config.json").exists()
        gens = [json.loads(x) for x in (out / "arms" / arm / "generations.jsonl").read_text().splitlines()]
        assert len(gens) == ev.advbench + ev.xstest + ev.utility
    # one starting point; the arms really trained, and differently where their safeguards differ
    h = {a: r["adapter_hash"] for a, r in results["arms"].items()}
    assert results["start"]["adapter_hash"] not in h.values()
    assert len({h["baseline"], h["filter"], h["revise"], h["all"]}) == 4
    (closed,) = [r for r in read_audit(out / "audit.jsonl") if r["arm"] == "gate" and r["event"] == "round_complete"]
    if not closed["rejected"] and closed["aggregate_check"]["kept"]:
        assert h["gate"] == h["baseline"]  # every update admitted: exactly FedAvg's result
    prov = results["provenance"]
    assert prov["evaluation"]["advbench"]["split"] == "eval" and prov["clients"]["content_hash"]
    assert prov["seeds"]["federation"] == 0 and prov["model"]["name"]
    t = results["target"]
    assert t["rule"] and isinstance(t["met"], bool) and isinstance(t["met_vs_start"], bool)
    a, b = results["arms"]["all"], results["arms"]["baseline"]
    assert t["safe_rate_gain"] == round(a["safe_rate"]["value"] - b["safe_rate"]["value"], 4)
    assert t["over_refusal_rise_vs_start"] == round(a["over_refusal"]["value"]
                                                    - results["start"]["over_refusal"]["value"], 4)

    csv_rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["arm"] for r in csv_rows] == ["start", "baseline", "filter", "revise", "gate", "all"]
    rounds = list(csv.DictReader((out / "rounds.csv").open()))
    assert [(r["arm"], r["round"]) for r in rounds] == [(a, str(k)) for a in results["arms"] for k in (0, 1)]
    first = {r["arm"]: r for r in rounds if r["round"] == "1"}
    assert {r["clients"] for r in first.values()} == {"0 1"}
    assert first["filter"]["filter_dropped"] not in ("", "0")  # harmful rows never reached training
    assert first["baseline"]["filter_dropped"] == ""
    assert int(first["revise"]["cai_pairs"]) >= cfg.safeguards.cai_benign and first["gate"]["cai_pairs"] == ""
    # round 1 starts from the same adapter everywhere: each client trains once per distinct data (unfiltered,
    # filtered) and the other arms reuse that update
    assert {a: first[a]["reused_updates"] for a in first} == {"baseline": "0", "filter": "0", "revise": "2",
                                                              "gate": "2", "all": "2"}
    for arm in ("gate", "all"):
        assert sorted((first[arm]["accepted"] + " " + first[arm]["rejected"]).split()) == ["0", "1"]
    audit = read_audit(out / "audit.jsonl")
    assert {r["arm"] for r in audit} == {"gate", "all"}
    for arm in ("gate", "all"):
        mine = [r for r in audit if r["arm"] == arm]
        assert [r["event"] for r in mine] == ["decision", "decision", "round_complete"]
        assert sorted(r["partition"] for r in mine[:2]) == [0, 1]
    for name in ("safe_rate_by_round.png", "gate_decisions.png"):
        assert (out / name).read_bytes().startswith(PNG)
    assert "safe_rate" in output and "start (aligned)" in output and "target" in output


@pytest.mark.slow
def test_smoke_rerun_skips_finished_arms(smoke_run, data_dir):
    out, _ = smoke_run
    before = {a: (out / "arms" / a / "result.json").read_text() for a in ("baseline", "gate")}
    res = _demo_cli("--preset", "smoke", "--out", str(out), "--arms", "baseline,gate", data_dir=data_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (res.stdout + res.stderr).count("finished earlier, skipped") == 2
    assert {a: (out / "arms" / a / "result.json").read_text() for a in before} == before
    # results.json still lists every finished arm, not only the ones asked for this time
    results = json.loads((out / "results.json").read_text())
    assert len(results["arms"]) == 5
    first, second = results["demo"]["invocations"]
    assert first["ran"] == ["baseline", "filter", "revise", "gate", "all"] and second["ran"] == []
    assert results["demo"]["wall_s_all_invocations"] == round(first["wall_s"] + second["wall_s"], 1)


@pytest.mark.slow
def test_interrupted_arm_resumes_from_its_last_round(tmp_path, data_dir, smollm2_path):
    """Two rounds of the gate arm, stopped after round 1 (checkpoint written), then resumed: round 2 runs
    as a new session with round numbering, audit attempts and the starting arrays carried over."""
    from safefed.demo.config import load_demo_config
    from safefed.demo.runner import DemoRunner
    from safefed.federated.audit import read_audit

    cfg, _ = load_demo_config("smoke")
    cfg.federation.rounds = 2
    out = tmp_path / "resume"
    runner = DemoRunner(cfg, out, arms=["gate"], data_dir=data_dir, stop_after_round=1)
    with pytest.raises(Exception, match="stopped after round 1"):
        runner.run()
    state = json.loads((out / "arms" / "gate" / "state.json").read_text())
    assert state["rounds_done"] == 1 and state["checkpoint"] == "checkpoint-round-1.npz"
    assert not (out / "arms" / "gate" / "result.json").exists()

    summary = DemoRunner(cfg, out, arms=["gate"], data_dir=data_dir).run()
    r = summary["arms"]["gate"]
    assert r["rounds"] == 2 and r["sessions"] == 2
    assert [x["round"] for x in summary["rounds"]] == [0, 1, 2]
    audit = read_audit(out / "audit.jsonl")
    assert [(x["round"], x["event"]) for x in audit if x["event"] == "round_complete"] == [(1, "round_complete"),
                                                                                         (2, "round_complete")]
    assert {x["attempt"] for x in audit} == {1}  # round 2 never started before the stop: first attempt
