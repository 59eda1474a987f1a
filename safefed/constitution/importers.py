"""Import principles from other formats into a safefed constitution YAML.

Sources: Hugging Face's llm-swarm JSON (``{"constitutions": [{"critic", "revision"}], "system_chat": [...]}``)
and LangChain-style principle lists (``[{name, critique_request, revision_request}]`` or a mapping
``name -> {critique_request, revision_request}``). JSON is read with the same hardened parser as YAML
(JSON is YAML), so problems are reported as ``FILE:LINE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError
from ..yamlio import load_yaml, validate
from .schema import Constitution, Text, category_slug


class _SwarmPrinciple(BaseModel):
    model_config = ConfigDict(extra="forbid")
    critic: Text
    revision: Text


class _SwarmMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Text
    content: Text


class _SwarmFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    constitutions: list[_SwarmPrinciple] = Field(min_length=1)
    system_chat: list[list[_SwarmMessage]] = Field(default_factory=list)


class _LangChainPrinciple(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text
    critique_request: Text
    revision_request: Text


class _LangChainList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principles: list[_LangChainPrinciple] = Field(min_length=1)


def _prefixed(marks: dict, prefix: tuple) -> dict:
    return {prefix + k: v for k, v in marks.items()}


def detect_format(data: Any) -> str:
    if isinstance(data, dict) and "constitutions" in data:
        return "llm-swarm"
    if isinstance(data, list) or (isinstance(data, dict) and data and all(
            isinstance(v, dict) and "critique_request" in v for v in data.values())):
        return "langchain"
    if isinstance(data, dict) and "principles" in data:
        return "langchain"
    return "unknown"


def _from_swarm(data: Any, marks: dict, src: Path, few_shot: bool) -> dict:
    parsed = validate(_SwarmFile, data, marks, src)
    principles = [{"id": f"cai-{i + 1:02d}", "critique": p.critic, "revision": p.revision,
                   "categories": ["general"]} for i, p in enumerate(parsed.constitutions)]
    shots = []
    if few_shot:
        for k, chat in enumerate(parsed.system_chat):
            roles = [m.role for m in chat]
            if roles != ["user", "assistant"] * 3:
                line = marks.get(("system_chat", k), 1)
                raise UserError(f"{src}:{line}: system_chat[{k}] should be 6 messages alternating "
                                "user/assistant (request, draft, critique request, critique, revision "
                                "request, revision)")
            shots.append({"prompt": chat[0].content, "response": chat[1].content, "critique": chat[3].content,
                          "revision": chat[5].content})
    return {"principles": principles, "few_shot": shots, "sampling": {"rule": "random", "seed": 0}}


def _from_langchain(data: Any, marks: dict, src: Path) -> dict:
    if isinstance(data, list):
        data, marks = {"principles": data}, _prefixed(marks, ("principles",))
    elif "principles" not in data:
        items = [{"name": k, **v} for k, v in data.items()]
        marks = {("principles", i, *k[1:]): line for k, line in marks.items()
                 for i, name in enumerate(data) if k[:1] == (name,)}
        data = {"principles": items}
    parsed = validate(_LangChainList, data, marks, src)
    principles, seen = [], set()
    for i, p in enumerate(parsed.principles):
        pid = category_slug(p.name) or f"principle-{i + 1}"
        if pid in seen:
            line = marks.get(("principles", i, "name"), 1)
            raise UserError(f"{src}:{line}: duplicate principle name {p.name!r}")
        seen.add(pid)
        principles.append({"id": pid, "critique": p.critique_request, "revision": p.revision_request,
                           "categories": ["general"]})
    return {"principles": principles, "few_shot": [], "sampling": {"rule": "random", "seed": 0}}


def import_constitution(src: str | Path, *, name: str | None = None, fmt: str = "auto",
                        few_shot: bool = True) -> Constitution:
    """Read ``src`` (llm-swarm JSON or LangChain list, JSON or YAML) into a validated constitution."""
    src = Path(src)
    data, marks = load_yaml(src)
    kind = detect_format(data) if fmt == "auto" else fmt
    if kind == "llm-swarm":
        body = _from_swarm(data, marks, src, few_shot)
    elif kind == "langchain":
        body = _from_langchain(data, marks, src)
    else:
        raise UserError(f"{src}:1: not an llm-swarm file (needs 'constitutions') nor a LangChain "
                        "principle list (items with name, critique_request, revision_request)")
    stem = category_slug(name or src.stem) or "imported"
    return Constitution.model_validate({
        "name": stem, "version": "1.0",
        "description": f"Imported from {src.name} ({kind} format) by `safefed constitution import`.",
        **body,
    })


class _Dumper(yaml.SafeDumper):
    """Block style for long text; no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(c: Constitution, header: str = "") -> str:
    """The constitution as YAML text (round-trips through :func:`load_constitution`)."""
    data = c.model_dump(mode="json", exclude_defaults=False)
    for p in data["principles"]:
        if not p["refusal_templates"]:
            del p["refusal_templates"]
    if not data["refusal_templates"]:
        del data["refusal_templates"]
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    lines = "".join(f"# {h}\n" for h in header.splitlines())
    return lines + body
