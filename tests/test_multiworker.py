"""`embbert train --strategy multi-worker`: two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy,
TF_CONFIG), one killed mid-run, the cluster restarted with --resume: training goes on from the chief's
last BackupAndRestore checkpoint, no finished epoch is repeated. Bounded in time; loopback only."""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EMBBERT = Path(sys.executable).parent / "embbert"
EPOCHS = 4
DEADLINE_S = 540  # the whole test; every process is killed when it is reached


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(index: int, ports: list[int], task: Path, out: Path, log: Path, resume: bool) -> subprocess.Popen:
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    env = {k: v for k, v in os.environ.items() if k != "EMBBERT_DATA_DIR"}
    env["TF_CONFIG"] = json.dumps(tf_config)
    argv = [str(EMBBERT), "train", "--task", str(task), "--out", str(out), "--preset", "nano", "--max-length", "16",
            "--epochs", str(EPOCHS), "--qat-epochs", "0", "--batch-size", "16", "--learning-rate", "1e-3",
            "--strategy", "multi-worker"] + (["--resume"] if resume else [])
    with open(log, "ab") as f:
        return subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _float_epochs(out: Path) -> list[int]:
    path = out / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r["stage"] == "float"]


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait(procs, until: float) -> None:
    for p in procs:
        try:
            p.wait(timeout=max(1.0, until - time.time()))
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.slow
def test_two_workers_killed_and_restarted_resume_from_backup(tmp_path):
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "task", num_labels=2, n_train=220, n_test=40, seed=5)
    out, logs = tmp_path / "run", [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    end = time.time() + DEADLINE_S
    procs: list[subprocess.Popen] = []
    try:
        ports = _free_ports(2)
        procs = [_start(i, ports, task, out, logs[i], resume=False) for i in range(2)]
        while len(_float_epochs(out)) < 2:  # two epochs finished on the cluster
            assert time.time() < end and all(p.poll() is None for p in procs), _tail(logs)
            time.sleep(0.5)
        os.killpg(procs[1].pid, signal.SIGKILL)  # worker 1 dies mid-run
        procs[1].wait(timeout=30)
        _wait(procs[:1], min(end, time.time() + 90))  # the chief fails on its own, or is stopped
        _kill(procs[0])
        before = _float_epochs(out)
        assert 2 <= len(before) < EPOCHS and (out / ".train" / "float_backup").is_dir(), _tail(logs)

        ports = _free_ports(2)  # the cluster restarted, both workers with --resume
        procs = [_start(i, ports, task, out, logs[i], resume=True) for i in range(2)]
        _wait(procs, end)
        assert [p.poll() for p in procs] == [0, 0], _tail(logs)
    finally:
        for p in procs:
            _kill(p)
    after = _float_epochs(out)
    # No finished epoch repeated, none lost: the run goes on at the first unfinished epoch.
    assert after == list(range(1, EPOCHS + 1)), (before, after)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["float_test"] > 0.5 and metrics["test_examples"] == 40
    assert not (out / ".train").exists() and not (out / ".worker-1").exists()


def _tail(logs) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:] for p in logs if p.exists())
