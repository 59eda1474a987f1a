"""Shared fixtures: the offline data folder, the real SmolLM2 (session-scoped), tiny random Llamas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("SAFEFED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "advbench").is_dir():
        pytest.fail(f"offline data not found at {DATA_DIR}: set SAFEFED_DATA")
    return DATA_DIR


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer, resolved) of the real SmolLM2-135M-Instruct, loaded once per session."""
    from safefed.models import load_causal_lm

    return load_causal_lm("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The folder of SmolLM2-135M-Instruct (converted once), without loading the model."""
    from safefed.models import resolve

    return resolve("smollm2-135m-instruct").path


# a test that uses one of these fixtures runs a real model: it is marked `slow` (pytest -m "not slow")
REAL_MODEL_FIXTURES = {"smollm2", "guard", "default_filter"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def make_tiny_llama(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory, smollm2_path) -> Path:
    return make_tiny_llama(smollm2_path, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def stub_endpoint():
    """A local OpenAI-compatible server (tests/stub_server.py) on a free port; its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    from stub_server import StubChat

    StubChat.seen, StubChat.fail_first, StubChat.reply = [], 0, None
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
