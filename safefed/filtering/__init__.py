"""Client-side safety filter for training data: scorers, YAML policies, the filter, and its training.

from safefed.filtering import SafetyFilter
f = SafetyFilter.from_yaml("default")
result = f.apply(records)                      # list of dicts, DataFrame, datasets.Dataset
f.apply("train.jsonl", out="filtered/")        # streamed: kept.jsonl, quarantine.jsonl, summary.json
f.check_pairs(prompts, responses)              # -> list[Decision]
"""

from .engine import Decision, FilterResult, SafetyFilter
from .policy import Policy, load_policy
from .scorers import Scorer, register_scorer, scorer_types

__all__ = [
    "Decision",
    "FilterResult",
    "Policy",
    "SafetyFilter",
    "Scorer",
    "load_policy",
    "register_scorer",
    "scorer_types",
]
