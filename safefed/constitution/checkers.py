"""Re-checking rewrites: ``check(prompts, responses) -> [Check(unsafe, categories)]`` behind one protocol.

``unsafe`` for a rewrite means it still complies with a harmful request (or is harmful itself).
The default is the project's safety filter (``safefed.filtering.SafetyFilter``, default policy) when it
is installed and its heads are built, else the learned ``classifier`` response judge; any judge name
works (``judge:refusal``). A judge does not know whether the prompt was harmful: as a checker it treats
every prompt it sees as harmful (the revise step's input is normally the filter's flagged rows).
The filter also names harm categories, which pick the principle under the ``category`` rule.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Check:
    unsafe: bool
    categories: list[str] = field(default_factory=list)


class SafetyChecker(Protocol):
    name: str

    def check(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Check]: ...

    def describe(self) -> dict: ...


class JudgeChecker:
    """A response judge as checker: unsafe = the judge's ``unsafe`` verdict (complied or harmful)."""

    def __init__(self, judge: str = "classifier") -> None:
        from ..evaluation.judges import make_judge

        self.judge = make_judge(judge)
        self.name = f"judge:{judge}"

    def check(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Check]:
        if not prompts:
            return []
        verdicts = self.judge.judge(list(prompts), list(responses))
        return [Check(bool(v.unsafe), list(v.categories)) for v in verdicts]

    def describe(self) -> dict:
        return {"checker": self.name, **self.judge.describe()}


class FilterChecker:
    """The safety filter's policy (issue 3) as checker: unsafe = the filter's decision."""

    def __init__(self, policy: str = "default") -> None:
        from ..filtering import SafetyFilter  # type: ignore[attr-defined]

        self.filter = SafetyFilter.from_yaml(policy)
        self.policy = policy
        self.name = f"filter:{policy}"

    def check(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Check]:
        if not prompts:
            return []
        return [Check(bool(d.unsafe), list(d.categories))
                for d in self.filter.check_pairs(list(prompts), list(responses))]

    def describe(self) -> dict:
        info = {"checker": self.name}
        describe = getattr(self.filter, "describe", None)
        if callable(describe):
            info.update(describe())
        return info


def filter_available() -> bool:
    """Whether ``safefed.filtering`` is installed and exposes ``SafetyFilter``."""
    if importlib.util.find_spec("safefed.filtering") is None:
        return False
    import safefed.filtering as filtering

    return hasattr(filtering, "SafetyFilter")


def make_checker(spec: str | None = None) -> SafetyChecker:
    """``None``/``auto``: the filter's default policy if available, else ``judge:classifier``;
    ``filter[:POLICY]`` or ``judge:NAME`` explicitly."""
    if spec in (None, "", "auto"):
        if filter_available():
            try:
                return FilterChecker()
            except UserError as exc:  # e.g. the filter's heads are not built yet
                log.warning("safety filter unavailable (%s); re-checking with judge:classifier",
                            exc.problems[0])
        return JudgeChecker("classifier")
    kind, _, arg = spec.partition(":")
    if kind == "filter":
        if not filter_available():
            raise UserError("checker 'filter': safefed.filtering is not available in this installation")
        return FilterChecker(arg or "default")
    if kind == "judge":
        return JudgeChecker(arg or "classifier")
    raise UserError(f"unknown checker {spec!r} (use auto, filter[:POLICY] or judge:NAME)")
