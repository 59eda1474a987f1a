"""``safefed constitution validate|show|import`` and ``safefed revise``: thin layers over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError

constitution_app = typer.Typer(help="Author, check and import YAML constitutions.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@constitution_app.command("validate")
def validate_cmd(
    files: Annotated[list[str], typer.Argument(help="Constitution YAML files (or shipped names).")],
) -> None:
    """Check constitutions against the schema; exit 0 if all are valid, 2 otherwise (FILE:LINE: problem)."""
    from .schema import load_constitution

    problems: list[str] = []
    for f in files:
        try:
            loaded = load_constitution(f)
        except UserError as exc:
            problems.extend(exc.problems)
            continue
        c = loaded.constitution
        console.print(f"{loaded.path}: ok ({c.name} v{c.version}, {len(c.principles)} principles, "
                      f"{len(c.few_shot)} few-shot, sampling {c.sampling.rule.value})",
                      markup=False, highlight=False, soft_wrap=True)
        for w in c.warnings():
            console.print(f"{loaded.path}: warning: {w}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise UserError(*problems)


@constitution_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Shipped name (e.g. default, privacy) or a path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the validated YAML as JSON.")] = False,
) -> None:
    """Print a constitution: its principles, categories and refusal templates."""
    from ..paths import shipped_names
    from .schema import load_constitution

    loaded = load_constitution(name)
    c = loaded.constitution
    if as_json:
        typer.echo(json.dumps(c.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{c.name}[/] v{c.version} · {loaded.path} · sampling {c.sampling.rule.value} "
                  f"(seed {c.sampling.seed})")
    console.print(c.description, markup=False)
    table = Table(show_lines=True)
    for col in ("id", "categories", "critique", "revision", "refusals"):
        table.add_column(col, overflow="fold")
    for p in c.principles:
        templates = c.templates_for(p)
        table.add_row(p.id, ", ".join(p.categories) or "(all)", p.critique, p.revision,
                      f"{len(p.refusal_templates)} own / {len(templates)} used\n e.g. {templates[0]}")
    console.print(table)
    shipped = ", ".join(shipped_names("constitutions"))
    console.print(f"{len(c.few_shot)} few-shot example(s). Shipped constitutions: {shipped}")


@constitution_app.command("import")
def import_cmd(
    src: Annotated[str, typer.Argument(help="llm-swarm JSON, a LangChain-style principle list (JSON/YAML), "
                                            "or the data set name 'constitutional-ai'.")],
    out: Annotated[Path, typer.Option(help="Constitution YAML to write.")],
    name: Annotated[str | None, typer.Option(help="Constitution name (default: from the file name).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto | llm-swarm | langchain")] = "auto",
    few_shot: Annotated[bool, typer.Option(help="Keep the source's few-shot chats (llm-swarm).")] = True,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="SAFEFED_DATA")] = None,
) -> None:
    """Convert principles from another format into a safefed constitution YAML (validated on write)."""
    from .importers import import_constitution, to_yaml
    from .schema import load_constitution

    if fmt not in ("auto", "llm-swarm", "langchain"):
        raise UserError(f"--format {fmt!r}: use auto, llm-swarm or langchain")
    path = Path(src)
    if not path.exists() and src == "constitutional-ai":
        from ..data import dataset_dir

        path = dataset_dir(src, data_dir) / "constitution_anthropic.json"
    if not path.is_file():
        raise UserError(f"{src}: no such file")
    c = import_constitution(path, name=name, fmt=fmt, few_shot=few_shot)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(c, header=f"Imported from {path.name} by `safefed constitution import`.\n"
                                     "Add categories and refusal_templates (5+ varied ones) per principle."),
                   encoding="utf-8")
    loaded = load_constitution(out)
    c = loaded.constitution
    console.print(f"wrote {out}: {len(c.principles)} principles, {len(c.few_shot)} few-shot",
                  markup=False, highlight=False, soft_wrap=True)
    for w in loaded.constitution.warnings():
        console.print(f"{out}: warning: {w}", markup=False, highlight=False, soft_wrap=True)
