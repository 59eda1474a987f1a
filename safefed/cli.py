"""The ``safefed`` command. Each subcommand is a thin layer over the library; user mistakes exit 2."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .constitution.cli import align_cmd, constitution_app, revise_cmd
from .demo.cli import demo_cmd
from .errors import UserError
from .federated.cli import gate_app
from .filtering.cli import filter_app


class _Argument(typer.core.TyperArgument):
    """typer < 0.21 (flwr's pin) stores an argument's help before click >= 8.4 resets it to None, so
    ``--help`` would show no argument descriptions: store it again afterwards."""

    def __init__(self, *, help: str | None = None, **kwargs) -> None:  # noqa: A002 - click's name
        super().__init__(help=help, **kwargs)
        self.help = help


typer.main.TyperArgument = _Argument  # the one place typer builds arguments (typer.main.get_click_param)

app = typer.Typer(help="Safety middleware for federated LLM fine-tuning.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
judge_app = typer.Typer(help="Judge pairs you have, measure judges against labels, build the learned judge.",
                        no_args_is_help=True)
data_app = typer.Typer(help="Data sets by name: where they come from and where they are found.",
                       no_args_is_help=True)
app.add_typer(judge_app, name="judge")
app.add_typer(data_app, name="data")
app.add_typer(filter_app, name="filter")
app.add_typer(constitution_app, name="constitution")
app.add_typer(gate_app, name="gate")
app.command("revise")(revise_cmd)
app.command("align")(align_cmd)
app.command("demo")(demo_cmd)

console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="SAFEFED_DATA",
                                              help="Folder holding the data sets (e.g. ../shared/data).")]


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


def task_factory(bar: Progress):
    """``progress(description, total)`` for the library's long calls: a new bar line, advanced by batch."""

    def progress(name: str, total: int):
        task = bar.add_task(name, total=total)
        return lambda k: bar.advance(task, k)

    return progress


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    lo, hi = entry["ci95"]
    return f"{entry['value']:.3f} [{lo:.2f}, {hi:.2f}]"


def print_eval_table(report: dict) -> None:
    table = Table(title=f"{report['suite']} · {report['model']}" + (f" + {report['adapter']}" if report["adapter"]
                                                                     else "") + f" · judge {report['judge']}")
    table.add_column("group")
    table.add_column("n", justify="right")
    table.add_column("safe_rate [95% CI]", justify="right")
    table.add_column("over_refusal [95% CI]", justify="right")
    rates = report["rates"]
    for cat, entry in report["per_category"].items():
        table.add_row(cat, str(entry["n"]), _fmt(entry.get("safe_rate")), _fmt(entry.get("over_refusal")))
    if report["per_category"]:
        table.add_section()
    table.add_row("all", str(report["n"]), _fmt(rates.get("safe_rate")), _fmt(rates.get("over_refusal")))
    if "safe_rate_gcg" in rates:
        table.add_row("all (GCG anywhere-match)", str(rates["safe_rate_gcg"]["n"]), _fmt(rates["safe_rate_gcg"]), "")
    console.print(table)
    for key in ("safe_rate", "over_refusal"):
        if rates.get(key, {}).get("note"):
            console.print(f"note: {key}: {rates[key]['note']}")
    console.print(f"{report['generated_tokens']} tokens in {report['generation_s']} s "
                  f"({report['tokens_per_s']} tokens/s); total {report['elapsed_s']} s")


@app.command("eval")
def eval_cmd(
    suite: Annotated[str, typer.Argument(help="Suite name (advbench, xstest, jailbreakbench) or a suite YAML path.")],
    out: Annotated[Path | None, typer.Option(help="Folder for report.json and generations.jsonl "
                                                  "(default: a new runs/eval-SUITE-TIME).")] = None,
    model: Annotated[str, typer.Option(help="HF id, local folder, or alias; with --endpoint, the served "
                                            "model's name.")] = "smollm2-135m-instruct",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter: a folder or a Hugging Face id.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL (vLLM, TGI: "
                                                      "http://host:8000/v1) that serves --model.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Seeded random sample of N prompts.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
    split: Annotated[str | None, typer.Option(help="AdvBench pool: all, gate or eval (default: the "
                                                   "suite's, all).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Default: the suite's (64).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per generate call (endpoint: "
                                                        "concurrent requests, at most 16).")] = 32,
    judge: Annotated[str | None, typer.Option(help="refusal | classifier[:HEAD.json] | guard[:MODEL]. "
                                                    "Default: the suite's.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: $SAFEFED_DEVICE, "
                                                    "else the best available).")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    data_dir: DataDir = None,
) -> None:
    """Safety evaluation of a model or adapter on a suite (AdvBench safe_rate, XSTest over-refusal, ...)."""
    from datetime import datetime

    from .evaluation.runner import evaluate_model, write_result
    from .safeio import check_out_dir, output_dir

    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"--dtype {dtype!r}: expected float32, bfloat16 or float16")
    if out is None:
        stem = Path(suite).stem if suite.endswith((".yaml", ".yml")) else suite
        out = Path("runs") / f"eval-{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        console.print(f"writing to {out}")
    check_out_dir(out)
    with progress_bar() as bar:
        progress = task_factory(bar)
        result = evaluate_model(suite, model, adapter, judge=judge, limit=limit, split=split, seed=seed,
                                max_new_tokens=max_new_tokens, batch_size=batch_size, data_dir=data_dir,
                                endpoint=endpoint, device=device, dtype=dtype, progress=progress)
    with output_dir(out) as tmp:
        write_result(result, tmp)
    print_eval_table(result.report)
    console.print(f"wrote {out / 'report.json'} and {out / 'generations.jsonl'}")


@judge_app.command("train")
def judge_train(
    out: Annotated[Path, typer.Option(help="Where to write the head (JSON).")] = Path(
        "safefed/artifacts/response_judge.json"),
    seed: int = 0,
    data_dir: DataDir = None,
) -> None:
    """Fit the learned response judge on jailbreakbench-artifacts (AdvBench goals dropped)."""
    from .evaluation.judge_training import build_response_judge
    from .safeio import check_out_file

    check_out_file(out)
    head, metrics = build_response_judge(data_dir, seed=seed)
    head.save(out)
    table = Table(title=f"held-out agreement with `jailbroken` labels (n={metrics['held_out']['n']})")
    for col in ("judge", "agreement", "complied precision", "complied recall"):
        table.add_column(col)
    for name in ("classifier", "refusal_markers", "gcg"):
        m = metrics["held_out"][name]
        table.add_row(name, *(str(m[k]) for k in ("agreement", "complied_precision", "complied_recall")))
    console.print(table)
    console.print(json.dumps(metrics["trained_on"]))
    console.print(f"wrote {out}")


JudgeSpec = Annotated[str, typer.Option("--judge", help="refusal | classifier[:HEAD.json] | guard[:MODEL].")]


@judge_app.command("score")
def judge_score(
    pairs: Annotated[Path, typer.Argument(help="JSONL / CSV / Parquet / HF dataset folder of prompt, response.")],
    out: Annotated[Path, typer.Option(help="Folder for verdicts.jsonl and summary.json.")],
    judge: JudgeSpec = "refusal",
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Judge (prompt, response) pairs you already have (vLLM, another eval tool, a red-team run).

    `refusal` and `classifier` assume harmful requests (unsafe = not refused); `guard` reads harm itself."""
    from .evaluation.judge_file import score_file
    from .evaluation.judges import make_judge
    from .recordio import count_lines
    from .safeio import check_out_dir, output_dir

    check_out_dir(out, [pairs])
    j = make_judge(judge)
    with output_dir(out, [pairs]) as tmp, progress_bar() as bar:
        task = bar.add_task(f"judging ({j.name})", total=count_lines(pairs) if pairs.is_file() else None)
        summary = score_file(j, pairs, tmp, batch_size, progress=lambda k: bar.advance(task, k))
    table = Table(title=f"{pairs}: {summary['n']} rows, judge {j.name}")
    for col in ("judged", "unsafe [95% CI]", "refused [95% CI]", "invalid"):
        table.add_column(col, justify="right")
    judged = summary["n"] - summary["invalid"]
    table.add_row(str(judged), _fmt(summary["unsafe_rate"]), _fmt(summary["refusal_rate"]), str(summary["invalid"]))
    console.print(table)
    console.print(f"wrote {out / 'verdicts.jsonl'} and {out / 'summary.json'}")


@judge_app.command("agree")
def judge_agree(
    out: Annotated[Path, typer.Option(help="Folder for agreement.json.")],
    judge: Annotated[list[str] | None, typer.Option("--judge", help="Judge to measure; repeatable "
                                                     "(default: refusal and classifier).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="A seeded sample of at most N pairs per set.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Agreement of each judge's `unsafe` with labelled responses (GPTFuzz, JailbreakBench, DiaSafety)."""
    from .evaluation.agreement import agreement, labelled_sets
    from .evaluation.judges import make_judge
    from .provenance import package_versions
    from .safeio import check_out_dir, output_dir

    check_out_dir(out)
    judges = [make_judge(spec) for spec in (judge or ["refusal", "classifier"])]
    sets = labelled_sets(data_dir, limit, seed)
    report: dict = {"sets": {s.name: {"n": len(s.pairs), "labels": s.labels} for s in sets},
                    "limit": limit, "seed": seed, "judges": {}, "versions": package_versions()}
    with progress_bar() as bar:
        progress = task_factory(bar)
        for j in judges:
            report["judges"][j.name] = {"judge": j.describe(), "sets": agreement(j, sets, progress)}
    with output_dir(out) as tmp:
        (tmp / "agreement.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = Table(title="agreement of `unsafe` with the labels (95% Wilson intervals)")
    for col in ("judge", "set", "n", "agreement", "precision", "recall"):
        table.add_column(col, justify="left" if col in ("judge", "set") else "right")
    for name, entry in report["judges"].items():
        for set_name, m in entry["sets"].items():
            table.add_row(name, set_name, str(m["n"]), _fmt(m["agreement"]), _fmt(m["precision"]), _fmt(m["recall"]))
    console.print(table)
    console.print(f"wrote {out / 'agreement.json'}")


@data_app.command("list")
def data_list(data_dir: DataDir = None) -> None:
    """Known data sets and where each would be read from."""
    from . import data as datasets

    table = Table(title="data sets")
    for col in ("name", "what", "found"):
        table.add_column(col)
    for name, spec in datasets.REGISTRY.items():
        d = Path(data_dir) / name if data_dir else None
        found = str(d) if d and all((d / f).exists() for f in list(spec.files)[:1]) else "download on first use"
        table.add_row(name, spec.description, found)
    console.print(table)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except UserError as exc:
        for line in exc.problems:
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
