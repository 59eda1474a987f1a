"""`safefed align` on a tiny random Llama: the pipeline runs end to end and reports what it measured."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from safefed.align import AlignRecipe, benign_pairs, build_aligned_adapter
from safefed.cli import app


def test_align_pipeline_on_tiny_model(tmp_path, tiny_llama_path, data_dir):
    recipe = AlignRecipe(model=str(tiny_llama_path), n_harmful=2, n_lookalike=2, n_benign=2, answer_tokens=4,
                         critique_tokens=4, revision_tokens=4, steps=1, batch_size=2, max_length=48,
                         checker="judge:refusal")
    report = build_aligned_adapter(recipe, tmp_path / "a", data_dir=data_dir, n_eval=2, log=lambda m: None)
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").exists()
    saved = json.loads((tmp_path / "a" / "report.json").read_text())
    assert saved["recipe_key"] == recipe.key() == AlignRecipe(**saved["recipe"]).key()
    assert saved["revise"]["counts"]["template"] == 2 and saved["train"]["examples"] == 6
    for key in ("safe_rate", "over_refusal"):
        assert report["aligned"][key]["n"] == 2
    assert report["aligned"]["advbench"]["split"] == "eval" and "meets_targets" in report
    assert recipe.key() != AlignRecipe(steps=2).key()


def test_benign_pairs_are_short_and_seeded(data_dir):
    a = benign_pairs(10, 0, data_dir)
    assert a == benign_pairs(10, 0, data_dir) and all(0 < len(p["response"]) <= 400 for p in a)


def test_align_cli_help():
    res = CliRunner().invoke(app, ["align", "--help"])
    assert res.exit_code == 0 and "--n-harmful" in res.output


def test_shipped_aligned_adapter_is_the_default_recipe():
    from safefed.align import SHIPPED, cached_aligned_adapter, shipped_report

    report = shipped_report()
    assert report is not None and report["recipe_key"] == AlignRecipe().key()
    assert AlignRecipe(**report["recipe"]) == AlignRecipe()
    assert cached_aligned_adapter() == SHIPPED / "adapter"
    for key in ("safe_rate", "over_refusal", "benign_refusal"):
        assert report["aligned"][key]["n"] >= 100
    assert report["aligned"]["advbench"]["split"] == "eval"
