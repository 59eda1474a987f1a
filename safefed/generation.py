"""Batched chat generation: chat template, left padding, length-sorted batches, greedy by default.

Batched and one-by-one greedy generation give the same text (tested). Rows may carry different LoRA
adapters (``adapter_names``); when every adapter answers the same prompts (the gate judging several
clients' updates), ``generate_per_adapter`` stacks the adapters' LoRA deltas instead (``lora_stack``).
The token prefix every prompt of a call shares (the chat template's system prompt and role header) is
run once per adapter and its key/value cache reused by every row (``prefix_cache``; same text, tested).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .lora_stack import LoRAStack

MIN_SHARED_PREFIX = 8  # tokens; a shorter shared prefix is not worth a separate forward pass


def left_padded(rows: Sequence[Sequence[int]], pad: int, prefix: Sequence[int] = ()
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids laid out as [prefix | left padding | row] per row, and their attention mask."""
    n_prefix, width = len(prefix), max(len(r) for r in rows)
    input_ids = torch.full((len(rows), n_prefix + width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), n_prefix + width), dtype=torch.long)
    input_ids[:, :n_prefix] = torch.tensor(list(prefix), dtype=torch.long)
    mask[:, :n_prefix] = 1
    for row, own in enumerate(rows):
        input_ids[row, n_prefix + width - len(own):] = torch.tensor(list(own), dtype=torch.long)
        mask[row, n_prefix + width - len(own):] = 1
    return input_ids, mask


@dataclass
class Generation:
    """One response with its token counts; ``truncated`` says the prompt was cut to fit."""

    text: str
    prompt_tokens: int
    new_tokens: int
    truncated: bool = False


@dataclass
class GenerationStats:
    seconds: float = 0.0
    prompt_tokens: int = 0
    new_tokens: int = 0
    batches: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens served from the shared-prefix cache

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


@dataclass
class Generator:
    """Generate chat responses from a causal LM (optionally PEFT-wrapped) in padded batches."""

    model: torch.nn.Module
    tokenizer: object
    max_new_tokens: int = 64
    batch_size: int = 16
    system_prompt: str | None = None
    chat_template: bool = True
    max_prompt_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    prefix_cache: bool = True
    stats: GenerationStats = field(default_factory=GenerationStats)

    def encode(self, prompt: str) -> tuple[list[int], bool]:
        """Token ids of one prompt in the chat template; over-long user text is cut (flagged)."""
        tok = self.tokenizer
        content_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        truncated = len(content_ids) > self.max_prompt_tokens
        if truncated:
            prompt = tok.decode(content_ids[: self.max_prompt_tokens])
        if not self.chat_template or getattr(tok, "chat_template", None) is None:
            return tok(prompt)["input_ids"], truncated
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):
            ids = ids["input_ids"]
        return list(ids), truncated

    def encode_messages(self, messages: Sequence[dict]) -> tuple[list[int], bool]:
        """Token ids of a multi-turn chat (``[{"role", "content"}, ...]``) ready for the next assistant
        turn; each message's content is cut to ``max_prompt_tokens`` (flagged). ``system_prompt`` is
        prepended unless the chat starts with its own system message."""
        tok = self.tokenizer
        truncated = False
        msgs = []
        for m in messages:
            ids = tok(m["content"], add_special_tokens=False)["input_ids"]
            content = m["content"]
            if len(ids) > self.max_prompt_tokens:
                truncated = True
                content = tok.decode(ids[: self.max_prompt_tokens])
            msgs.append({"role": m["role"], "content": content})
        if self.system_prompt and not (msgs and msgs[0]["role"] == "system"):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        if not self.chat_template or getattr(tok, "chat_template", None) is None:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs) + "\n\nassistant:"
            return tok(text)["input_ids"], truncated
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):
            ids = ids["input_ids"]
        return list(ids), truncated

    def _cache_kwarg(self) -> str:
        """The keyword ``generate`` takes a cache by: ``cache`` in transformers 5 (which deprecates
        ``past_key_values``), ``past_key_values`` before."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        cfg = getattr(self.model, "generation_config", None)
        eos = getattr(cfg, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return sorted(i for i in ids if i is not None)

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self._stop_ids()[0]

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], adapter_names: Sequence[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> list[Generation]:
        """Responses for ``prompts`` in input order; ``progress(n)`` is called after each batch."""
        return self.generate_encoded([self.encode(p) for p in prompts], adapter_names, progress)

    @torch.inference_mode()
    def generate_chats(self, conversations: Sequence[Sequence[dict]],
                       adapter_names: Sequence[str] | None = None,
                       progress: Callable[[int], None] | None = None) -> list[Generation]:
        """Next assistant turn for each multi-turn chat, batched like :meth:`generate`."""
        encoded = [self.encode_messages(c) for c in conversations]
        return self.generate_encoded(encoded, adapter_names, progress)

    def _shared_prefix(self, encoded: list[tuple[list[int], bool]]) -> int:
        """Length of the token prefix all rows share, leaving every row at least one token of its own;
        0 when caching is off or the prefix is too short to pay."""
        if not self.prefix_cache or not encoded:
            return 0
        seqs = [ids for ids, _ in encoded]
        limit = min(len(ids) for ids in seqs) - 1
        n = next((k for k in range(limit) if any(ids[k] != seqs[0][k] for ids in seqs)), max(limit, 0))
        return n if n >= MIN_SHARED_PREFIX else 0

    @torch.inference_mode()
    def generate_per_adapter(self, prompts: Sequence[str], adapters: Sequence[str],
                             progress: Callable[[int], None] | None = None) -> list[list[Generation]]:
        """Every adapter's responses to the same prompts: ``out[j][i]`` is ``adapters[j]`` on ``prompts[i]``.

        A batch holds whole prompts, each answered by every adapter, laid out adapter-major, so the
        adapters' LoRA deltas take two batched matmuls per layer (:class:`~safefed.lora_stack.LoRAStack`)
        instead of PEFT's per-adapter sub-batches; the same text (tested). Where the stack does not apply
        (LoRA variants such as DoRA, which PEFT's mixed batches refuse too) it runs one adapter at a time.
        """
        k, n = len(adapters), len(prompts)
        stack = LoRAStack.build(self.model, adapters)
        if stack is None:
            return self._one_adapter_at_a_time(prompts, adapters, progress)
        encoded = [self.encode(p) for p in prompts]
        order = sorted(range(n), key=lambda i: -len(encoded[i][0]))
        # k * size rows per batch (at least k): as many prompts as batch_size allows, spread evenly
        n_batches = -(-n // max(1, self.batch_size // k))
        size = max(1, -(-n // max(1, n_batches)))
        batches = [[g * n + i for g in range(k) for i in order[b:b + size]] for b in range(0, n, size)]
        with stack:  # row g * n + i is adapter g on prompt i
            gens = self._run(encoded * k, batches, lambda prefix: self._stacked_prefix_groups(prefix, k),
                             lambda i: i // n, lambda idx: {}, progress)
        return [gens[j * n:(j + 1) * n] for j in range(k)]

    def _one_adapter_at_a_time(self, prompts: Sequence[str], adapters: Sequence[str],
                               progress: Callable[[int], None] | None) -> list[list[Generation]]:
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            raise TypeError("generate_per_adapter needs a PeftModel that holds the named adapters")
        active = list(self.model.active_adapters)
        try:
            out = []
            for name in adapters:
                self.model.set_adapter(name)
                out.append(self.generate(prompts, progress=progress))
            return out
        finally:
            self.model.base_model.set_adapter(active if len(active) > 1 else active[0])

    def generate_encoded(self, encoded: list[tuple[list[int], bool]], adapter_names: Sequence[str] | None,
                          progress: Callable[[int], None] | None) -> list[Generation]:
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        batches = [order[b:b + self.batch_size] for b in range(0, len(order), self.batch_size)]
        names = list(adapter_names) if adapter_names is not None else [None] * len(encoded)

        def batch_kwargs(idx: list[int]) -> dict:
            return {"adapter_names": [names[i] for i in idx]} if adapter_names is not None else {}

        return self._run(encoded, batches, lambda prefix: self._adapter_prefix_groups(prefix, names),
                         names.__getitem__, batch_kwargs, progress)

    @torch.inference_mode()
    def next_token_logprobs(self, encoded: Sequence[Sequence[int]], token_ids: Sequence[int],
                            progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """log P(token | prompt) of ``token_ids`` at the position after each tokenised prompt: one forward
        pass per batch, left-padded, the prefix every prompt shares run once; float32 ``[n, len(token_ids)]``
        in input order. Batched and one-by-one agree (tested)."""
        device = next(self.model.parameters()).device
        rows = [list(ids) for ids in encoded]
        out = torch.empty((len(rows), len(token_ids)), dtype=torch.float32)
        if not rows:
            return out
        pad = self._pad_id()
        n_shared = self._shared_prefix([(r, False) for r in rows])
        prefix = rows[0][:n_shared]
        kv = self._prefix_kv(prefix) if prefix else None
        if kv is None:
            prefix = []
        n_prefix = len(prefix)
        wanted = torch.tensor(list(token_ids), device=device)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        start = time.perf_counter()
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            input_ids, mask = left_padded([rows[i][n_prefix:] for i in idx], pad, prefix)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs = {}
            if kv is not None:
                kwargs[self._cache_kwarg()] = DynamicCache(
                    [(k.expand(len(idx), *k.shape[1:]).contiguous(), v.expand(len(idx), *v.shape[1:]).contiguous())
                     for k, v in kv], config=self.model.config)
                self.stats.cached_prompt_tokens += n_prefix * len(idx)
            logits = self.model(input_ids=input_ids[:, n_prefix:].to(device), attention_mask=mask.to(device),
                                position_ids=positions[:, n_prefix:].to(device), use_cache=kv is not None,
                                **kwargs).logits[:, -1, :].float()
            out[idx] = torch.log_softmax(logits, dim=-1)[:, wanted].cpu()
            self.stats.prompt_tokens += sum(len(rows[i]) for i in idx)
            self.stats.batches += 1
            if progress:
                progress(len(idx))
        self.stats.seconds += time.perf_counter() - start
        return out

    def _prefix_kv(self, prefix: list[int], rows: int = 1, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The prefix's (key, value) per layer for ``rows`` identical rows; None if the model's cache is
        not a plain ``DynamicCache`` (sliding-window or hybrid caches are left to ``generate``)."""
        ids = torch.tensor([prefix] * rows, device=next(self.model.parameters()).device)
        out = self.model(input_ids=ids, use_cache=True, **kwargs)
        cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
        return [(layer.keys, layer.values) for layer in cache.layers] if type(cache) is DynamicCache else None

    def _adapter_prefix_groups(self, prefix: list[int], names: Sequence[str | None]) -> dict | None:
        """The shared prefix's (key, value) per layer, run once per adapter named in ``names``."""
        groups = {}
        for name in dict.fromkeys(names):
            groups[name] = self._prefix_kv(prefix, **({} if name is None else {"adapter_names": [name]}))
            if groups[name] is None:
                return None
        return groups

    def _stacked_prefix_groups(self, prefix: list[int], k: int) -> dict | None:
        """The shared prefix's (key, value) per layer for each of ``k`` stacked adapter groups, all run
        in one pass of ``k`` rows."""
        kv = self._prefix_kv(prefix, k)
        return None if kv is None else {g: [(key[g:g + 1], val[g:g + 1]) for key, val in kv] for g in range(k)}

    def _run(self, encoded: list[tuple[list[int], bool]], batches: list[list[int]],
             prefix_groups: Callable[[list[int]], dict | None], group_of: Callable[[int], object],
             batch_kwargs: Callable[[list[int]], dict], progress: Callable[[int], None] | None) -> list[Generation]:
        """Generate each batch of row ids (rows in the given order); results in row order. The shared
        prefix is run once per group (``prefix_groups``) and row i starts from its group's cache."""
        stop = self._stop_ids()
        pad = self._pad_id()
        results: list[Generation | None] = [None] * len(encoded)
        device = next(self.model.parameters()).device
        start = time.perf_counter()
        n_shared = self._shared_prefix(encoded)
        prefix = encoded[0][0][:n_shared] if n_shared else []
        groups = prefix_groups(prefix) if prefix else None
        if groups is None:
            prefix = []
        n_prefix = len(prefix)
        cache_kwarg = self._cache_kwarg()
        for idx in batches:
            # positions follow the mask, so the shared prefix's cache fits every row
            input_ids, mask = left_padded([encoded[i][0][n_prefix:] for i in idx], pad, prefix)
            kwargs = batch_kwargs(idx)
            if groups is not None:
                per_layer = zip(*(groups[group_of(i)] for i in idx), strict=True)
                kwargs[cache_kwarg] = DynamicCache(
                    [(torch.cat([k for k, _ in kv]), torch.cat([v for _, v in kv])) for kv in per_layer],
                    config=self.model.config)
                self.stats.cached_prompt_tokens += n_prefix * len(idx)
            if self.do_sample:
                kwargs.update(do_sample=True, temperature=self.temperature)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                      max_new_tokens=self.max_new_tokens, eos_token_id=stop, pad_token_id=pad,
                                      **kwargs)
            new = out[:, input_ids.shape[1]:]
            for row, i in enumerate(idx):
                toks = new[row].tolist()
                n = next((k + 1 for k, t in enumerate(toks) if t in stop), len(toks))
                text = self.tokenizer.decode(toks[:n], skip_special_tokens=True).strip()
                results[i] = Generation(text, len(encoded[i][0]), n, encoded[i][1])
                self.stats.prompt_tokens += len(encoded[i][0])
                self.stats.new_tokens += n
            self.stats.batches += 1
            if progress:
                progress(len(idx))
        self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]
