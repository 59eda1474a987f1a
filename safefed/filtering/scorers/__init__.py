"""Scorers behind one protocol, picked by ``type`` in a policy; the built-in ones register on import."""

from . import detoxify_scorer, embedding, guard, hf_classifier, lexicon, pair_classifier  # noqa: F401 - registration
from .base import Scorer, ScoreRow, build_scorer, register_scorer, scorer_entry, scorer_types, texts_for

__all__ = [
    "ScoreRow",
    "Scorer",
    "build_scorer",
    "register_scorer",
    "scorer_entry",
    "scorer_types",
    "texts_for",
]
