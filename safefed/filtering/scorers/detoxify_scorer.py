"""``detoxify``: the real Detoxify library (Jigsaw toxicity classifiers) as a scorer.

Named models (``original``, ``unbiased``, ``multilingual``, ``original-small``, ``unbiased-small``)
download from GitHub releases when the network allows; offline, point ``checkpoint`` at a file in
Detoxify's own format: ``{"config": {"arch": {"args": {"model_type": DIR, "model_name": ...,
"tokenizer_name": ..., "num_classes": N}}, "dataset": {"args": {"classes": [...]}}}, "state_dict": ...}``
where ``DIR`` is a local folder with the HF config and tokenizer. :func:`make_checkpoint` builds one
(randomly initialised) for tests and for measuring speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ...errors import UserError
from .base import Reads, ScoreRow, register_scorer, texts_for

DETOXIFY_CLASSES = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]


class DetoxifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_type: str = "original"
    checkpoint: str | None = None
    huggingface_config_path: str | None = None
    device: str = "cpu"
    batch_size: int = Field(32, ge=1)
    max_chars: int = Field(2000, ge=1, description="texts are cut to this many characters")


class DetoxifyScorer:
    """Detoxify's sigmoid class scores, one category per Detoxify class.

    Detoxify's own loader unpickles its checkpoints (``torch.load(..., weights_only=False)``), so a policy
    naming a crafted file could run code. This scorer reads checkpoints itself with ``weights_only=True``
    (tensors and plain containers only) and refuses anything else, then builds Detoxify's model from the
    checkpoint's config (:func:`load_detoxify`).
    """

    def __init__(self, opts: DetoxifyOptions, reads: Reads = "response", policy=None) -> None:
        checkpoint = None
        if opts.checkpoint:
            checkpoint = Path(opts.checkpoint).expanduser()
            if not checkpoint.is_absolute() and policy is not None and policy.path is not None:
                checkpoint = policy.path.parent / checkpoint
            if not checkpoint.is_file():
                raise UserError(f"{opts.checkpoint}: Detoxify checkpoint not found")
        self.model = load_detoxify(opts.model_type, checkpoint, opts.device, opts.huggingface_config_path)
        self.opts = opts
        self.reads = reads
        self.name = "detoxify"
        self.categories = list(self.model.class_names)
        self.source = str(checkpoint) if checkpoint else opts.model_type

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        texts = [t[: self.opts.max_chars] for t in texts_for(self.reads, prompts, responses)]
        rows: list[ScoreRow] = [dict.fromkeys(self.categories, 0.0) for _ in texts]
        unique = list(dict.fromkeys(t for t in texts if t.strip()))
        found: dict[str, ScoreRow] = {}
        for b in range(0, len(unique), self.opts.batch_size):
            chunk = unique[b : b + self.opts.batch_size]
            res = self.model.predict(chunk)
            for j, t in enumerate(chunk):
                found[t] = {c: float(res[c][j]) if len(chunk) > 1 else float(res[c]) for c in self.categories}
        for i, t in enumerate(texts):
            if t in found:
                rows[i] = found[t]
        return rows

    def describe(self) -> dict:
        return {"type": "detoxify", "reads": self.reads, "model": self.source, "classes": self.categories}


# Detoxify's names for its classes -> the ones its predictions use
_CLASS_NAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
MAX_CHECKPOINT_BYTES = 4_000_000_000


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """A Detoxify checkpoint loaded with ``weights_only=True``; a file that needs more is refused."""
    import pickle

    import torch

    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise UserError(f"{path}: Detoxify checkpoint larger than {MAX_CHECKPOINT_BYTES} bytes")
    try:
        loaded = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: refused: not loadable with torch.load(weights_only=True) ({first}); safefed "
                        "loads only tensors and plain containers, never arbitrary pickled objects") from None
    args = loaded.get("config", {}).get("arch", {}).get("args") if isinstance(loaded, dict) else None
    classes = (loaded.get("config", {}).get("dataset", {}).get("args", {}).get("classes")
               if isinstance(loaded, dict) else None)
    if not isinstance(args, dict) or not isinstance(loaded.get("state_dict"), dict) or not isinstance(classes, list):
        raise UserError(f"{path}: not a Detoxify checkpoint (needs config.arch.args, config.dataset.args.classes "
                        "and state_dict)")
    model_name, tokenizer_name = str(args.get("model_name", "")), str(args.get("tokenizer_name", ""))
    if not model_name.endswith("ForSequenceClassification") or not tokenizer_name.endswith(("Tokenizer",
                                                                                           "TokenizerFast")):
        raise UserError(f"{path}: Detoxify checkpoint names model {model_name!r} / tokenizer {tokenizer_name!r}; "
                        "expected a transformers *ForSequenceClassification and *Tokenizer class")
    return loaded


def load_detoxify(model_type: str, checkpoint: Path | None, device: str = "cpu",
                  huggingface_config_path: str | None = None):
    """A ``detoxify.Detoxify`` built from a checkpoint read by :func:`read_checkpoint`: a local file, or
    the named model's release file (downloaded into torch's hub cache when the network allows)."""
    import torch
    from detoxify.detoxify import MODEL_URLS, Detoxify, get_model_and_tokenizer

    if checkpoint is None:
        if model_type not in MODEL_URLS:
            raise UserError(f"detoxify: unknown model_type {model_type!r} (known: {', '.join(MODEL_URLS)})")
        url = MODEL_URLS[model_type]
        checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not checkpoint.is_file():
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(checkpoint), progress=False)
            except OSError as exc:
                raise UserError(f"detoxify: cannot download {model_type!r} ({exc.__class__.__name__}); offline, "
                                "give `checkpoint:` a local Detoxify checkpoint") from None
    loaded = read_checkpoint(checkpoint, device)
    try:
        model, tokenizer = get_model_and_tokenizer(**loaded["config"]["arch"]["args"],
                                                   state_dict=loaded["state_dict"],
                                                   huggingface_config_path=huggingface_config_path)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"detoxify: cannot build the model of {checkpoint} ({exc.__class__.__name__}: "
                        f"{str(exc)[:200]})") from None
    detox = Detoxify.__new__(Detoxify)  # Detoxify.__init__ would unpickle the file again
    detox.model, detox.tokenizer, detox.device = model.to(device), tokenizer, device
    detox.class_names = [_CLASS_NAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    return detox


def make_checkpoint(
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate_size: int = 64,
    classes: Sequence[str] = DETOXIFY_CLASSES,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised BERT checkpoint in Detoxify's format; returns the ``.ckpt`` path.

    ``tokenizer_dir`` is any BERT WordPiece tokenizer folder (all-MiniLM-L6-v2's has bert-base-uncased's
    vocabulary). ``hidden_size=768, layers=12, heads=12, intermediate_size=3072`` gives Detoxify
    ``original``'s architecture (bert-base-uncased), for measuring its speed.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    arch = out / "arch"
    arch.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(arch)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate_size,
        num_labels=len(classes),
        max_position_embeddings=512,
    )
    cfg.save_pretrained(arch)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    ckpt = out / "detoxify-random.ckpt"
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        "model_type": str(arch),
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(classes),
                    }
                },
                "dataset": {"args": {"classes": list(classes)}},
            },
            "state_dict": model.state_dict(),
        },
        ckpt,
    )
    return ckpt


register_scorer("detoxify", DetoxifyOptions)(DetoxifyScorer)
