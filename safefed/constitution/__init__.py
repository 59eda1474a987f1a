"""YAML constitutions and the critique-and-revise step (Constitutional AI, Bai et al. 2022)."""

from __future__ import annotations

from .schema import Constitution, LoadedConstitution, Principle, Rule, load_constitution

__all__ = ["Constitution", "LoadedConstitution", "Principle", "Rule", "load_constitution"]
