"""Data sets by name: read from a data directory, else fetched from their public home and cached.

Every loader returns plain records (dicts) with normalised fields: ``id`` always; ``prompt`` for
prompt sets; ``response`` for pairs; ``label`` (``harmful`` / ``benign``) where a set says so;
``category`` where it has one.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .paths import cache_dir

Record = dict
_GH = "https://raw.githubusercontent.com"
_JBB_ART = f"{_GH}/JailbreakBench/artifacts/909e68c01d94222b8ad2e397a017e2e12e2adb73/attack-artifacts"
_ARTIFACT_FILES = [
    "DSN/white_box/llama-2-7b-chat-hf.json", "DSN/white_box/vicuna-13b-v1.5.json",
    "GCG/transfer/gpt-3.5-turbo-1106.json", "GCG/transfer/gpt-4-0125-preview.json",
    "GCG/white_box/llama-2-7b-chat-hf.json", "GCG/white_box/vicuna-13b-v1.5.json",
    *[f"{m}/{k}/{t}.json" for m, k in (("JBC", "manual"), ("PAIR", "black_box"),
                                       ("prompt_with_random_search", "black_box"))
      for t in ("gpt-3.5-turbo-1106", "gpt-4-0125-preview", "llama-2-7b-chat-hf", "vicuna-13b-v1.5")],
]


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files (relative path -> public URL; ``.gz`` URLs are unpacked) and a loader."""

    name: str
    files: dict[str, str]
    loader: Callable[[Path], list[Record]]
    description: str


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _advbench(d: Path) -> list[Record]:
    rows = _read_csv(d / "harmful_behaviors.csv")
    return [{"id": f"advbench-{i}", "prompt": r["goal"], "target": r["target"], "label": "harmful",
             "category": None} for i, r in enumerate(rows)]


def _xstest(d: Path) -> list[Record]:
    return [{"id": f"xstest-{r['id']}", "prompt": r["prompt"], "category": r["type"], "focus": r["focus"],
             "label": "benign" if r["label"] == "safe" else "harmful"} for r in _read_csv(d / "xstest_prompts.csv")]


def _jailbreakbench(d: Path) -> list[Record]:
    out = []
    for label, fname in (("harmful", "harmful-behaviors.csv"), ("benign", "benign-behaviors.csv")):
        for r in _read_csv(d / fname):
            out.append({"id": f"jbb-{label}-{r['Index']}", "prompt": r["Goal"], "label": label,
                        "category": r["Category"], "behavior": r["Behavior"], "source": r["Source"]})
    return out


def _jbb_artifacts(d: Path) -> list[Record]:
    out = []
    for rel in _ARTIFACT_FILES:
        path = d / rel
        if not path.exists():
            continue
        method, kind, target = rel.split("/")[0], rel.split("/")[1], Path(rel).stem
        for j in json.loads(path.read_text(encoding="utf-8"))["jailbreaks"]:
            out.append({"id": f"jbbart-{method}-{target}-{j['index']}", "goal": j["goal"],
                        "prompt": j["prompt"], "response": j["response"], "jailbroken": bool(j["jailbroken"]),
                        "category": j["category"], "method": method, "attack_type": kind, "target_model": target})
    return out


def split_hh_transcript(text: str) -> list[tuple[str, str]]:
    """``"\\n\\nHuman: …\\n\\nAssistant: …"`` -> [(role, text), …] with roles ``user``/``assistant``."""
    turns: list[tuple[str, str]] = []
    for chunk in text.split("\n\nHuman: ")[1:]:
        human, _, rest = chunk.partition("\n\nAssistant: ")
        turns.append(("user", human.strip()))
        if _:
            turns.append(("assistant", rest.strip()))
    return turns


def _hh(d: Path) -> list[Record]:
    out = []
    for i, row in enumerate(_read_jsonl(d / "test.jsonl")):
        chosen, rejected = split_hh_transcript(row["chosen"]), split_hh_transcript(row["rejected"])
        users = [t for r, t in chosen if r == "user"]
        out.append({"id": f"hh-{i}", "prompt": users[0] if users else "", "last_prompt": users[-1] if users else "",
                    "n_user_turns": len(users),
                    "chosen": chosen[-1][1] if chosen and chosen[-1][0] == "assistant" else "",
                    "rejected": rejected[-1][1] if rejected and rejected[-1][0] == "assistant" else "",
                    "chosen_transcript": row["chosen"], "rejected_transcript": row["rejected"]})
    return out


def _harmfulqa(d: Path) -> list[Record]:
    out = []
    for fname, source in (("catqa_english.json", "catqa"), ("harmfulqa.json", "harmfulqa")):
        data = json.loads((d / fname).read_text(encoding="utf-8"))
        for cat, subs in data.items():
            for sub, questions in subs.items():
                for q in questions:
                    out.append({"id": f"{source}-{len(out)}", "prompt": q, "label": "harmful", "category": cat,
                                "subcategory": sub.rstrip(":"), "source": source})
    return out


def _davidson(d: Path) -> list[Record]:
    names = {"0": "hate", "1": "offensive", "2": "neither"}
    return [{"id": f"davidson-{r['']}", "text": r["tweet"], "class": names[r["class"]],
             "label": "benign" if r["class"] == "2" else "harmful"} for r in _read_csv(d / "labeled_data.csv")]


def _self_instruct(d: Path) -> list[Record]:
    out = []
    for row in _read_jsonl(d / "seed_tasks.jsonl"):
        inst = row["instances"][0]
        prompt = row["instruction"] + (f"\n\n{inst['input']}" if inst.get("input") else "")
        out.append({"id": row["id"], "prompt": prompt, "response": inst["output"], "label": "benign"})
    return out


def _gsm8k(d: Path) -> list[Record]:
    out = []
    for split in ("train", "test"):
        for i, row in enumerate(_read_jsonl(d / f"{split}.jsonl")):
            out.append({"id": f"gsm8k-{split}-{i}", "prompt": row["question"], "response": row["answer"],
                        "split": split, "label": "benign"})
    return out


def _constitutional_ai(d: Path) -> list[Record]:
    data = json.loads((d / "constitution_anthropic.json").read_text(encoding="utf-8"))
    return [{"id": f"cai-{i}", **p} for i, p in enumerate(data["constitutions"])]


def _coconot(d: Path) -> list[Record]:
    return [{"id": f"coconot-{r['id']}", "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
             "category": r["category"], "subcategory": r["subcategory"], "label": "benign"}
            for r in _read_jsonl(d / "coconot_pref.jsonl")]


def _cyberseceval_frr(d: Path) -> list[Record]:
    rows = json.loads((d / "mitre_frr.json").read_text(encoding="utf-8"))
    return [{"id": f"frr-{i}", "prompt": r["mutated_prompt"], "label": "benign"} for i, r in enumerate(rows)]


def _diasafety(d: Path) -> list[Record]:
    out = []
    for split in ("train", "val", "test"):
        for i, r in enumerate(json.loads((d / f"{split}.json").read_text(encoding="utf-8"))):
            out.append({"id": f"diasafety-{split}-{i}", "prompt": r["context"], "response": r["response"],
                        "category": r["category"], "split": split,
                        "label": "harmful" if r["label"] == "Unsafe" else "benign"})
    return out


# GPTFuzz question indices whose text is word for word in hh-rlhf-harmless-base's test file: drop them
# wherever hh-rlhf is measured
GPTFUZZ_IN_HH_TEST = frozenset({
    14, 15, 17, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 47, 48, 49, 50, 51, 52, 53, 54, 66, 71, 77, 81, 82
})


def _gptfuzz(d: Path) -> list[Record]:
    questions = {r["index"]: r["text"] for r in _read_csv(d / "question_list.csv")}
    out = []
    for split in ("train", "evaluate"):
        for i, r in enumerate(_read_csv(d / f"{split}.csv")):
            q = int(r["question"])
            out.append({"id": f"gptfuzz-{split}-{i}", "prompt": questions[r["question"]], "response": r["Response"],
                        "question": q, "split": split, "in_hh_rlhf_test": q in GPTFUZZ_IN_HH_TEST,
                        "label": "harmful" if r["label"] == "1" else "benign"})
    return out


def _safetext(d: Path) -> list[Record]:
    data = json.loads((d / "SafeText.json").read_text(encoding="utf-8"))
    out = []
    for n, (scenario, advice) in enumerate(data.items()):
        for label, key in (("harmful", "unsafe"), ("benign", "safe")):
            for j, text in enumerate(advice.get(key, [])):
                out.append({"id": f"safetext-{n}-{key}-{j}", "prompt": scenario, "response": text,
                            "scenario": n, "label": label})
    return out


def _ailuminate(d: Path) -> list[Record]:
    rows = _read_csv(d / "airr_official_1.0_demo_en_us_prompt_set_release.csv")
    return [{"id": r["release_prompt_id"], "prompt": r["prompt_text"], "hazard": r["hazard"], "persona": r["persona"],
             "label": "harmful"} for r in rows]


REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("advbench", {
        "harmful_behaviors.csv": f"{_GH}/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73/"
                                 "data/advbench/harmful_behaviors.csv"}, _advbench,
        "520 harmful behaviours (Zou et al. 2023)"),
    DatasetSpec("xstest", {
        "xstest_prompts.csv": f"{_GH}/paul-rottger/exaggerated-safety/d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d/"
                              "xstest_prompts.csv"}, _xstest,
        "250 safe + 200 unsafe prompts for over-refusal (Röttger et al. 2024)"),
    DatasetSpec("jailbreakbench", {
        f: f"https://huggingface.co/datasets/JailbreakBench/JBB-Behaviors/resolve/main/data/{f}"
        for f in ("harmful-behaviors.csv", "benign-behaviors.csv")}, _jailbreakbench,
        "100 harmful + 100 topic-matched benign behaviours, 10 categories"),
    DatasetSpec("jailbreakbench-artifacts", {f: f"{_JBB_ART}/{f}" for f in _ARTIFACT_FILES}, _jbb_artifacts,
                "jailbreak prompts with real model responses and a jailbroken label"),
    DatasetSpec("hh-rlhf-harmless-base", {
        "test.jsonl": f"{_GH}/anthropics/hh-rlhf/354e5c3cb8960630860dd5774a6ac2a58313bf4d/harmless-base/"
                      "test.jsonl.gz"}, _hh, "2,312 red-team transcripts with chosen/rejected replies"),
    DatasetSpec("harmfulqa-catqa", {
        f: f"{_GH}/declare-lab/red-instruct/73c759c93d2f6b1d8c7b058ab7bcec5fb0c28fa2/harmful_questions/{f}"
        for f in ("catqa_english.json", "harmfulqa.json")}, _harmfulqa, "2,510 harmful questions by category"),
    DatasetSpec("davidson-hate-offensive", {
        "labeled_data.csv": f"{_GH}/t-davidson/hate-speech-and-offensive-language/"
                            "cb50f7e9eb855a99abc51423bf40df0e26d6fe30/data/labeled_data.csv"}, _davidson,
        "24,783 tweets labelled hate / offensive / neither"),
    DatasetSpec("self-instruct-seed", {
        "seed_tasks.jsonl": f"{_GH}/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23/data/"
                            "seed_tasks.jsonl"}, _self_instruct, "175 benign instruction/response pairs"),
    DatasetSpec("gsm8k", {
        f"{s}.jsonl": f"{_GH}/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/"
                      f"grade_school_math/data/{s}.jsonl" for s in ("train", "test")}, _gsm8k,
        "grade-school maths problems with worked answers"),
    DatasetSpec("constitutional-ai", {
        "constitution_anthropic.json": f"{_GH}/huggingface/llm-swarm/c3249dbfd060befa36e51048b4c632dbb00eec64/"
                                       "examples/constitutional-ai/constitution_anthropic.json"},
        _constitutional_ai, "16 critique/revision principle pairs (HF llm-swarm)"),
    DatasetSpec("coconot-pref", {
        "coconot_pref.jsonl": f"{_GH}/allenai/noncompliance/25bf77cc668814360405cdb8197c4368205806c7/data/"
                              "coconot_pref.jsonl"}, _coconot,
        "927 prompts (479 benign but unsafe-sounding) with a helpful and a less preferred answer"),
    DatasetSpec("cyberseceval-frr", {
        "mitre_frr.json": f"{_GH}/meta-llama/PurpleLlama/4be64c3a24442b51c76175e6ec67722cc3f5fe38/"
                          "CybersecurityBenchmarks/datasets/mitre_frr/mitre_frr.json"}, _cyberseceval_frr,
        "750 benign borderline security requests (no answers)"),
    DatasetSpec("diasafety", {
        f"{s}.json": f"{_GH}/thu-coai/DiaSafety/5106a041b1c7e36f30e02a97c44897a7f2057278/DiaSafety_dataset/{s}.json"
        for s in ("train", "val", "test")}, _diasafety, "11,209 (context, response) pairs labelled Safe/Unsafe"),
    DatasetSpec("gptfuzz-labeled", {
        **{f"{s}.csv": f"{_GH}/sherdencooper/GPTFuzz/1eddeb565740ae311b5f4950492b011a6f866fe7/datasets/"
                       f"responses_labeled/{s}.csv" for s in ("train", "evaluate")},
        "question_list.csv": f"{_GH}/sherdencooper/GPTFuzz/1eddeb565740ae311b5f4950492b011a6f866fe7/datasets/"
                             "questions/question_list.csv",
    }, _gptfuzz,
        "7,700 responses to 100 harmful questions labelled harmful compliance or not"),
    DatasetSpec("safetext", {
        "SafeText.json": f"{_GH}/sharonlevy/SafeText/25bb7a8c4a00634bc0ea1b5e85bec85cf32f36aa/SafeText.json"},
        _safetext, "367 everyday scenarios with safe and unsafe advice"),
    DatasetSpec("ailuminate-demo", {
        "airr_official_1.0_demo_en_us_prompt_set_release.csv":
            f"{_GH}/mlcommons/ailuminate/769cc2be9d20c8d4fb26ce53b68865ed41dfb8e2/"
            "airr_official_1.0_demo_en_us_prompt_set_release.csv"}, _ailuminate,
        "1,200 harmful prompts over MLCommons' hazards (no answers)"),
]}


def _spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise UserError(f"unknown data set {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def _complete(d: Path, spec: DatasetSpec) -> bool:
    # jailbreakbench-artifacts may be partial in a user's folder: one file is enough to use it
    need = list(spec.files)[:1] if spec.name == "jailbreakbench-artifacts" else list(spec.files)
    return all((d / f).is_file() for f in need)


def _fetch(url: str, attempts: int = 3, pause: float = 1.0) -> bytes:
    """The bytes at ``url``, retried with a growing pause on a network error (not on HTTP 4xx)."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - fixed https URLs
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts - 1:
                raise
        except OSError:
            if attempt == attempts - 1:
                raise
        time.sleep(pause * 2**attempt)
    raise AssertionError("unreachable")


def _download(spec: DatasetSpec, target: Path) -> None:
    for rel, url in spec.files.items():
        dest = target / rel
        if dest.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        payload = _fetch(url)
        if url.endswith(".gz"):
            payload = gzip.decompress(payload)
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(payload)
        os.replace(tmp, dest)


def dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder holding data set ``name``: ``data_dir`` / ``$SAFEFED_DATA``, else the download cache."""
    spec = _spec(name)
    root = data_dir or os.environ.get("SAFEFED_DATA")
    if root:
        d = Path(root).expanduser() / name
        if _complete(d, spec):
            return d
    cached = cache_dir("data") / name
    if _complete(cached, spec):
        return cached
    try:
        _download(spec, cached)
    except OSError as exc:
        where = f" in {Path(root).expanduser() / name}" if root else ""
        raise UserError(f"data set {name!r} not found{where} and not downloadable ({exc.__class__.__name__}); "
                        "pass --data-dir DIR or set SAFEFED_DATA to a folder that holds "
                        f"{name}/ (e.g. ../shared/data)") from None
    return cached


def load(name: str, data_dir: str | Path | None = None) -> list[Record]:
    """Records of data set ``name`` (see module docstring for the fields)."""
    return _spec(name).loader(dataset_dir(name, data_dir))


def content_hash(records: list[Record], fields: tuple[str, ...] = ("id", "prompt")) -> str:
    """Short sha256 over the given fields of ``records``, in order: names the exact content used."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.get(f) for f in fields], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def read_records(path: str | Path) -> list[Record]:
    """Records from a user's JSONL / JSON / CSV file (small files; streaming lives in the filter)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".csv":
        return _read_csv(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, list) else [data]
    records = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return records
