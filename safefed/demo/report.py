"""The demo's outputs: results.json/.csv, rounds.csv, two PNG plots and the terminal table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

RATES = ("safe_rate", "over_refusal", "utility")
COLORS = {"start": "#555555", "baseline": "#d62728", "filter": "#ff7f0e", "revise": "#2ca02c", "gate": "#1f77b4",
          "all": "#9467bd", "krum": "#8c564b", "median": "#e377c2"}


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    lo, hi = entry["ci95"]
    return f"{entry['value']:.2f} [{lo:.2f}, {hi:.2f}]"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def write_outputs(summary: dict, out: str | Path) -> list[Path]:
    out = Path(out)
    paths = [out / "results.json", out / "results.csv", out / "rounds.csv"]
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out / "results.json")
    write_results_csv(summary, out / "results.csv")
    write_rounds_csv(summary["rounds"], out / "rounds.csv")
    paths.append(plot_safe_rate_by_round(summary, out / "safe_rate_by_round.png"))
    gate_png = plot_gate_decisions(summary["rounds"], out / "gate_decisions.png")
    if gate_png:
        paths.append(gate_png)
    return paths


def write_results_csv(summary: dict, path: Path) -> None:
    cols = ["arm", "what"]
    for k in RATES:
        cols += [k, f"{k}_lo", f"{k}_hi", f"{k}_n"]
    cols += ["safe_rate_delta", "over_refusal_delta", "utility_delta", "rounds", "seconds", "gate_accepted",
             "gate_rejected"]
    rows = [{"arm": "start", "what": "the starting (aligned) model, before any round",
             **_rate_cols(summary["start"])}]
    for arm, r in summary["arms"].items():
        gate = r.get("gate") or {}
        rows.append({"arm": arm, "what": r["what"], **_rate_cols(r),
                     **{f"{k}_delta": (r.get("delta") or {}).get(k) for k in RATES},
                     "rounds": r["rounds"], "seconds": r["seconds"], "gate_accepted": gate.get("accepted"),
                     "gate_rejected": gate.get("rejected")})
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow(row)


def _rate_cols(r: dict) -> dict:
    out = {}
    for k in RATES:
        e = r.get(k) or {}
        lo, hi = e.get("ci95", [None, None])
        out.update({k: e.get("value"), f"{k}_lo": lo, f"{k}_hi": hi, f"{k}_n": e.get("n")})
    return out


ROUND_COLS = ["arm", "round", "safe_rate", "safe_rate_lo", "safe_rate_hi", "n", "clients", "harmful_records",
              "filter_dropped", "accepted", "rejected", "train_loss", "cai_pairs", "reused_updates", "seconds"]


def write_rounds_csv(rounds: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=ROUND_COLS)
        w.writeheader()
        for r in rounds:
            ci = r.get("safe_rate_ci95") or [None, None]
            row = {k: r.get(k) for k in ROUND_COLS}
            row.update(safe_rate_lo=ci[0], safe_rate_hi=ci[1])
            for k in ("clients", "accepted", "rejected"):
                row[k] = " ".join(str(x) for x in r[k]) if r.get(k) is not None else ""
            w.writerow(row)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_safe_rate_by_round(summary: dict, path: Path) -> Path:
    """safe_rate on the per-round evaluation-pool sample after every round, one line per arm."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    by_arm: dict[str, list[dict]] = {}
    for r in summary["rounds"]:
        if r.get("safe_rate") is not None:
            by_arm.setdefault(r["arm"], []).append(r)
    n = None
    for arm, rows in by_arm.items():
        rows = sorted(rows, key=lambda x: x["round"])
        xs = [x["round"] for x in rows]
        ys = [x["safe_rate"] for x in rows]
        n = rows[-1].get("n") or n
        ax.plot(xs, ys, marker="o", label=arm, color=COLORS.get(arm), linewidth=2 if arm == "all" else 1.4)
    ax.set_xlabel("round")
    ax.set_ylabel("AdvBench safe_rate")
    ax.set_ylim(-0.02, 1.02)
    rounds = max((r["round"] for r in summary["rounds"]), default=1)
    ax.set_xticks(range(0, rounds + 1))
    ax.grid(alpha=0.3)
    ax.set_title(f"safe_rate after each round (evaluation pool, n={n} per point)", fontsize=10)
    if by_arm:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_gate_decisions(rounds: list[dict], path: Path) -> Path | None:
    """Per gated arm: client x round, accepted (green) / rejected (red) / not sampled (grey)."""
    gated = {}
    for r in rounds:
        if r.get("gate_decisions"):
            gated.setdefault(r["arm"], []).append(r)
    if not gated:
        path.unlink(missing_ok=True)
        return None
    plt = _plt()
    from matplotlib.colors import ListedColormap

    fig, axes = plt.subplots(1, len(gated), figsize=(max(4.6, 3.2 * len(gated) + 0.8), 3.4), dpi=100, squeeze=False)
    cmap = ListedColormap(["#dddddd", "#d62728", "#2ca02c"])
    for ax, (arm, rows) in zip(axes[0], gated.items(), strict=True):
        rows = sorted(rows, key=lambda x: x["round"])
        clients = sorted({d["partition"] for r in rows for d in r["gate_decisions"]}, key=str)
        grid = [[0] * len(rows) for _ in clients]
        for j, r in enumerate(rows):
            for d in r["gate_decisions"]:
                i = clients.index(d["partition"])
                grid[i][j] = 2 if d["accepted"] else 1
                if d.get("safe_rate") is not None:
                    ax.text(j, i, f"{d['safe_rate']:.2f}", ha="center", va="center", fontsize=7)
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=2, aspect="auto")
        ax.set_xticks(range(len(rows)), [str(r["round"]) for r in rows])
        ax.set_yticks(range(len(clients)), [f"client {c}" for c in clients])
        ax.set_xlabel("round")
        ax.set_title(f"{arm}: gate decisions", fontsize=10)
    fig.suptitle("green accepted · red rejected · grey not sampled\nnumber: the candidate's safe_rate on the gate's "
                 "prompts", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def results_table(summary: dict):
    """A rich Table of the start model and every arm."""
    from rich.table import Table

    cfg = summary["demo"]["config"]["federation"]
    title = (f"safefed demo · {cfg['num_clients']} clients, {cfg['rounds']} rounds, "
             f"{cfg['layout']} data · 95% Wilson intervals")
    t = Table(title=title)
    for col, just in (("arm", "left"), ("safe_rate", "right"), ("Δ base", "right"), ("over_refusal", "right"),
                      ("Δ base", "right"), ("utility", "right"), ("gate acc/rej", "right"), ("s", "right")):
        t.add_column(col, justify=just)
    s = summary["start"]
    t.add_row("start (aligned)", _fmt(s["safe_rate"]), "", _fmt(s["over_refusal"]), "", _fmt(s["utility"]), "", "")
    t.add_section()
    for arm, r in summary["arms"].items():
        d = r.get("delta") or {}
        gate = r.get("gate")
        t.add_row(arm, _fmt(r["safe_rate"]), _signed(d.get("safe_rate")), _fmt(r["over_refusal"]),
                  _signed(d.get("over_refusal")), _fmt(r["utility"]),
                  f"{gate['accepted']}/{gate['rejected']}" if gate else "", f"{r['seconds']:.0f}")
    return t


def markdown_table(summary: dict) -> str:
    """The same table as Markdown (for docs)."""
    lines = ["| arm | safe_rate [95% CI] | Δ vs baseline | over_refusal [95% CI] | Δ vs baseline | "
             "utility [95% CI] | gate accepted/rejected | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    s = summary["start"]
    lines.append(f"| start (aligned) | {_fmt(s['safe_rate'])} | | {_fmt(s['over_refusal'])} | | "
                 f"{_fmt(s['utility'])} | | |")
    for arm, r in summary["arms"].items():
        d = r.get("delta") or {}
        gate = r.get("gate")
        decided = f"{gate['accepted']}/{gate['rejected']}" if gate else ""
        lines.append(f"| {arm} | {_fmt(r['safe_rate'])} | {_signed(d.get('safe_rate'))} | "
                     f"{_fmt(r['over_refusal'])} | {_signed(d.get('over_refusal'))} | {_fmt(r['utility'])} | "
                     f"{decided} | {r['seconds']:.0f} |")
    return "\n".join(lines)
