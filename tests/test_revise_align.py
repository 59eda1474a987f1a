"""`safefed align` on a tiny random Llama: the pipeline runs end to end and reports what it measured."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from safefed.align import AlignRecipe, benign_pairs, build_aligned_adapter, pick_candidate, validation_sets
from safefed.cli import app


def tiny_recipe(model_path, **changes) -> AlignRecipe:
    """The default recipe cut down to seconds on the tiny 2-layer Llama (one candidate, all layers)."""
    small = dict(model=str(model_path), n_harmful=2, n_lookalike=2, n_benign=2, answer_tokens=4, critique_tokens=4,
                 revision_tokens=4, steps=1, batch_size=2, max_length=48, candidates=1, layers_from=None,
                 decision_weight=1.0)
    return AlignRecipe(**{**small, **changes})


def test_align_pipeline_on_tiny_model(tmp_path, tiny_llama_path, data_dir):
    recipe = tiny_recipe(tiny_llama_path)
    report = build_aligned_adapter(recipe, tmp_path / "a", data_dir=data_dir, n_eval=2, log=lambda m: None)
    config = json.loads((tmp_path / "a" / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == recipe.model and not (tmp_path / "a" / "adapter" / "README.md").exists()
    saved = json.loads((tmp_path / "a" / "report.json").read_text())
    assert saved["recipe_key"] == recipe.key() == AlignRecipe(**saved["recipe"]).key()
    assert saved["revise"]["counts"]["template"] == 2 and saved["train"]["examples"] == 6
    for key in ("safe_rate", "over_refusal"):
        assert report["aligned"][key]["n"] == 2
    assert report["aligned"]["advbench"]["split"] == "eval" and "meets_targets" in report
    assert recipe.key() != AlignRecipe(steps=2).key()


def test_align_keeps_the_best_candidate_on_validation(tmp_path, tiny_llama_path, data_dir):
    recipe = tiny_recipe(tiny_llama_path, candidates=2, seed=5)
    report = build_aligned_adapter(recipe, tmp_path / "a", data_dir=data_dir, n_eval=2, n_val=3, log=lambda m: None)
    tried = report["candidates"]["tried"]
    assert [t["seed"] for t in tried] == [5, 6]
    assert all(t["validation"]["safe_rate"]["n"] == 3 and t["validation"]["over_refusal"]["n"] == 3 for t in tried)
    assert report["candidates"]["picked_seed"] == tried[pick_candidate([t["validation"] for t in tried])]["seed"]
    for seed in (5, 6):
        assert (tmp_path / "a" / "candidates" / f"seed-{seed}" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").exists()
    assert recipe.key() != tiny_recipe(tiny_llama_path, seed=5).key()


def test_pick_candidate_prefers_meeting_both_targets():
    def v(s, o):
        return {"safe_rate": {"value": s}, "over_refusal": {"value": o}}

    assert pick_candidate([v(0.95, 0.40), v(0.82, 0.10), v(0.85, 0.12)]) == 2
    assert pick_candidate([v(0.95, 0.40), v(0.70, 0.05), v(0.60, 0.20)]) == 1


def test_validation_sets_are_not_evaluation_sets(data_dir):
    from safefed.evaluation.headline import eval_sets

    val = {r["prompt"] for r in validation_sets(data_dir, None, 0)}
    ev = eval_sets(None, None, None, data_dir=data_dir)
    assert len(val) > 400 and not val & {r["prompt"] for r in ev.advbench + ev.xstest + ev.utility}


def test_benign_pairs_are_short_and_seeded(data_dir):
    a = benign_pairs(10, 0, data_dir)
    assert a == benign_pairs(10, 0, data_dir) and all(0 < len(p["response"]) <= 400 for p in a)


def test_align_cli_help():
    import typer

    res = CliRunner().invoke(app, ["align", "--help"])
    assert res.exit_code == 0 and "--n-harmful" in res.output
    helps = {p.name: p.help for p in typer.main.get_command(app).commands["align"].params}
    d = AlignRecipe()  # the help states the recipe's defaults (the options themselves default to "unset")
    for name, value in [("n_harmful", d.n_harmful), ("n_lookalike", d.n_lookalike), ("candidates", d.candidates),
                        ("layers_from", d.layers_from), ("decision_weight", int(d.decision_weight))]:
        assert f"default: {value}" in helps[name], name


def test_shipped_aligned_adapter_is_the_default_recipe():
    from safefed.align import SHIPPED, cached_aligned_adapter, shipped_report

    report = shipped_report()
    assert report is not None and report["recipe_key"] == AlignRecipe().key()
    assert AlignRecipe(**report["recipe"]) == AlignRecipe()
    assert cached_aligned_adapter() == SHIPPED / "adapter"
    for key in ("safe_rate", "over_refusal", "benign_refusal"):
        assert report["aligned"][key]["n"] >= 100
    assert report["aligned"]["advbench"]["split"] == "eval"


def test_align_lora_on_upper_layers_only(tmp_path, tiny_llama_path, data_dir):
    from safetensors.torch import load_file

    recipe = tiny_recipe(tiny_llama_path, layers_from=1, decision_weight=8.0)
    report = build_aligned_adapter(recipe, tmp_path / "a", data_dir=data_dir, n_eval=2, log=lambda m: None)
    config = json.loads((tmp_path / "a" / "adapter" / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1] and report["train"]["layers_from"] == 1
    assert report["train"]["decision_weight"] == report["recipe"]["decision_weight"] == 8.0
    weights = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    assert weights and all(".layers.1." in k for k in weights)
    others = [tiny_recipe(tiny_llama_path), tiny_recipe(tiny_llama_path, layers_from=1)]
    assert len({recipe.key(), *(r.key() for r in others)}) == 3


def test_recipes_from_before_a_field_existed_keep_their_key():
    """The fields added later are left out of the key at the value older recipes had (cache names hold)."""
    old = AlignRecipe(n_lookalike=300, candidates=1, layers_from=None, decision_weight=1.0)
    assert old.key() == "3547a096811f"  # the all-layers recipe's key in reports before these fields existed
    assert len({old.key(), AlignRecipe().key(), replace(old, layers_from=16).key(),
                replace(old, decision_weight=8.0).key(), replace(old, candidates=3).key()}) == 5
    assert replace(old, layers_from=0) == old and AlignRecipe(decision_weight=8) == AlignRecipe()  # one spelling


def test_align_rejects_a_layer_the_model_lacks(monkeypatch, capsys, tmp_path, tiny_llama_path, data_dir):
    from cli_helpers import run_main

    code, _, err = run_main(monkeypatch, capsys, "align", "--out", str(tmp_path / "a"), "--model", str(tiny_llama_path),
                            "--layers-from", "2", "--data-dir", str(data_dir))
    assert code == 2 and "layers_from 2: the model has 2 decoder layers (0 to 1)" in err
    assert not (tmp_path / "a" / "adapter").exists()
    code, _, err = run_main(monkeypatch, capsys, "align", "--out", str(tmp_path / "b"), "--model", str(tiny_llama_path),
                            "--decision-weight", "0.5", "--data-dir", str(data_dir))
    assert code == 2 and "--decision-weight" in err and not (tmp_path / "b").exists()
