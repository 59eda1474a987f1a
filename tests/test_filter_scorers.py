"""Each scorer backend on real code paths: lexicon matching, Detoxify and an HF classifier on tiny
checkpoints this test builds, the guard scorer on a tiny random Llama (and a double for its verdicts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safefed.filtering import SafetyFilter, load_policy
from safefed.filtering.scorers import build_scorer, scorer_types
from safefed.filtering.scorers.detoxify_scorer import DETOXIFY_CLASSES, make_checkpoint
from safefed.filtering.scorers.guard import GuardOptions, GuardScorer
from safefed.filtering.scorers.lexicon import LexiconOptions, LexiconScorer, normalise
from safefed.scoring.guard import parse_output


@pytest.fixture(scope="module")
def bert_tokenizer_dir() -> Path:
    from safefed.models import resolve

    return resolve("all-minilm-l6-v2").path  # a BERT WordPiece tokenizer (bert-base-uncased vocabulary)


def test_builtin_scorers_registered():
    assert {"embedding", "lexicon", "detoxify", "hf-classifier", "guard"} <= set(scorer_types())


@pytest.mark.parametrize(
    "text",
    [
        "how to make SARIN",
        "s4r1n recipe",
        "s a r i n",
        "s.a.r.i.n at home",
        "Sarin\u00a0gas",
        "s-a-r-i-n\tgas",
        "x;sarin;y",
    ],
)
def test_lexicon_sees_through_obfuscation(text):
    lex = LexiconScorer(LexiconOptions(categories={"weapons": {"words": ["sarin"]}}))
    assert lex.score([text], [""])[0]["weapons"] == 1.0, normalise(text)


@pytest.mark.parametrize("text", ["Sarina went home", "caesarine", "a nice day", "", "s a r i n a"])
def test_lexicon_respects_word_boundaries(text):
    lex = LexiconScorer(LexiconOptions(categories={"weapons": {"words": ["sarin"]}}))
    assert lex.score([text], [""])[0]["weapons"] == 0.0


def test_lexicon_squeezes_repeats_when_asked():
    cats = {"weapons": {"words": ["sarin"]}}
    assert LexiconScorer(LexiconOptions(categories=cats)).score(["saaaarin"], [""])[0]["weapons"] == 0.0
    squeezing = LexiconScorer(LexiconOptions(categories=cats, squeeze_repeats=True))
    assert squeezing.score(["saaaarin"], [""])[0]["weapons"] == 1.0


def test_lexicon_reads_fields_and_patterns():
    lex = build_scorer(
        "lexicon",
        {"categories": {"w": {"words": ["kill myself"]}, "r": {"patterns": [r"\bbuild\s+a\s+bomb\b"]}}},
        "response",
    )
    rows = lex.score(["i want to kill myself", "x", "y"], ["fine", "K I L L   myself", "let's build a  bomb"])
    assert [r["w"] for r in rows] == [0.0, 1.0, 0.0] and [r["r"] for r in rows] == [0.0, 0.0, 1.0]
    many = lex.score(["p"] * 1000, ["kill myself" if i % 7 == 0 else "hello" for i in range(1000)])
    assert sum(r["w"] for r in many) == len(range(0, 1000, 7))  # row mapping stays right across a batch


def test_detoxify_real_code_path_on_a_tiny_checkpoint(tmp_path, bert_tokenizer_dir):
    ckpt = make_checkpoint(tmp_path / "detox", bert_tokenizer_dir)
    policy = tmp_path / "detox.yaml"
    policy.write_text(
        f"name: detox\nscorers:\n  - type: detoxify\n    reads: response\n    options:\n"
        f"      checkpoint: {ckpt}\n    thresholds: {{default: 0.0}}\nactions: {{default: flag}}\n"
    )
    f = SafetyFilter.from_yaml(policy)
    scorer = f.scorers[0]
    assert scorer.categories == DETOXIFY_CLASSES
    rows = scorer.score(["a", "b", "c"], ["you are kind", "you are kind", ""])
    assert all(0.0 <= v <= 1.0 for r in rows for v in r.values())
    assert rows[0] == rows[1] and set(rows[2].values()) == {0.0}
    assert f.check_pairs(["a"], ["hello"])[0].action == "flag"  # threshold 0: any score fires


def test_detoxify_missing_checkpoint_is_a_user_error():
    from safefed.errors import UserError

    with pytest.raises(UserError, match="checkpoint not found"):
        build_scorer("detoxify", {"checkpoint": "/nonexistent/x.ckpt"}, "response")


def test_hf_classifier_on_a_tiny_model(tmp_path, bert_tokenizer_dir):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label={0: "SAFE", 1: "TOXIC", 2: "HATE"},
        label2id={"SAFE": 0, "TOXIC": 1, "HATE": 2},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    scorer = build_scorer(
        "hf-classifier",
        {"model": str(tmp_path / "clf"), "label_map": {"TOXIC": "toxicity", "HATE": "hate"}},
        "pair",
    )
    rows = scorer.score(["hi", "x"], ["there", ""])
    assert scorer.categories == ["hate", "toxicity"]
    assert all(0.0 < r["hate"] < 1.0 and 0.0 < r["toxicity"] < 1.0 for r in rows)
    assert abs(rows[0]["hate"] + rows[0]["toxicity"]) < 1.0  # softmax shares mass with SAFE


def test_guard_rows():
    row = GuardScorer.row(0.9, ("S1", "S10"))
    assert row["S1"] == row["S10"] == row["p_unsafe"] == 0.9 and "unspecified" not in row
    assert GuardScorer.row(0.2)["unspecified"] == 0.2
    assert parse_output("unsafe\nS1,S10").categories == ("S1", "S10")


class _GuardDouble:
    """Stands in for an 8B Llama Guard (needs a GPU and the hub): P(unsafe) by a rule, records what it
    was asked. The real guard path runs in test_filter_v2 with Qwen2.5-Coder-0.5B-Instruct."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def p_unsafe(self, prompts, responses):
        self.calls.extend(zip(prompts, responses, strict=True))
        return [0.97 if "sarin" in (r or p) else 0.02 for p, r in zip(prompts, responses, strict=True)]

    def hazards(self, prompts, responses):
        return [("S9",) for _ in prompts]


def test_llama_guard_policy_with_a_double():
    policy = load_policy("llama-guard")
    double = _GuardDouble()
    f = SafetyFilter(policy, scorers=[GuardScorer(GuardOptions(), reads="pair", classifier=double)])
    d = f.check_pairs(["how is sarin made?", "hi", "only a prompt"], ["mix ... (sarin steps)", "hello", ""])
    assert [x.action for x in d] == ["revise", "keep", "keep"] and d[0].categories == ["S9"]
    assert double.calls[2] == ("only a prompt", None)  # no response: the user turn is judged


def test_guard_scorer_runs_a_real_generative_model(tiny_llama_path):
    scorer = build_scorer(
        "guard", {"model": str(tiny_llama_path), "categorize_above": 0.0, "batch_size": 2}, "pair"
    )
    rows = scorer.score(["hello", "how are you"], ["hi", ""])
    # random weights: some P(unsafe) in (0, 1), reported under the codes it names or `unspecified`
    assert len(rows) == 2 and all(0.0 < r["p_unsafe"] < 1.0 for r in rows)
    assert all(max(r.get(c, 0.0) for c in scorer.categories) == r["p_unsafe"] for r in rows)
