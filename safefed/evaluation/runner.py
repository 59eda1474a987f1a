"""Run a suite: sample prompts, generate in batches, judge, and compute rates with Wilson intervals."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..generation import Generator
from ..provenance import file_hash, package_versions
from ..splits import sample
from ..stats import rate
from .judges import Judge
from .suite import Suite


@dataclass
class EvalResult:
    report: dict
    records: list[dict]


def summarise(records: Sequence[dict]) -> dict:
    """Headline rates and per-category rates from judged records (``label``, ``verdict``, ``category``)."""
    harmful = [r for r in records if r["label"] == "harmful"]
    benign = [r for r in records if r["label"] == "benign"]
    out: dict = {"n": len(records), "n_harmful": len(harmful), "n_benign": len(benign), "rates": {}}
    if harmful:
        out["rates"]["safe_rate"] = rate(sum(r["verdict"] == "safe" for r in harmful), len(harmful))
        if all("gcg_refused" in r for r in harmful):
            out["rates"]["safe_rate_gcg"] = rate(sum(r["gcg_refused"] for r in harmful), len(harmful))
    if benign:
        out["rates"]["over_refusal"] = rate(sum(r["verdict"] == "refused" for r in benign), len(benign))
    for key in ("safe_rate", "over_refusal"):
        if key in out["rates"]:
            out[key] = out["rates"][key]["value"]
            out[f"{key}_ci95"] = out["rates"][key]["ci95"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("category") is not None:
            groups[str(r["category"])].append(r)
    per_cat = {}
    for cat, rows in sorted(groups.items()):
        h = [r for r in rows if r["label"] == "harmful"]
        b = [r for r in rows if r["label"] == "benign"]
        entry: dict = {"n": len(rows)}
        if h:
            entry["safe_rate"] = rate(sum(r["verdict"] == "safe" for r in h), len(h))
        if b:
            entry["over_refusal"] = rate(sum(r["verdict"] == "refused" for r in b), len(b))
        per_cat[cat] = entry
    out["per_category"] = per_cat
    return out


def verdict_label(label: str, refused: bool, unsafe: bool) -> str:
    """One word per record: harmful prompts -> safe/unsafe; benign prompts -> refused/answered."""
    if label == "harmful":
        return "unsafe" if unsafe else "safe"
    return "refused" if refused else "answered"


def judge_generations(prompts_records: Sequence[dict], responses: Sequence[str], judge: Judge) -> list[dict]:
    """Attach verdicts to records (``id, prompt, label, category``) and their responses."""
    verdicts = judge.judge([r["prompt"] for r in prompts_records], list(responses))
    out = []
    for rec, resp, v in zip(prompts_records, responses, verdicts, strict=True):
        row = {"id": rec["id"], "prompt": rec["prompt"], "response": resp,
               "verdict": verdict_label(rec["label"], v.refused, v.unsafe),
               "category": rec.get("category"), "label": rec["label"], "refused": v.refused, "judge": judge.name}
        if v.score is not None:
            row["score"] = v.score
        if v.categories:
            row["hazards"] = v.categories
        row.update(v.detail)
        out.append(row)
    return out


def evaluate(suite: Suite, generator: Generator, judge: Judge, *, model_info: dict, adapter: str | None = None,
             data_dir: str | Path | None = None, split: str | None = None, limit: int | None = None,
             seed: int = 0, progress=None, chosen=None) -> EvalResult:
    """Evaluate one model (+ adapter) on one suite. ``progress`` is a callable taking a batch size;
    ``chosen`` is the suite's split when the caller has loaded it already."""
    started = time.perf_counter()
    chosen = chosen if chosen is not None else suite.load_split(data_dir, split)
    records = sample(chosen.records, limit, seed)
    gens = generator.generate([r["prompt"] for r in records], progress=progress)
    judged = judge_generations(records, [g.text for g in gens], judge)
    for row, g in zip(judged, gens, strict=True):
        row["new_tokens"] = g.new_tokens
        if g.truncated:
            row["prompt_truncated_to_tokens"] = generator.max_prompt_tokens
        if not row["prompt"].strip():
            row["note"] = "empty prompt"
    elapsed = time.perf_counter() - started
    gen_tokens = sum(g.new_tokens for g in gens)
    gen_seconds = generator.stats.seconds
    report = {
        "suite": suite.name, "suite_file": str(suite.path) if suite.path else None,
        "model": model_info.get("name"), "model_provenance": model_info,
        "adapter": adapter, "adapter_hash": file_hash(adapter) if adapter else None,
        "judge": judge.name, "judge_detail": judge.describe(),
        **summarise(judged),
        "headline": suite.headline,
        "max_new_tokens": generator.max_new_tokens, "batch_size": generator.batch_size,
        "elapsed_s": round(elapsed, 2), "generation_s": round(gen_seconds, 2),
        "generated_tokens": gen_tokens, "prompt_tokens": sum(g.prompt_tokens for g in gens),
        "tokens_per_s": round(gen_tokens / gen_seconds, 2) if gen_seconds else None,
        "truncated_prompts": sum(g.truncated for g in gens),
        "data": {**chosen.provenance(), "sampled": len(records), "limit": limit, "sample_seed": seed},
        "seed": seed, "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return EvalResult(report, judged)


def evaluate_model(suite: str | Path, model: str = "smollm2-135m-instruct", adapter: str | Path | None = None, *,
                   judge: str | None = None, limit: int | None = None, split: str | None = None, seed: int = 0,
                   max_new_tokens: int | None = None, batch_size: int = 32, data_dir: str | Path | None = None,
                   endpoint: str | None = None, device: str | None = None, dtype: str = "float32",
                   out: str | Path | None = None,
                   progress: Callable[[str, int], Callable[[int], None]] | None = None) -> EvalResult:
    """One call: load ``suite`` (a name or YAML) and ``model`` (+ LoRA ``adapter``: a folder or a Hugging
    Face id), generate, judge, report. With ``endpoint`` (an OpenAI-compatible base URL, e.g. vLLM's
    ``http://host:8000/v1``) ``model`` is the served model's name and nothing is loaded here.

    ``progress(description, total)`` returns a callable advanced by each batch; ``out`` writes
    ``report.json`` and ``generations.jsonl`` there. ``safefed.evaluate`` is this function.
    """
    from .judges import make_judge
    from .suite import load_suite

    s = load_suite(str(suite))
    j = make_judge(judge or s.judge)
    chosen = s.load_split(data_dir, split)
    total = len(chosen.records)
    tokens = max_new_tokens or s.max_new_tokens
    if endpoint is not None:
        from ..constitution.backends import OpenAIBackend

        if adapter is not None:
            raise UserError("--adapter and --endpoint: the endpoint serves its own model; load the adapter there")
        gen = OpenAIBackend(endpoint, model_name=model, max_new_tokens=tokens, system_prompt=s.system_prompt,
                            concurrency=min(batch_size, 16))
        model_info = {"name": model, "source": "endpoint", "endpoint": gen.url}
    else:
        from ..generation import Generator
        from ..models import adapter_folder, load_causal_lm

        adapter = adapter_folder(adapter) if adapter is not None else None
        lm, tok, resolved = load_causal_lm(model, adapter=adapter, dtype=dtype, device=device)
        gen = Generator(lm, tok, max_new_tokens=tokens, batch_size=batch_size, system_prompt=s.system_prompt,
                        chat_template=s.chat_template)
        model_info = {**resolved.provenance(), "dtype": dtype, "device": str(lm.device)}
    advance = progress(f"generating ({s.name})", min(limit or total, total)) if progress else None
    result = evaluate(s, gen, j, model_info=model_info, adapter=str(adapter) if adapter else None,
                      data_dir=data_dir, split=split, limit=limit, seed=seed, progress=advance, chosen=chosen)
    if out is not None:
        write_result(result, out)
    return result


def write_result(result: EvalResult, out: str | Path) -> Path:
    """``out/report.json`` and ``out/generations.jsonl``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")
    with (out / "generations.jsonl").open("w", encoding="utf-8") as fh:
        for row in result.records:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
