"""safefed: safety middleware for federated fine-tuning of LLMs.

Rooms: ``models`` (model resolution), ``data`` (data sets by name), ``splits`` (seeded data roles),
``generation`` (batched chat generation), ``scoring`` (encoders, heads, guard prompts shared by judges
and filters), ``filtering`` (the client-side filter), ``constitution`` (critique and revise),
``federated`` (the gate, the plain-loop and Flower integration), ``evaluation`` (suites, judges,
runner), ``cli`` (the ``safefed`` command).

The main objects are importable from here, lazily (``import safefed`` loads no torch)::

    from safefed import SafetyFilter, ClientSafety, UpdateGate, SafeAggregator, SafetyGate, safety_mod, evaluate
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SafetyFilter": "safefed.filtering.engine",
    "ClientSafety": "safefed.federated.client",
    "UpdateGate": "safefed.federated.gate",
    "SafeAggregator": "safefed.federated.rounds",
    "SafetyGate": "safefed.federated.flower",
    "safety_mod": "safefed.federated.flower",
    "evaluate": "safefed.evaluation.runner:evaluate_model",
}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .evaluation.runner import evaluate_model as evaluate  # noqa: F401
    from .federated.client import ClientSafety  # noqa: F401
    from .federated.flower import SafetyGate, safety_mod  # noqa: F401
    from .federated.gate import UpdateGate  # noqa: F401
    from .federated.rounds import SafeAggregator  # noqa: F401
    from .filtering.engine import SafetyFilter  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'safefed' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
