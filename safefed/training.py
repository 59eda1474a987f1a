"""Short LoRA supervised fine-tuning on (prompt, response) pairs, for CPU-sized runs.

Loss is on the response tokens only (the prompt is masked), examples are rendered with the chat
template and kept short (``max_length`` tokens), batches are drawn by a seeded shuffle. The server-side
constitutional round, ``safefed align`` and the federated clients share this one function.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
DECISION_TOKENS = 4  # the answer tokens where the model decides to answer or to refuse


@dataclass
class TrainStats:
    """What a training run did (recorded in reports)."""

    steps: int
    examples: int
    seconds: float
    lr: float
    batch_size: int
    r: int
    alpha: int
    target_modules: list[str]
    seed: int
    max_length: int
    losses: list[float] = field(default_factory=list)
    truncated: int = 0
    continued_adapter: bool = False
    layers_from: int | None = None
    decision_weight: float = 1.0

    @property
    def s_per_step(self) -> float:
        return self.seconds / self.steps if self.steps else 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["s_per_step"] = round(self.s_per_step, 3)
        out["loss_first"] = self.losses[0] if self.losses else None
        out["loss_last"] = self.losses[-1] if self.losses else None
        return out


def _pair(p: dict | tuple) -> tuple[str, str]:
    if isinstance(p, dict):
        return str(p["prompt"]), str(p["response"])
    return str(p[0]), str(p[1])


def encode_pair(tok, prompt: str, response: str, max_length: int, system_prompt: str | None = None
                ) -> tuple[list[int], list[int], bool]:
    """(input_ids, labels, truncated): chat-formatted, labels ``-100`` on the prompt part."""
    budget = max(8, max_length // 2)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    truncated = len(p_ids) > budget
    if truncated:
        prompt = tok.decode(p_ids[:budget])
    user = [{"role": "user", "content": prompt}]
    if system_prompt:
        user.insert(0, {"role": "system", "content": system_prompt})
    if getattr(tok, "chat_template", None):
        head = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True)
        head = list(head if isinstance(head, list) else head["input_ids"])
        tail = tok(response, add_special_tokens=False)["input_ids"]
        end = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else tok.eos_token_id
        tail = [*tail, end]
    else:
        head = tok(prompt + "\n")["input_ids"]
        tail = [*tok(response, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    room = max_length - len(head)
    if room < 4:
        head, room = head[-(max_length - 4):], 4
    if len(tail) > room:
        tail, truncated = tail[:room], True
    return head + tail, [-100] * len(head) + tail, truncated


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, lab) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def lora_layers(model, layers_from: int | None) -> list[int] | None:
    """The decoder layer indices a LoRA from ``layers_from`` on covers (None: all layers)."""
    from .errors import UserError

    if layers_from is None:
        return None
    n = model.config.num_hidden_layers
    if not 0 <= layers_from < n:
        raise UserError(f"layers_from {layers_from}: the model has {n} decoder layers (0 to {n - 1})")
    return list(range(layers_from, n))


def train_lora(model, tok, pairs: Sequence[dict | tuple], *, steps: int = 50, lr: float = 5e-4,
               batch_size: int = 8, r: int = 8, alpha: int = 16, dropout: float = 0.05,
               target_modules: Sequence[str] = DEFAULT_TARGETS, seed: int = 0, max_length: int = 96,
               system_prompt: str | None = None, adapter_name: str = "default", layers_from: int | None = None,
               decision_weight: float = 1.0, decision_tokens: int = DECISION_TOKENS,
               progress: Callable[[int, float], None] | None = None):
    """Fine-tune a LoRA adapter on ``pairs`` (``{"prompt", "response"}`` or tuples) for ``steps`` steps.

    A plain model is wrapped in a new adapter; a ``PeftModel`` keeps training its active adapter (a
    round of training on top of the global adapter). ``layers_from``: a new adapter touches only the
    decoder layers from this index on (the lower ones stay the base model's). ``decision_weight``: the
    first ``decision_tokens`` of each answer weigh this much in the loss (:func:`weighted_loss`). Returns
    ``(peft_model, TrainStats)``; the model is left in eval mode. ``progress(step, loss)`` is called after each step.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if not pairs:
        raise ValueError("train_lora needs at least one (prompt, response) pair")
    torch.manual_seed(seed)
    continued = isinstance(model, PeftModel)
    if continued:
        for name, param in model.named_parameters():
            param.requires_grad = "lora_" in name and f".{model.active_adapter}." in name
    else:
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                         layers_to_transform=lora_layers(model, layers_from), task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg, adapter_name=adapter_name)
    encoded, truncated = [], 0
    for p in pairs:
        ids, labels, cut = encode_pair(tok, *_pair(p), max_length=max_length, system_prompt=system_prompt)
        encoded.append((ids, labels))
        truncated += cut
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / warmup))
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    device = next(model.parameters()).device
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = []
        while len(batch) < min(batch_size, len(encoded)):
            if not order:
                order = list(range(len(encoded)))
                rng.shuffle(order)
            batch.append(encoded[order.pop()])
        inputs = {k: v.to(device) for k, v in _collate(batch, pad_id).items()}
        if decision_weight == 1.0:  # the model's own loss: unweighted runs stay bit-identical to before
            loss = model(**inputs).loss
        else:
            labels = inputs.pop("labels")
            loss = weighted_loss(model(**inputs).logits, labels, decision_weight, decision_tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
        if progress:
            progress(step + 1, losses[-1])
    seconds = time.perf_counter() - start
    model.eval()
    stats = TrainStats(steps=steps, examples=len(encoded), seconds=round(seconds, 2), lr=lr,
                       batch_size=batch_size, r=r, alpha=alpha, target_modules=list(target_modules),
                       seed=seed, max_length=max_length, losses=losses, truncated=truncated,
                       continued_adapter=continued, layers_from=None if continued else layers_from,
                       decision_weight=decision_weight)
    return model, stats


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weight: float, first: int) -> torch.Tensor:
    """Next-token cross-entropy over the response tokens, the first ``first`` of each response weighted
    ``weight`` (the tokens where the model decides to answer or to refuse)."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    on = labels != -100
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    position = torch.cumsum(on.long(), dim=1)  # 1 for the first response token, 2 for the next, ...
    w = torch.where(on & (position <= first), weight, on.float())
    return (ce * w).sum() / w.sum()


def save_adapter(model, out: str | Path, base_model: str | None = None) -> Path:
    """Save the active LoRA adapter (fp32 safetensors) to ``out``. ``base_model`` (an HF id or alias)
    replaces the machine-local path PEFT records, so the folder names its base wherever it is copied;
    PEFT's generated model card (a template with empty fields) is left out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)
    if base_model is not None:
        config = out / "adapter_config.json"
        fields = json.loads(config.read_text(encoding="utf-8"))
        fields["base_model_name_or_path"] = base_model
        config.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
