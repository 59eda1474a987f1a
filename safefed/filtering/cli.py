"""``safefed filter``: filter a training file by a policy, or train/build the embedding heads.

``safefed filter INPUT --policy NAME|PATH --out DIR`` and ``safefed filter train DATA --out ARTIFACT``
share one group: its first argument is a subcommand name or, failing that, the input of ``run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

console = Console()
err = Console(stderr=True)


class DefaultCommandGroup(TyperGroup):
    """A group whose first argument may be a subcommand or the default command's first argument."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "INPUT --policy NAME|PATH --out DIR [OPTIONS]")
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="   or: ")


filter_app = typer.Typer(
    cls=DefaultCommandGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Client-side safety filter for training data. `safefed filter INPUT --policy default --out DIR` "
    "is `safefed filter run ...`; `safefed filter train DATA --out HEAD.json` fits an embedding head.",
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="SAFEFED_DATA", help="Folder holding the data sets (e.g. ../shared/data)."
    ),
]


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def print_summary(summary: dict) -> None:
    """The human table of a filter run."""
    table = Table(title=f"safefed filter · policy {summary['policy']['name']} · {summary['source']}")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    n = summary["input"] or 1
    for key in ("input", "kept", "flagged", "quarantined", "invalid"):
        table.add_row(key, str(summary[key]), f"{summary[key] / n:.1%}")
    table.add_section()
    for action, k in sorted(summary["by_action"].items()):
        table.add_row(f"action: {action}", str(k), f"{k / n:.1%}")
    table.add_section()
    for cat, k in summary["by_category"].items():
        table.add_row(f"category: {cat}", str(k), f"{k / n:.1%}")
    console.print(table)
    console.print(f"{summary['input']} rows in {summary['elapsed_s']} s ({summary['rows_per_s']} rows/s)")


@filter_app.command("run")
def run_cmd(
    input: Annotated[Path, typer.Argument(help="JSONL, CSV, Parquet file or a saved HF dataset folder.")],
    out: Annotated[Path, typer.Option(help="Folder for kept.jsonl, quarantine.jsonl, summary.json.")],
    policy: Annotated[
        str, typer.Option(help="Shipped policy name (default, strict, detoxify, llama-guard) or a YAML path.")
    ] = "default",
) -> None:
    """Score every row; write kept rows (flagged ones marked) and quarantined rows (drop, revise, invalid)."""
    from ..errors import UserError
    from ..recordio import count_lines
    from ..safeio import check_out_dir
    from .engine import SafetyFilter

    if not input.exists():
        raise UserError(f"{input}: no such file")
    check_out_dir(out, [input])
    f = SafetyFilter.from_yaml(policy)
    total = count_lines(input) if input.is_file() else None
    with _bar() as bar:
        task = bar.add_task(f"filtering ({f.policy.name})", total=total)
        result = f.apply_file(input, out, progress=lambda k: bar.advance(task, k))
    print_summary(result.summary)
    console.print(f"wrote {result.kept}, {result.quarantined} and {Path(out) / 'summary.json'}")


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for cls, m in metrics.get("per_class", {}).items():
        table.add_row(cls, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    if "binary" in metrics:
        b = metrics["binary"]
        table.add_section()
        table.add_row(
            f"harmful vs benign (>= {b['threshold']})",
            f"{b['precision']:.3f}",
            f"{b['recall']:.3f}",
            f"{b['f1']:.3f}",
            str(b["support"]),
        )
    return table


@filter_app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled JSONL/CSV with text, label[, category].")],
    out: Annotated[Path, typer.Option(help="Where to write the head artifact (JSON).")],
    held_out: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="Fraction held out for the report.")
    ] = 0.2,
    seed: int = 20251124,
    c: Annotated[float, typer.Option("--C", min=1e-4, help="Inverse regularisation strength.")] = 2.0,
) -> None:
    """Fit an embedding head (all-MiniLM-L6-v2 + logistic) and print held-out precision/recall/F1."""
    from ..safeio import check_out_file
    from .training import train_from_file

    check_out_file(out, [data])
    with _bar() as bar:
        task = bar.add_task("embedding", total=None)
        head, metrics = train_from_file(
            data, out, seed=seed, held_out=held_out, C=c, progress=lambda k: bar.advance(task, k)
        )
    console.print(_metrics_table(f"held-out metrics (n={metrics.get('n', 0)})", metrics))
    console.print(f"wrote {out}; name it in a policy: `options: {{head: {out}}}`")


@filter_app.command("build-default")
def build_default_cmd(
    out_dir: Annotated[Path, typer.Option(help="Folder for the two heads.")] = Path("safefed/artifacts"),
    embedding_cache: Annotated[
        Path | None, typer.Option(help="An .npz that keeps embeddings between runs.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Rebuild the default policy's heads from the offline data folder (the documented recipe)."""
    from .recipe import build_default

    with _bar() as bar:
        task = bar.add_task("embedding", total=None)
        report = build_default(
            data_dir, out_dir, cache=embedding_cache, progress=lambda k: bar.advance(task, k)
        )
    for name in ("text_head", "compliance_head"):
        console.print(_metrics_table(f"{name}: held-out metrics", report[name]["held_out"]))
        console.print(f"wrote {report[name]['path']}; trained on {json.dumps(report[name]['trained_on'])}")


@filter_app.command("distill")
def distill_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the student artifact (student.json + weights.safetensors).")],
    teacher: Annotated[
        str, typer.Option(help="Guard model: alias, folder or Hugging Face id (e.g. meta-llama/Llama-Guard-3-1B).")
    ] = "qwen2.5-coder-1.5b-instruct",
    pool: Annotated[
        list[str] | None,
        typer.Option(help="Pairs the teacher labels: `hh-rlhf` (built in) or a JSONL of prompt/response; "
                     "repeatable."),
    ] = None,
    pool_limit: Annotated[
        int | None, typer.Option(min=1, help="Score a seeded sample of this many pool pairs.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=20)] = 2,
    max_train: Annotated[
        int, typer.Option(min=100, help="Gold-labelled training pairs at most (balanced).")
    ] = 10_000,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Validation false-positive rate the thresholds allow.")
    ] = 0.05,
    cache: Annotated[Path | None, typer.Option(help="Teacher score cache (JSONL, append-only, resumable).")] = None,
    teacher_batch: Annotated[int, typer.Option(min=1)] = 8,
    seed: int = 20251124,
    data_dir: DataDir = None,
) -> None:
    """Distil a guard model into a pair classifier: the teacher scores a pool once (cached, resumable),
    the student trains on gold labels and the teacher's calibrated scores; thresholds from validation."""
    from rich.progress import TimeRemainingColumn

    from ..safeio import check_out_dir
    from .distill import distill

    check_out_dir(out)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err) as bar:

        def progress(name: str, done: int, total: int):
            task = bar.add_task(name, total=total, completed=done)
            return lambda k: bar.advance(task, k)

        meta = distill(teacher, pool or ["hh-rlhf"], out, data_dir, seed, epochs, max_train, target_fpr, cache,
                       teacher_batch, pool_limit=pool_limit, progress=progress)
    table = Table(title="validation (no prompt shared with training)")
    for col in ("source", "n", "expected", "flagged"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, m in meta["validation"]["per_source"].items():
        table.add_row(src, str(m["n"]), m["label"], f"{m['flagged']:.3f}")
    v = meta["validation"]
    table.add_section()
    table.add_row("all", str(v["n"]), f"recall {v['recall']:.3f}", f"FPR {v['false_positive_rate']:.3f}")
    console.print(table)
    console.print(f"teacher calibration: {json.dumps(meta['teacher']['calibration'])}")
    console.print(f"wrote {out} in {meta['seconds']:.0f} s; thresholds {json.dumps(meta['thresholds'])}")
