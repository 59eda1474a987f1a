"""The demo's configuration (``demos/*.yaml``) and its arms.

A demo config has four blocks: ``federation`` (keys of :class:`~safefed.federated.app.FedConfig`
shared by every arm: clients, rounds, data), ``safeguards`` (what the arms switch on: the filter
policy, the gate, the server-side constitution and their sizes), ``evaluation`` (sample sizes of the
measurements) and ``simulation`` (Flower simulation resources). Both FedConfig-based blocks are made
from FedConfig's own fields, so they cannot drift apart from the app they configure.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ..errors import UserError
from ..federated.app import FedConfig
from ..paths import find_asset
from ..yamlio import load_model


@dataclass(frozen=True)
class Arm:
    """One arm of the experiment: which safeguards are on, or which Flower strategy replaces FedAvg."""

    name: str
    what: str
    filter: bool = False
    revise: bool = False
    gate: bool = False
    strategy: str | None = None


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("baseline", "FedAvg, no safeguards"),
    Arm("filter", "client-side safety filter on each client's data before training", filter=True),
    Arm("revise", "server-side Constitutional AI on the aggregated model, every round", revise=True),
    Arm("gate", "server-side AdvBench update gate before aggregation", gate=True),
    Arm("all", "filter + revise + gate", filter=True, revise=True, gate=True),
    Arm("krum", "Flower's Krum (robust aggregation), no safefed", strategy="krum"),
    Arm("median", "Flower's FedMedian (robust aggregation), no safefed", strategy="median"),
)}
MAIN_ARMS = ("baseline", "filter", "revise", "gate", "all")

SAFEGUARD_FIELDS = ("filter_policy", "constitution", "gate", "gate_harmful_sample", "gate_benign_sample",
                    "cai_constitution", "cai_prompts", "cai_benign", "cai_steps", "cai_lr",
                    "cai_instruction_share")
RUN_FIELDS = ("out", "data_dir", "fail_clients", "client_data", "update_cache")  # set by the demo for each arm


def _fed_block(name: str, fields: list[str], defaults: dict, doc: str) -> type[BaseModel]:
    spec = {}
    for f in fields:
        info = copy.copy(FedConfig.model_fields[f])
        if f in defaults:
            info.default = defaults[f]
        spec[f] = (info.annotation, info)
    model = create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **spec)
    return model


Federation = _fed_block(
    "Federation", [f for f in FedConfig.model_fields if f not in SAFEGUARD_FIELDS + RUN_FIELDS],
    {"initial_adapter": "aligned", "layout": "mixed"},
    "FedConfig keys shared by every arm (model, clients, rounds, local training, client data).")
Safeguards = _fed_block(
    "Safeguards", list(SAFEGUARD_FIELDS),
    {"filter_policy": "default", "gate": "default", "cai_constitution": "default"},
    "What the arms switch on. ``constitution`` revises the rows the filter sends to revision on the "
    "client (null: they are dropped); ``cai_*`` is the server-side constitutional round.")


class Evaluation(BaseModel):
    """Sample sizes of the measurements (seeded; the same prompts for every arm)."""

    model_config = ConfigDict(extra="forbid")
    advbench: int = Field(60, ge=1, le=312)    # AdvBench evaluation pool (never seen by the gate) -> safe_rate
    xstest: int = Field(60, ge=1, le=250)      # XSTest safe prompts -> over_refusal
    utility: int = Field(40, ge=1, le=100)     # JailbreakBench benign behaviours -> utility (share answered)
    per_round: int = Field(16, ge=0, le=312)   # evaluation-pool prompts measured after every round (the plot)
    max_new_tokens: int = Field(24, ge=1, le=512)
    batch_size: int = Field(32, ge=1)
    judge: str = "refusal"
    seed: int = 0


class Simulation(BaseModel):
    """Flower simulation engine resources (one Ray actor per ``num_cpus_per_client`` CPUs)."""

    model_config = ConfigDict(extra="forbid")
    num_cpus_per_client: int = Field(2, ge=1)
    num_gpus_per_client: float = Field(0.0, ge=0, le=1)


class DemoConfig(BaseModel):
    """``safefed demo``'s configuration; presets live in ``demos/`` (smoke, quick, paper)."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    arms: list[str] = list(MAIN_ARMS)
    federation: Federation = Field(default_factory=Federation)  # type: ignore[valid-type]
    safeguards: Safeguards = Field(default_factory=Safeguards)  # type: ignore[valid-type]
    evaluation: Evaluation = Field(default_factory=Evaluation)
    simulation: Simulation = Field(default_factory=Simulation)

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, arms: list[str]) -> list[str]:
        return check_arms(arms)

    def key(self) -> str:
        """Hash of everything that determines an arm's results (not the arm list or the description)."""
        data = self.model_dump(mode="json", exclude={"arms", "description"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def arm_config(self, arm: str, *, out: str | Path, data_dir: str | Path | None = None,
                   client_data: str | Path | None = None, update_cache: str | Path | None = None) -> FedConfig:
        """The FedConfig of one arm: the shared federation block plus that arm's safeguards."""
        a = ARMS[arm]
        s = self.safeguards
        values = dict(self.federation.model_dump())
        values.update(out=str(out), data_dir=str(data_dir) if data_dir else None,
                      client_data=str(client_data) if client_data else None,
                      update_cache=str(update_cache) if update_cache else None,
                      **{f: getattr(s, f) for f in SAFEGUARD_FIELDS})
        values.update(filter_policy=s.filter_policy if a.filter else None,
                      constitution=s.constitution if a.filter else None,
                      gate=s.gate if a.gate else None,
                      cai_constitution=s.cai_constitution if a.revise else None)
        if a.strategy:
            values["strategy"] = a.strategy
        for flag, name, what in ((a.filter, "filter_policy", "a filter policy"), (a.gate, "gate", "a gate"),
                                 (a.revise, "cai_constitution", "a constitution")):
            if flag and not values[name]:
                raise UserError(f"arm {arm!r} needs {what}: safeguards.{name} is null")
        return FedConfig.model_validate(values)


def check_arms(arms: list[str]) -> list[str]:
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(map(repr, unknown))} (known: {', '.join(ARMS)})")
    if len(set(arms)) != len(arms):
        raise ValueError("an arm is listed twice")
    if not arms:
        raise ValueError("no arms")
    return list(arms)


def parse_arms(text: str) -> list[str]:
    """``--arms a,b,c`` -> a checked list (a UserError names the unknown ones)."""
    try:
        return check_arms([a.strip() for a in text.split(",") if a.strip()])
    except ValueError as exc:
        raise UserError(f"--arms: {exc}") from None


def load_demo_config(preset: str | None = None, config: str | Path | None = None) -> tuple[DemoConfig, Path]:
    """A shipped preset by name (``smoke``, ``quick``, ``paper``) or a user's YAML (errors as ``FILE:LINE``)."""
    if preset and config:
        raise UserError("give --preset or --config, not both")
    path = find_asset("demos", config) if config else find_asset("demos", preset or "quick")
    return load_model(DemoConfig, path), path
