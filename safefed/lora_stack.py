"""K LoRA adapters of one PEFT model applied to one batch as a stack: two batched matmuls per layer.

PEFT's mixed-adapter batches (``adapter_names``) run every adapter's rows as a sub-batch of its own in
every LoRA layer: a gather, two small matmuls and a scatter per adapter, per layer, per decoding step,
which with 9 adapters on a CPU made the gate's generation about 30 % slower than the same rows with one
adapter. When every adapter answers the same prompts, the batch can instead be laid out adapter-major in
K equal groups; each LoRA layer then reshapes its input to ``(K, rows, features)`` and adds
``scaling * x A^T B^T`` for all K adapters in two ``bmm`` calls.

Used by :meth:`safefed.generation.Generator.generate_per_adapter`; :meth:`LoRAStack.build` returns None
(and the caller runs one adapter at a time) for anything but plain LoRA on linear layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class LoRAStack:
    """While entered: the model's PEFT adapters are switched off and every LoRA layer adds the stacked
    deltas of ``adapters`` (in that order) to its base output. The batch must hold K equal groups of
    rows, adapter-major (rows ``g * P .. g * P + P - 1`` belong to adapter ``g``), and every LoRA layer
    must see the batch in its leading dimension (true of attention and MLP projections; not of layers
    fed routed tokens, such as mixture-of-experts experts)."""

    def __init__(self, model, layers: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        self.model = model
        self.layers = layers  # (LoRA module, A^T (K, in, r), B^T (K, r, out), scaling (K, 1, 1) in fp32)
        self.k = layers[0][1].shape[0]
        self._handles: list = []
        self._disabled = None

    @classmethod
    def build(cls, model, adapters: Sequence[str]) -> LoRAStack | None:
        """The stack of ``adapters`` (names of adapters loaded in ``model``), or None where it does not
        apply: not a PEFT model, a model in training mode (LoRA dropout is not stacked), extra trained
        modules (``modules_to_save``, trainable tokens: switching the adapters off would drop them), or
        a LoRA layer that is not plain LoRA on a linear layer (DoRA and other variants, LoRA bias, merged
        weights, embeddings, a missing adapter, ranks that differ)."""
        if not adapters or not hasattr(model, "disable_adapter") or model.training:
            return None
        from peft.tuners.lora.layer import Linear as LoraLinear
        from peft.tuners.lora.layer import LoraLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        layers = []
        for module in model.modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                return None
            if not isinstance(module, LoraLayer):
                continue
            if type(module) is not LoraLinear or module.merged or any(
                    a not in module.lora_A or a in getattr(module, "lora_variant", {})
                    or getattr(module, "lora_bias", {}).get(a, False) for a in adapters):
                return None
            if len({module.lora_A[a].weight.shape for a in adapters}) > 1:
                return None
            a_t = torch.stack([module.lora_A[a].weight.t() for a in adapters])
            b_t = torch.stack([module.lora_B[a].weight.t() for a in adapters])
            scaling = torch.tensor([float(module.scaling[a]) for a in adapters], device=a_t.device).view(-1, 1, 1)
            layers.append((module, a_t, b_t, scaling))
        return cls(model, layers) if layers else None

    def _hook(self, a_t: torch.Tensor, b_t: torch.Tensor, scaling: torch.Tensor):
        def add_delta(module, args, output):
            x = args[0]
            if x.shape[0] % self.k:
                raise ValueError(f"a stacked LoRA batch needs {self.k} equal adapter groups, got {x.shape[0]} rows")
            flat = x.to(a_t.dtype).reshape(self.k, -1, x.shape[-1])
            delta = torch.bmm(torch.bmm(flat, a_t), b_t) * scaling
            return (output + delta.reshape(*output.shape[:-1], -1)).to(output.dtype)
        return add_delta

    def __enter__(self) -> LoRAStack:
        self._disabled = self.model.disable_adapter()
        self._disabled.__enter__()
        self._handles = [m.register_forward_hook(self._hook(a, b, s)) for m, a, b, s in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._disabled.__exit__(*exc)
