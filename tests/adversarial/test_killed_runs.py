"""A Flower simulation killed mid-round leaves no Ray process behind.

SIGTERM: Ray's own handler (installed by ``ray.init``) ends the driver and every Ray process at once.
SIGKILL cannot be handled: Ray's GCS and raylet die with the driver, and its two agents (dashboard and
runtime-env), which fate-share with the raylet, notice and exit by themselves within about a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SIMULATION = textwrap.dedent("""
    import sys
    from safefed.federated.app import FedConfig, run_simulation
    cfg = FedConfig(num_clients=2, rounds=5, local_steps=4, per_client=6, gate=None, out=sys.argv[1],
                    data_dir=sys.argv[2])
    run_simulation(cfg, num_cpus_per_client=1)
""")


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root`` (read from /proc: ps cuts long lines)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # the process ended while we looked
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            try:
                found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its reaper is gone for our purpose
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def _started_simulation(tmp_path, data_dir) -> tuple[subprocess.Popen, dict[int, str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-c", SIMULATION, str(tmp_path / "sim"), str(data_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until a client is training inside Ray
        ray = _descendants(proc.pid)
        if any("ClientAppActor" in c for c in ray.values()) and any("raylet" in c for c in ray.values()):
            time.sleep(3)
            return proc, _descendants(proc.pid)
        if proc.poll() is not None:
            pytest.fail(f"the simulation ended (status {proc.returncode}) before it could be killed")
        time.sleep(1)
    proc.kill()
    pytest.fail("the simulation did not start a Ray client in 240 s")


@pytest.mark.slow
@pytest.mark.parametrize("sig, within", [(signal.SIGTERM, 30), (signal.SIGKILL, 180)], ids=["SIGTERM", "SIGKILL"])
def test_killed_simulation_leaves_no_ray_process(tmp_path, data_dir, smollm2_path, sig, within):
    proc, ray = _started_simulation(tmp_path, data_dir)
    assert len(ray) >= 4, ray  # gcs_server, raylet, agents, the client actor
    proc.send_signal(sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in ray):
        time.sleep(2)
    left = {p: c[:80] for p, c in ray.items() if _alive(p)}
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {within} s after {sig.name}: {left}"
