"""Chat LLM backends for critique-and-revise behind one small protocol, picked by name.

``hf``: a local Hugging Face causal LM (alias, id or folder; batched via :class:`Generator`).
``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, llama.cpp server, ...),
requests sent concurrently. Register your own with :func:`register_backend`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ..errors import UserError
from ..generation import Generation, GenerationStats, Generator

Message = dict[str, str]
Chat = Sequence[Message]


class ChatBackend(Protocol):
    """``chat(conversations)`` -> the next assistant turn for each conversation, in order."""

    name: str
    stats: GenerationStats

    def chat(self, conversations: Sequence[Chat], progress: Callable[[int], None] | None = None,
             max_new_tokens: int | None = None) -> list[Generation]: ...

    def describe(self) -> dict: ...


_BACKENDS: dict[str, Callable[..., ChatBackend]] = {}


def register_backend(name: str) -> Callable[[Callable[..., ChatBackend]], Callable[..., ChatBackend]]:
    """Decorator: make a backend factory available by ``name``."""

    def wrap(factory: Callable[..., ChatBackend]) -> Callable[..., ChatBackend]:
        _BACKENDS[name] = factory
        return factory

    return wrap


def make_backend(name: str, **kwargs) -> ChatBackend:
    if name not in _BACKENDS:
        raise UserError(f"unknown LLM backend {name!r} (known: {', '.join(sorted(_BACKENDS))})")
    return _BACKENDS[name](**kwargs)


@register_backend("hf")
class HFBackend:
    """A local causal LM (optionally with a LoRA adapter), batched, greedy by default."""

    name = "hf"

    def __init__(self, model=None, tokenizer=None, *, model_name: str | None = None,
                 adapter: str | None = None, max_new_tokens: int = 96, batch_size: int = 8,
                 max_prompt_tokens: int = 192, info: dict | None = None) -> None:
        if model is None:
            from ..models import DEFAULT_MODEL, load_causal_lm

            model, tokenizer, resolved = load_causal_lm(model_name or DEFAULT_MODEL, adapter=adapter)
            info = resolved.provenance() | {"adapter": str(adapter) if adapter else None}
        self.generator = Generator(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                   max_prompt_tokens=max_prompt_tokens)
        self.info = info or {"path": getattr(model.config, "_name_or_path", None)}

    @property
    def stats(self) -> GenerationStats:
        return self.generator.stats

    def chat(self, conversations: Sequence[Chat], progress: Callable[[int], None] | None = None,
             max_new_tokens: int | None = None) -> list[Generation]:
        g = self.generator
        default = g.max_new_tokens
        g.max_new_tokens = max_new_tokens or default
        try:
            return g.generate_chats(conversations, progress=progress)
        finally:
            g.max_new_tokens = default

    def describe(self) -> dict:
        g = self.generator
        return {"backend": self.name, "model": self.info, "max_new_tokens": g.max_new_tokens,
                "batch_size": g.batch_size, "greedy": not g.do_sample}


@register_backend("openai")
class OpenAIBackend:
    """An OpenAI-compatible chat endpoint: ``url`` is the base (``http://host:8000/v1``).

    The API key, if the server needs one, is read from ``$SAFEFED_ENDPOINT_KEY`` (or
    ``$OPENAI_API_KEY``); it is never written to reports.
    """

    name = "openai"

    def __init__(self, url: str, *, model_name: str | None = None, max_new_tokens: int = 96,
                 concurrency: int = 8, timeout_s: float = 60.0, retries: int = 2,
                 temperature: float = 0.0, system_prompt: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"endpoint {url!r}: expected an http:// or https:// URL")
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model_name = model_name or "default"
        self.max_new_tokens = max_new_tokens
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.retries = retries
        self.temperature = temperature
        self.system_prompt = system_prompt
        self.batch_size = self.concurrency
        self.max_prompt_tokens = None  # the server decides
        self.stats = GenerationStats()
        self._key = os.environ.get("SAFEFED_ENDPOINT_KEY") or os.environ.get("OPENAI_API_KEY")

    def _post(self, messages: Chat, max_new_tokens: int | None = None) -> Generation:
        body = json.dumps({"model": self.model_name, "messages": list(messages),
                           "max_tokens": max_new_tokens or self.max_new_tokens,
                           "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - user's endpoint
                    payload = json.loads(resp.read().decode("utf-8"))
                return self._parse(payload)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
                last = f"unexpected reply ({exc.__class__.__name__}: {exc})"
                break
            time.sleep(min(4.0, 0.5 * 2**attempt))
        raise UserError(f"endpoint {self.url}: {last}")

    @staticmethod
    def _parse(payload: dict) -> Generation:
        text = payload["choices"][0]["message"]["content"] or ""
        usage = payload.get("usage") or {}
        new = int(usage.get("completion_tokens") or len(text.split()))
        return Generation(text.strip(), int(usage.get("prompt_tokens") or 0), new)

    def chat(self, conversations: Sequence[Chat], progress: Callable[[int], None] | None = None,
             max_new_tokens: int | None = None) -> list[Generation]:
        start = time.perf_counter()
        results: list[Generation] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for g in pool.map(lambda c: self._post(c, max_new_tokens), conversations):
                results.append(g)
                self.stats.new_tokens += g.new_tokens
                self.stats.prompt_tokens += g.prompt_tokens
                if progress:
                    progress(1)
        self.stats.batches += 1
        self.stats.seconds += time.perf_counter() - start
        return results

    def generate(self, prompts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[Generation]:
        """One answer per user prompt (the :class:`~safefed.generation.Generator` interface of the eval)."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return self.chat([[*system, {"role": "user", "content": p}] for p in prompts], progress)

    def describe(self) -> dict:
        return {"backend": self.name, "url": self.url, "model": self.model_name,
                "max_new_tokens": self.max_new_tokens, "concurrency": self.concurrency,
                "temperature": self.temperature}
