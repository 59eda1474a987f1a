"""safefed's Flower app on Flower's deployment engine: a SuperLink, two SuperNodes and ``flwr run``, on loopback.

Everything runs from the installed environment (``--disable-runtime-dependency-installation``; a fake ``uv``
first on PATH proves nothing tried to ``uv sync``). Every process this test starts is stopped by PID,
together with the SuperExec / ServerApp / ClientApp processes Flower spawned below them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flower"
BIN = Path(sys.executable).parent
CONNECTION = "safefed-test"
RUN_TIMEOUT_S = 1200  # the run itself takes a few minutes on 2 busy CPU cores


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"{proc.args[0]} not listening on {port} after {timeout}s:\n{_tail(log)}")


def _tail(path: Path, n: int = 6000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


class Processes:
    """Popen'd servers, logs in files; :meth:`stop` ends them and everything they spawned, by PID."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=out, stderr=subprocess.STDOUT, env=self.env)
        out.close()
        proc.log = self.logs / f"{name}.log"  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def descendants(self) -> list:
        import psutil

        found = []
        for p in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += psutil.Process(p.pid).children(recursive=True)
        return found

    @staticmethod
    def still_serving(ports: list[int]) -> list[str]:
        """Processes whose command line names one of ``ports`` (SuperExec and app processes do)."""
        import psutil

        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if ("flwr" in cmd or "flower" in cmd) and any(re.search(rf":{port}\b", cmd) for port in ports):
                found.append(f"{p.info['pid']} {cmd}")
        return found

    def stop(self) -> list[str]:
        """Terminate, wait, kill: children first seen now, then the servers, then any child left over."""
        import psutil

        children = self.descendants()  # SuperExec (own session), flwr-serverapp / flwr-clientapp
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        _, alive = psutil.wait_procs(alive, timeout=10)
        return [f"{c.pid} {c.name()}" for c in alive if c.is_running()]


def _flwr(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _json_out(res: subprocess.CompletedProcess) -> dict:
    text = res.stdout
    start = text.find("{")
    assert res.returncode == 0 and start >= 0, f"rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(text[start:])


@pytest.mark.slow
def test_deployment_engine_two_supernodes(tmp_path, data_dir, smollm2_path):
    flwr_home, logs, out = tmp_path / "flwr-home", tmp_path / "logs", tmp_path / "deploy"
    for d in (flwr_home, logs, tmp_path / "bin"):
        d.mkdir()
    # A `uv` that only records it was called: nothing may install the app's dependencies.
    uv_marker = tmp_path / "uv-was-called"
    fake_uv = tmp_path / "bin" / "uv"
    fake_uv.write_text(f'#!/bin/sh\necho "$@" >> "{uv_marker}"\nexit 1\n')
    fake_uv.chmod(0o755)
    env = {**os.environ, "FLWR_HOME": str(flwr_home), "SAFEFED_DATA": str(data_dir), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "PATH": os.pathsep.join([str(tmp_path / "bin"), str(BIN), os.environ.get("PATH", "")])}

    # flwr >= 1.41 reads SuperLink connections from $FLWR_HOME/config.toml, not from the app's pyproject.toml.
    # The SuperLink serves its Fleet, Control and Runtime APIs over HTTP on one --host/--port.
    link_port = _free_port()
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n')
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)

    procs = Processes(env, logs)
    leftover: list[str] = []
    ports: list[int] = []
    try:
        link = procs.start("superlink", "flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
                           "--host", "127.0.0.1", "--port", str(link_port))
        _wait_listening(link_port, link, link.log)
        ports.append(link_port)
        for pid in range(2):
            node_port = _free_port()
            ports.append(node_port)
            node = procs.start(f"supernode-{pid}", "flower-supernode", "--insecure",
                               "--superlink", f"127.0.0.1:{link_port}", "--host", "127.0.0.1", "--port", str(node_port),
                               "--node-config", f"partition-id={pid} num-partitions=2")
            _wait_listening(node_port, node, node.log)

        overrides = (f'num-clients=2 rounds=1 local-steps=1 per-client=6 gate-harmful-sample=3 gate-benign-sample=1 '
                     f'initial-adapter="" out="{out}"')
        started = _json_out(_flwr(env, "run", str(app), CONNECTION, "--run-config", overrides, "--format", "json"))
        assert started.get("success"), started
        run_id = started["run-id"]

        t0, status = time.monotonic(), ""
        while time.monotonic() - t0 < RUN_TIMEOUT_S:
            listed = _json_out(_flwr(env, "ls", CONNECTION, "--run-id", str(run_id), "--format", "json"))
            status = listed["runs"][0]["status"]
            if status.startswith("finished"):
                break
            for proc in procs.procs:
                assert proc.poll() is None, f"{proc.args[0]} died:\n{_tail(proc.log)}"
            time.sleep(5)
        run_log = _flwr(env, "log", str(run_id), CONNECTION, "--show").stdout
        (logs / "run.log").write_text(run_log)
        detail = f"status {status!r} after {time.monotonic() - t0:.0f}s\n--- run log ---\n{run_log[-8000:]}\n" + \
            "\n".join(f"--- {p.log.name} ---\n{_tail(p.log, 3000)}" for p in procs.procs)
        assert status == "finished:completed", detail
    finally:
        leftover = procs.stop()
    assert not leftover, f"processes left running: {leftover}"
    serving = procs.still_serving(ports)
    assert not serving, f"Flower processes still serve this test's ports: {serving}"

    # The app used the installed environment: nothing called uv, and the pyproject was not rewritten.
    assert not uv_marker.exists(), f"uv was called: {uv_marker.read_text()}"
    assert (app / "pyproject.toml").read_text() == (EXAMPLE / "pyproject.toml").read_text()

    rows = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines() if line.strip()]
    decisions = [r for r in rows if r["event"] == "decision"]
    assert len(decisions) == 2, rows
    assert all(r["round"] == 1 for r in decisions), rows
    assert any(r["event"] == "round_complete" and r["round"] == 1 for r in rows), rows
    assert (out / "adapter" / "adapter_config.json").exists()
    server = json.loads((out / "server.json").read_text())
    assert server["config"]["num_clients"] == 2 and server["config"]["initial_adapter"] is None
