"""``safefed gate``: validate gate configs and review candidate adapters offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError

gate_app = typer.Typer(help="The server-side AdvBench update gate.", no_args_is_help=True)
console = Console()


@gate_app.command("validate")
def validate_cmd(files: Annotated[list[Path], typer.Argument(help="Gate config YAML files.")]) -> None:
    """Check gate configs; exit 2 with FILE:LINE lines when one is malformed."""
    from .gate import load_gate_config

    problems = []
    for f in files:
        try:
            load_gate_config(f)
            console.print(f"{f}: ok")
        except UserError as exc:
            problems += exc.problems
    if problems:
        raise UserError(*problems)


@gate_app.command("review")
def review_cmd(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate LoRA adapter folders (one per client).")],
    out: Annotated[Path, typer.Option(help="Folder for audit.jsonl and decisions.json.")],
    global_adapter: Annotated[Path | None, typer.Option("--global", help="Current global adapter (default: "
                                                                          "a fresh, no-op adapter).")] = None,
    model: Annotated[str, typer.Option(help="Base model: HF id, folder or alias.")] = "smollm2-135m-instruct",
    config: Annotated[str, typer.Option(help="Gate config name or YAML path.")] = "default",
    round_: Annotated[int, typer.Option("--round", min=1, help="Round number (seeds the prompt sample).")] = 1,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="SAFEFED_DATA")] = None,
) -> None:
    """Measure candidate adapters against the global one and print the gate's decisions."""
    from peft import PeftConfig

    from ..models import check_adapter, load_causal_lm
    from ..safeio import check_out_dir
    from .audit import AuditLog
    from .gate import GLOBAL, UpdateGate, load_gate_config
    from .updates import Update, lora_arrays, with_global_adapter

    check_out_dir(out)
    for path in candidates:
        check_adapter(path)
    cfg = load_gate_config(config)
    base, tok, _ = load_causal_lm(model)
    lora = {}
    if global_adapter is None:
        first = PeftConfig.from_pretrained(str(candidates[0])) if candidates else None
        targets = tuple(first.target_modules) if first else ("q_proj", "k_proj", "v_proj", "o_proj")
        peft_model = with_global_adapter(base, name=GLOBAL, r=first.r if first else 8, target_modules=targets)
    else:
        peft_model = with_global_adapter(base, global_adapter, name=GLOBAL)
    global_arrays = lora_arrays(peft_model, GLOBAL)
    from ..models import attach_adapter

    for path in candidates:
        attach_adapter(peft_model, path, name="incoming")
        lora[str(path)] = lora_arrays(peft_model, "incoming")
        peft_model.delete_adapter("incoming")
    peft_model.set_adapter(GLOBAL)
    gate = UpdateGate(peft_model, tok, cfg, data_dir=data_dir, audit=AuditLog(out / "audit.jsonl"))
    decisions = gate.review(round_, global_arrays, [Update(name, arrays, 1) for name, arrays in lora.items()])
    table = Table(title=f"gate review, round {round_} ({cfg.mode})")
    for col in ("candidate", "decision", "safe_rate", "global", "over_refusal", "reason"):
        table.add_column(col)
    for d in decisions:
        table.add_row(d.client, "accept" if d.accepted else "reject", str(d.safe_rate), str(d.baseline_safe_rate),
                      str(d.over_refusal), d.reason)
    console.print(table)
    (out / "decisions.json").write_text(json.dumps([d.audit_fields() for d in decisions], indent=2) + "\n")
    console.print(f"wrote {out / 'audit.jsonl'} and {out / 'decisions.json'}")
