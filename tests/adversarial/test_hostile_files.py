"""A hostile server controls the files it hands out: policies, checkpoints, adapters, model folders,
configs. None of them may run code, allocate without bound or hang; each gives exit 2 (or a one-line
UserError) naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_main
from hostile import not_a_regular_file

from safefed.errors import UserError


class _Payload:
    """Unpickling this object creates the marker file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _detoxify_policy(tmp_path: Path, checkpoint: Path) -> Path:
    policy = tmp_path / "evil.yaml"
    policy.write_text(f"name: evil\nscorers:\n  - type: detoxify\n    options:\n      checkpoint: {checkpoint}\n")
    return policy


# 2. code execution through a filter policy ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_crafted_detoxify_checkpoint_is_refused_and_never_runs(tmp_path, monkeypatch, capsys, kind):
    import pickle

    import torch

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "model.ckpt"
    payload = {"config": {"arch": {"args": {}}}, "state_dict": {}, "x": _Payload(marker)}
    if kind == "torch.save":
        torch.save(payload, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload))
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')
    code, _, err = run_main(monkeypatch, capsys, "filter", str(data), "--policy", str(_detoxify_policy(tmp_path, ckpt)),
                            "--out", str(tmp_path / "o"))
    assert code == 2 and "weights_only=True" in err and "Traceback" not in err
    assert not marker.exists()


def test_detoxify_checkpoint_of_tensors_in_the_wrong_shape_is_refused(tmp_path):
    import torch

    from safefed.filtering.scorers import build_scorer

    ckpt = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.raises(UserError, match=str(ckpt)):
        build_scorer("detoxify", {"checkpoint": str(ckpt)}, "response")


# adapters and model folders ------------------------------------------------------------------------------

def _adapter(tmp_path: Path, config: object, weights: bytes | None = None, name: str = "adapter_model.safetensors"):
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (folder / name).write_bytes(weights)
    return folder


LORA = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}


@pytest.mark.parametrize("case, expect", [
    ("garbage safetensors", "not a valid safetensors file"),
    ("pickle only", "adapter_model.bin is a pickle"),
    ("rank 100000", "r=100000"),
    ("rank as text", "r='8'"),
    ("config not JSON", "not valid JSON"),
    ("config a list", "expected a JSON object"),
    ("huge tensor header", "a rank above"),
])
def test_hostile_adapter_folders_are_refused_before_loading(tmp_path, case, expect):
    from safefed.models import check_adapter

    if case == "garbage safetensors":
        folder = _adapter(tmp_path, LORA, os.urandom(4096))
    elif case == "pickle only":
        folder = _adapter(tmp_path, LORA, b"\x80\x04K\x01.", name="adapter_model.bin")
    elif case == "rank 100000":
        folder = _adapter(tmp_path, {**LORA, "r": 100_000}, b"")
    elif case == "rank as text":
        folder = _adapter(tmp_path, {**LORA, "r": "8"}, b"")
    elif case == "config not JSON":
        folder = _adapter(tmp_path, "{r: 8", b"")
    elif case == "config a list":
        folder = _adapter(tmp_path, [1, 2], b"")
    else:  # the config says r=2, the weights hold a rank-2000 LoRA tensor
        from safetensors.numpy import save

        folder = _adapter(tmp_path, LORA, save({"base_model.model.layers.0.q_proj.lora_A.weight":
                                                np.zeros((2000, 32), np.float16)}))
    with pytest.raises(UserError, match=expect):
        check_adapter(folder)


def test_eval_with_a_garbage_adapter_exits_2_without_a_traceback(tmp_path, monkeypatch, capsys, tiny_llama_path,
                                                                 data_dir):
    folder = _adapter(tmp_path, LORA, os.urandom(4096))
    code, _, err = run_main(monkeypatch, capsys, "eval", "advbench", "--model", str(tiny_llama_path), "--adapter",
                            str(folder), "--limit", "1", "--out", str(tmp_path / "o"), "--data-dir", str(data_dir))
    assert code == 2 and "not a valid safetensors file" in err and "Traceback" not in err


@pytest.mark.parametrize("config", ["{}", "[]", "not json"])
def test_a_broken_model_folder_is_a_user_error(tmp_path, tiny_llama_path, config):
    import shutil

    from safefed.models import load_causal_lm

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_path, folder)
    (folder / "config.json").write_text(config)
    with pytest.raises(UserError, match="cannot load model"):
        load_causal_lm(str(folder))


def test_a_model_folder_with_only_pickled_weights_is_refused(tmp_path, tiny_llama_path):
    import shutil

    import torch

    from safefed.models import load_causal_lm

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama_path, folder)
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="cannot load model"):
        load_causal_lm(str(folder))


# config paths that are not regular files -------------------------------------------------------------------

def _gate_validate(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safefed.cli", "gate", "validate", path], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "folder", "too big"])
def test_gate_validate_on_something_not_a_config_file(tmp_path, kind):
    if kind == "too big":
        path = tmp_path / "big.yaml"
        path.write_text("# padding\n" * 200_000)
    else:
        path = not_a_regular_file(tmp_path, kind, "gate.yaml")
    started = time.perf_counter()
    res = _gate_validate(str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert str(path) in res.stderr and time.perf_counter() - started < 60


def test_policy_and_constitution_on_a_fifo_exit_2(tmp_path, monkeypatch, capsys):
    pipe = not_a_regular_file(tmp_path, "fifo", "policy.yaml")
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')
    code, _, err = run_main(monkeypatch, capsys, "filter", str(data), "--policy", str(pipe),
                            "--out", str(tmp_path / "o"))
    assert code == 2 and "not a regular file" in err
    code, _, err = run_main(monkeypatch, capsys, "constitution", "validate", str(pipe))
    assert code == 2 and "not a regular file" in err


def test_no_path_in_the_package_unpickles():
    """A guard on the source: no call in safefed can unpickle (safetensors, JSON, ``weights_only=True``)."""
    import ast

    import safefed

    def risky(call: ast.Call) -> bool:
        name = ast.unparse(call.func)
        kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
        return (name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load")
                or (name == "torch.load" and kw.get("weights_only") != "True")
                or kw.get("allow_pickle") == "True" or kw.get("trust_remote_code") == "True")

    root = Path(safefed.__file__).parent
    hits = [f"{p.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}" for p in sorted(root.rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.Call) and risky(node)]
    assert not hits, hits
