"""Batched generation equals one-by-one greedy generation; odd prompts are handled."""

from __future__ import annotations

from safefed.generation import Generator

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves falling slowly in the park.",
    "List three prime numbers.",
    "Explain photosynthesis to a ten-year-old in two sentences.",
    "hi",
]


def test_batched_equals_one_by_one_real_model(smollm2):
    model, tok, _ = smollm2
    batched = Generator(model, tok, max_new_tokens=20, batch_size=8).generate(PROMPTS)
    single = Generator(model, tok, max_new_tokens=20, batch_size=1)
    one_by_one = [single.generate([p])[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in one_by_one]
    assert all(g.new_tokens > 0 for g in batched)


def test_batched_equals_one_by_one_tiny_model(tiny_llama_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    gen = Generator(model, tok, max_new_tokens=12, batch_size=3)
    batched = [g.text for g in gen.generate(PROMPTS)]
    assert batched == [Generator(model, tok, max_new_tokens=12, batch_size=1).generate([p])[0].text
                       for p in PROMPTS]
    assert gen.stats.new_tokens > 0 and gen.stats.batches == 2


def test_empty_and_very_long_prompts(tiny_llama_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    gen = Generator(model, tok, max_new_tokens=4, batch_size=4, max_prompt_tokens=64)
    out = gen.generate(["", "word " * 5000, "short"])
    assert len(out) == 3
    assert out[1].truncated and not out[0].truncated and not out[2].truncated
    assert out[1].prompt_tokens < 64 + 40
