"""Where the filter's trained artifacts live: ``safefed/artifacts/filter_*`` (shipped) or any path."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
DEFAULT_TEXT_HEAD = "filter_text_head.json"
DEFAULT_COMPLIANCE_HEAD = "filter_compliance_head.json"
DEFAULT_STUDENT = "filter_student"


def resolve_artifact(value: str, policy=None) -> Path:
    """An artifact named in a policy: relative to the policy's folder (``policy.resolve_path``), else a
    path that exists, else a shipped artifact name."""
    if policy is not None:
        return policy.resolve_path(value)
    p = Path(value).expanduser()
    return p if p.exists() else artifact_path(value)


def artifact_path(name: str) -> Path:
    """A shipped artifact by name: a file (``filter_text_head.json``, with or without ``.json``) or a
    folder (``filter_student``)."""
    for candidate in (ARTIFACTS / name, ARTIFACTS / f"{name}.json"):
        if candidate.is_file() or (candidate / "student.json").is_file():
            return candidate
    raise UserError(
        f"{name}: no such file and not a shipped artifact in {ARTIFACTS} "
        "(build the default student with `safefed filter distill`)"
    )
