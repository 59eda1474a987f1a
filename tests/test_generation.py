"""Batched generation equals one-by-one greedy generation; odd prompts are handled."""

from __future__ import annotations

import pytest

from safefed.generation import MIN_SHARED_PREFIX, Generator

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves falling slowly in the park.",
    "List three prime numbers.",
    "Explain photosynthesis to a ten-year-old in two sentences.",
    "hi",
]


def test_batched_equals_one_by_one_real_model(smollm2):
    model, tok, _ = smollm2
    gen = Generator(model, tok, max_new_tokens=20, batch_size=8)
    batched = gen.generate(PROMPTS)
    single = Generator(model, tok, max_new_tokens=20, batch_size=1, prefix_cache=False)
    one_by_one = [single.generate([p])[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in one_by_one]
    assert all(g.new_tokens > 0 for g in batched)
    # the chat template's shared system prompt + role header was run once, not once per row
    assert gen.stats.cached_prompt_tokens >= len(PROMPTS) * MIN_SHARED_PREFIX
    assert single.stats.cached_prompt_tokens == 0


def lora_model(tiny_llama_path, names=("first", "second"), **lora):
    """The tiny model with LoRA adapters ``names`` whose B is non-zero, so each changes the keys, values
    and answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"],
                     task_type="CAUSAL_LM", **lora)
    model = get_peft_model(base, cfg, adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.eval(), tok


def one_at_a_time(model, tok, prompts, names, max_new_tokens=10):
    single = Generator(model, tok, max_new_tokens=max_new_tokens, batch_size=1, prefix_cache=False)
    out = []
    for p, name in zip(prompts, names, strict=True):
        model.set_adapter(name)
        out.append(single.generate([p])[0].text)
    return out


def test_shared_prefix_cache_with_mixed_adapters(tiny_llama_path):
    """Rows carrying different LoRA adapters get each adapter's own prefix cache: the same text as
    without the cache, and as one adapter at a time, one prompt at a time."""
    model, tok = lora_model(tiny_llama_path)
    names = ["first", "second"] * len(PROMPTS)
    prompts = [p for p in PROMPTS for _ in range(2)]
    cached = Generator(model, tok, max_new_tokens=10, batch_size=4)
    texts = [g.text for g in cached.generate(prompts, adapter_names=names)]
    plain = Generator(model, tok, max_new_tokens=10, batch_size=4, prefix_cache=False)
    assert texts == [g.text for g in plain.generate(prompts, adapter_names=names)]
    assert texts == one_at_a_time(model, tok, prompts, names)
    assert len(set(texts[0::2]) ^ set(texts[1::2])) > 0  # the adapters really answer differently
    assert cached.stats.cached_prompt_tokens > 0 and plain.stats.cached_prompt_tokens == 0


def test_stacked_adapters_equal_one_at_a_time(tiny_llama_path):
    """generate_per_adapter (every adapter on the same prompts, LoRA deltas stacked) gives each adapter's
    own greedy text, with and without the prefix cache, for batch sizes below, at, and not a multiple of
    the adapter count, and for a single adapter; the model's adapters are as before afterwards."""
    from safefed.lora_stack import LoRAStack

    names = ["first", "second", "third"]
    model, tok = lora_model(tiny_llama_path, names)
    assert LoRAStack.build(model, names) is not None
    expected = [one_at_a_time(model, tok, PROMPTS, [n] * len(PROMPTS)) for n in names]
    assert len({tuple(e) for e in expected}) == 3  # the adapters really answer differently
    for batch_size, cache in ((2, True), (3, True), (7, True), (64, True), (4, False)):
        gen = Generator(model, tok, max_new_tokens=10, batch_size=batch_size, prefix_cache=cache)
        got = gen.generate_per_adapter(PROMPTS, names)
        assert [[g.text for g in row] for row in got] == expected, (batch_size, cache)
        assert (gen.stats.cached_prompt_tokens > 0) == cache
    alone = Generator(model, tok, max_new_tokens=10, batch_size=4).generate_per_adapter(PROMPTS, ["second"])
    assert [g.text for g in alone[0]] == expected[1]
    assert Generator(model, tok).generate_per_adapter([], names) == [[], [], []]
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert not any(m._forward_hooks for m in model.modules())  # the stack's hooks are gone afterwards
    assert model.active_adapters == ["third"] and not q_proj.disable_adapters  # adapters back on


def test_stack_cleans_up_and_refuses_what_it_cannot_stack(tiny_llama_path):
    """An error inside the stack leaves no hook and the adapters on; LoRA variants the stack does not
    compute (DoRA, LoRA bias) are refused and run one adapter at a time instead, with the same text."""
    from safefed.lora_stack import LoRAStack

    model, tok = lora_model(tiny_llama_path)
    with pytest.raises(RuntimeError), LoRAStack.build(model, ["first", "second"]):
        raise RuntimeError("inside")
    assert not any(m._forward_hooks for m in model.modules())
    assert not model.base_model.model.model.layers[0].self_attn.q_proj.disable_adapters

    for variant in ({"use_dora": True}, {"lora_bias": True}):
        other, tok = lora_model(tiny_llama_path, **variant)
        assert LoRAStack.build(other, ["first", "second"]) is None, variant
        expected = [one_at_a_time(other, tok, PROMPTS, [n] * len(PROMPTS)) for n in ("first", "second")]
        other.set_adapter("second")
        got = Generator(other, tok, max_new_tokens=10, batch_size=4).generate_per_adapter(PROMPTS, ["first", "second"])
        assert [[g.text for g in row] for row in got] == expected
        assert other.active_adapters == ["second"]  # restored


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
