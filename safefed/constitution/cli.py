"""``safefed constitution validate|show|import`` and ``safefed revise``: thin layers over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..align import AlignRecipe
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
    from ..safeio import check_out_file
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
    check_out_file(out, [path])
    c = import_constitution(path, name=name, fmt=fmt, few_shot=few_shot)
    out.write_text(to_yaml(c, header=f"Imported from {path.name} by `safefed constitution import`.\n"
                                     "Add categories and refusal_templates (5+ varied ones) per principle."),
                   encoding="utf-8")
    loaded = load_constitution(out)
    c = loaded.constitution
    console.print(f"wrote {out}: {len(c.principles)} principles, {len(c.few_shot)} few-shot",
                  markup=False, highlight=False, soft_wrap=True)
    for w in loaded.constitution.warnings():
        console.print(f"{out}: warning: {w}", markup=False, highlight=False, soft_wrap=True)


def revise_cmd(
    source: Annotated[str, typer.Argument(metavar="INPUT", help="JSONL/JSON/CSV file with prompt "
                                                                 "(+ response) fields, or a data set name.")],
    out: Annotated[Path, typer.Option(help="Folder for revised.jsonl, sft.jsonl, dpo_pairs.jsonl, "
                                           "summary.json.")],
    constitution: Annotated[str, typer.Option(help="Shipped name or YAML path.")] = "default",
    model: Annotated[str | None, typer.Option(help="Local LLM: HF id, folder or alias "
                                                   "(default smollm2-135m-instruct).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="PEFT LoRA adapter for --model.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://host:8000/v1 "
                                                      "(key from $SAFEFED_ENDPOINT_KEY).")] = None,
    endpoint_model: Annotated[str, typer.Option(help="Model name sent to --endpoint.")] = "default",
    checker: Annotated[str, typer.Option(help="auto | filter[:POLICY] | judge:NAME")] = "auto",
    rounds: Annotated[int, typer.Option(min=1, max=5, help="Rounds before the refusal template.")] = 2,
    few_shot: Annotated[int, typer.Option(min=0, help="Few-shot examples per chat.")] = 1,
    revise_all: Annotated[bool, typer.Option(help="Revise every record, not only flagged ones.")] = False,
    prompt_field: Annotated[str | None, typer.Option(help="Prompt field (default: prompt).")] = None,
    response_field: Annotated[str | None, typer.Option(help="Response field (default: response; "
                                                            "hh: rejected).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Seeded random sample of N records.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --limit.")] = 0,
    split: Annotated[str | None, typer.Option(help="Named split of a data set (hh: client-data, "
                                                   "filter-train).")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_prompt_tokens: Annotated[int, typer.Option(min=16, help="Cap per chat message (local model).")] = 192,
    critique_tokens: Annotated[int, typer.Option(min=1)] = 64,
    revision_tokens: Annotated[int, typer.Option(min=1)] = 96,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="SAFEFED_DATA")] = None,
) -> None:
    """Critique and revise unsafe responses with a constitution; write SFT data and DPO pairs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..safeio import check_out_dir, output_dir
    from .backends import make_backend
    from .checkers import make_checker
    from .engine import Reviser
    from .records import read_records, write_outputs
    from .schema import load_constitution

    if model and endpoint:
        raise UserError("give either --model or --endpoint, not both")
    inputs = [Path(source)] if Path(source).exists() else []
    check_out_dir(out, inputs)
    loaded = load_constitution(constitution)
    records, data_prov = read_records(source, data_dir=data_dir, prompt_field=prompt_field,
                                      response_field=response_field, limit=limit, seed=seed, split=split)
    if endpoint:
        backend = make_backend("openai", url=endpoint, model_name=endpoint_model,
                               max_new_tokens=revision_tokens)
    else:
        backend = make_backend("hf", model_name=model, adapter=str(adapter) if adapter else None,
                               max_new_tokens=revision_tokens, batch_size=batch_size,
                               max_prompt_tokens=max_prompt_tokens)
    reviser = Reviser(loaded, backend, make_checker(checker), rounds=rounds, max_few_shot=few_shot,
                      revise_all=revise_all, critique_tokens=critique_tokens, revision_tokens=revision_tokens)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as bar:
        task = bar.add_task("checking originals", total=None)
        result = reviser.run(records, progress=lambda k: bar.advance(task, k),
                             stage=lambda name, n: bar.reset(task, total=n, description=name))
    extra = {"input": data_prov, "final_refusal_judge": refusal_verdicts(result.records),
             "provenance": _provenance()}
    with output_dir(out, inputs) as tmp:
        summary = write_outputs(result, tmp, extra=extra)
    print_summary(summary)
    console.print(f"wrote {out}/revised.jsonl, sft.jsonl, dpo_pairs.jsonl, summary.json", markup=False)


def refusal_verdicts(records) -> dict:
    """The AdvBench refusal-marker judge on the final responses: share refused, overall and per path."""
    from ..evaluation.judges import RefusalJudge
    from ..stats import rate

    judge = RefusalJudge()
    kept = [r for r in records if r.path != "quarantined"]
    refused = [judge.refused(r.final) for r in kept]
    out = {"judge": judge.describe(), "refused": rate(sum(refused), len(kept)), "per_path": {}}
    for path in ("revised", "template", "unchanged"):
        flags = [f for r, f in zip(kept, refused, strict=True) if r.path == path]
        if flags:
            out["per_path"][path] = rate(sum(flags), len(flags))
    return out


def _provenance() -> dict:
    from ..provenance import package_versions

    return {"packages": package_versions()}


def print_summary(summary: dict) -> None:
    title = f"revise · {summary['constitution']['name']} · checker {summary['checker']['checker']}"
    table = Table(title=title)
    for col in ("path", "n", "share [95% CI]"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for path, n in summary["counts"].items():
        r = summary["shares"][path]
        share = "-" if r["value"] is None else f"{r['value']:.3f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        table.add_row(path, str(n), share)
    console.print(table)
    ts = summary["template_share_of_rewritten"]
    if ts["value"] is not None:
        console.print(f"template share of rewritten records: {ts['value']:.3f} ({ts['k']}/{ts['n']}); "
                      f"final responses still unsafe: {summary['final_unsafe']}")
    fr = summary.get("final_refusal_judge", {}).get("refused")
    if fr and fr["value"] is not None:
        console.print(f"refusal judge on final responses: {fr['value']:.3f} refused ({fr['k']}/{fr['n']})")
    console.print(f"{summary['generated_tokens']} tokens in {summary['generation_s']} s "
                  f"({summary['tokens_per_s']} tokens/s); total {summary['elapsed_s']} s")


def align_cmd(
    out: Annotated[Path, typer.Option(help="Folder for adapter/, report.json and the revise outputs.")],
    model: Annotated[str, typer.Option(help="HF id, local folder or alias.")] = "smollm2-135m-instruct",
    constitution: Annotated[str, typer.Option(help="Shipped name or YAML path.")] = "default",
    n_harmful: Annotated[int | None, typer.Option(min=1, help="Harmful prompts (harmfulqa-catqa) to revise; "
                                                  f"default: {AlignRecipe.n_harmful}.")] = None,
    n_lookalike: Annotated[int | None, typer.Option(min=0, help="Benign look-alike pairs; default: "
                                                    f"{AlignRecipe.n_lookalike}.")] = None,
    n_benign: Annotated[int | None, typer.Option(min=0, help="General benign pairs (self-instruct).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="LoRA steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    checker: Annotated[str | None, typer.Option(help="auto | filter[:POLICY] | judge:NAME")] = None,
    n_eval: Annotated[int | None, typer.Option(min=1, help="Cap on each evaluation set; default: all: "
                                               "312 AdvBench eval-pool, 250 XSTest safe, 100 JBB benign.")] = None,
    baseline: Annotated[bool, typer.Option(help="Also measure the base model on the same prompts.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    candidates: Annotated[int | None, typer.Option(min=1, help="Build this many (seeds SEED, SEED+1, ...) and keep "
                                                   "the best on the validation sets (AdvBench gate pool, hard "
                                                   f"negatives); default: {AlignRecipe.candidates}.")] = None,
    n_val: Annotated[int | None, typer.Option(min=1, help="Cap on each validation set; default: all: 208 "
                                              "AdvBench gate-pool, 250 hard negatives.")] = None,
    layers_from: Annotated[int | None, typer.Option(min=0, help="Put the LoRA on decoder layers from this index on "
                                                    f"only; 0: all layers; default: {AlignRecipe.layers_from}, "
                                                    "about half of SmolLM2-135M's 30.")] = None,
    decision_weight: Annotated[float | None, typer.Option(min=1.0, help="Weight of the first answer tokens in the "
                                                          "SFT loss (where the model answers or refuses); 1: "
                                                          "unweighted; default: "
                                                          f"{AlignRecipe.decision_weight:g}.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="SAFEFED_DATA")] = None,
) -> None:
    """Build the aligned starting adapter by server-side Constitutional AI, and measure it."""
    from ..align import build_aligned_adapter
    from ..safeio import check_out_dir

    check_out_dir(out)
    given = {"n_harmful": n_harmful, "n_lookalike": n_lookalike, "n_benign": n_benign, "steps": steps, "lr": lr,
             "batch_size": batch_size, "checker": checker, "candidates": candidates, "layers_from": layers_from,
             "decision_weight": decision_weight}
    recipe = AlignRecipe(model=model, constitution=constitution, seed=seed,
                         **{k: v for k, v in given.items() if v is not None})
    report = build_aligned_adapter(recipe, out, data_dir=data_dir, n_eval=n_eval, n_val=n_val, baseline=baseline,
                                   log=lambda m: err.print(m, markup=False))
    if "candidates" in report:
        err.print(f"kept candidate seed {report['candidates']['picked_seed']} (best on validation)", markup=False)
    table = Table(title=f"align · {model} · {constitution} · {recipe.steps} LoRA steps")
    for col in ("model", "AdvBench safe_rate [95% CI]", "XSTest over-refusal [95% CI]",
                "JBB benign refused [95% CI]"):
        table.add_column(col)
    rows = [("base", report["baseline"])] if "baseline" in report else []
    for name, m in [*rows, ("aligned", report["aligned"])]:
        cells = [m[k] for k in ("safe_rate", "over_refusal", "benign_refusal")]
        table.add_row(name, *(f"{c['value']:.3f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}] (n={c['n']})"
                              for c in cells))
    console.print(table)
    console.print(f"targets met: {report['meets_targets']}; wrote {out}/adapter and {out}/report.json",
                  markup=False)
