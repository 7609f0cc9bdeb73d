"""`embbert check` in worker processes (tflite/check.py: run_interpreters, CheckPool): the same logits and
figures as in one process, in order; errors, dead workers and Ctrl-C end the pool with one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from embbert.core.errors import EmbBertError


@pytest.fixture(scope="module")
def model(tiny_run_dir):
    """The int8 bytes of the conftest run and 300 encoded test examples."""
    from embbert.core.config import EmbBertConfig
    from embbert.datasets.pipeline import encoded_split
    from embbert.tflite.convert import convert_run

    if not (tiny_run_dir / "model_int8.tflite").is_file():
        convert_run(tiny_run_dir, max_calibration=100)
    tok, seg, labels, _ = encoded_split(tiny_run_dir, EmbBertConfig.load(tiny_run_dir), "test", 300)
    return (tiny_run_dir / "model_int8.tflite").read_bytes(), tok, seg, labels


@pytest.fixture
def always_parallel(monkeypatch):
    import embbert.tflite.check as check

    monkeypatch.setattr(check, "PARALLEL_MIN_SECONDS", 0.0)  # the pool whatever the set's size
    return check


def test_parallel_equals_serial(model, always_parallel):
    from embbert.tflite.check import compare_interpreters, run_interpreters

    data, tok, seg, labels = model
    serial = run_interpreters(data, tok, seg, jobs=1)
    parallel = run_interpreters(data, tok, seg, jobs=2)
    for kind in ("int8_tflite", "int8_tflm"):
        assert serial[kind]["jobs"] == 1 and parallel[kind]["jobs"] == 2
        assert parallel[kind]["logits"].dtype == np.int8 and parallel[kind]["logits"].shape == (300, 3)
        assert np.array_equal(serial[kind]["logits"], parallel[kind]["logits"])
    tok, seg, labels = tok[:100], seg[:100], labels[:100]
    a_models, a_agree = compare_interpreters(data, tok, seg, labels, "accuracy", False, jobs=1)
    b_models, b_agree = compare_interpreters(data, tok, seg, labels, "accuracy", False, jobs=2)
    assert a_agree == b_agree
    for kind in a_models:
        assert a_models[kind]["metric"] == b_models[kind]["metric"]
        assert (a_models[kind]["jobs"], b_models[kind]["jobs"]) == (1, 2)


def test_chunks_come_back_in_order(model):
    from embbert.tflite.check import CheckPool, run_interpreters

    data, tok, seg, _ = model
    rows = np.random.default_rng(0).permutation(120)  # every row different, in no particular order
    tok, seg = tok[rows], seg[rows]
    serial = run_interpreters(data, tok, seg, jobs=1)
    with CheckPool(data, tok, seg, jobs=2, chunk=7) as pool:  # 18 chunks over 2 workers
        for kind in ("int8_tflm", "int8_tflite"):
            out, cpu = pool.map(kind, 0, 120)
            assert np.array_equal(out, serial[kind]["logits"]) and cpu > 0
        part, _ = pool.map("int8_tflm", 13, 101)  # a range that starts and ends inside chunks
        assert np.array_equal(part, serial["int8_tflm"]["logits"][13:101])
    assert all(p.poll() is not None for p in pool.procs)


def test_jobs_one_and_small_sets_stay_in_process(model, monkeypatch):
    import embbert.tflite.check as check

    data, tok, seg, _ = model

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(check, "CheckPool", no_pool)
    for jobs in (1, 2):  # jobs=2: 40 examples of the tiny model take far below PARALLEL_MIN_SECONDS
        out = check.run_interpreters(data, tok[:40], seg[:40], jobs=jobs)
        assert {row["jobs"] for row in out.values()} == {1}
    assert np.array_equal(check.tflite_predict(data, tok[:9], seg[:9], jobs=2),
                          check.tflite_predict(data, tok[:9], seg[:9]))
    with pytest.raises(EmbBertError, match="jobs must be an integer >= 1"):
        check.run_interpreters(data, tok[:4], seg[:4], jobs=0)
    assert check.usable_cpus() >= 1


@pytest.mark.parametrize("kind", ["int8_tflm", "int8_tflite"])
def test_worker_error_is_one_line(model, always_parallel, kind):
    data, tok, seg, _ = model
    bad = tok[:80].copy()
    bad[57, 3] = 10 ** 6  # far outside the vocabulary: the GATHER of that example fails
    with pytest.raises(EmbBertError, match="invoke failed on example 57") as exc:
        always_parallel.run_interpreters(data, bad, seg[:80], (kind,), jobs=2)
    assert "\n" not in str(exc.value)
    with pytest.raises(EmbBertError, match="invoke failed on example 57"):  # the same words in one process
        always_parallel.run_interpreters(data, bad, seg[:80], (kind,), jobs=1)


def test_dead_worker_is_one_line(model):
    from embbert.tflite.check import CheckPool

    data, tok, seg, _ = model
    with pytest.raises(EmbBertError, match=r"TFLM check worker process died \(signal SIGKILL\)") as exc:
        with CheckPool(data, tok[:40], seg[:40], jobs=2, chunk=5) as pool:
            pool.procs[0].kill()
            pool.procs[0].wait()
            pool.map("int8_tflm", 0, 40)
    assert "\n" not in str(exc.value)
    assert all(p.poll() is not None for p in pool.procs)


def test_interrupt_stops_the_workers(model):
    from embbert.tflite.check import CheckPool

    data, tok, seg, _ = model
    with pytest.raises(KeyboardInterrupt):
        with CheckPool(data, tok[:20], seg[:20], jobs=2) as pool:
            raise KeyboardInterrupt
    assert all(p.poll() is not None for p in pool.procs)


_CTRL_C = """
import sys, numpy as np
from pathlib import Path
from embbert.tflite.check import CheckPool
data = Path(sys.argv[1]).read_bytes()
tok = np.load(sys.argv[2]); seg = np.zeros_like(tok)
with CheckPool(data, tok, seg, jobs=2, chunk=1) as pool:
    print(" ".join(str(p.pid) for p in pool.procs), flush=True)
    pool.map("int8_tflm", 0, len(tok))
"""


def test_ctrl_c_in_a_terminal(model, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the parent stops, no worker is left."""
    data, tok, _, _ = model
    (tmp_path / "m.tflite").write_bytes(data)
    np.save(tmp_path / "tok.npy", np.repeat(tok, 20, axis=0))  # 6,000 examples: far longer than the test
    proc = subprocess.Popen([sys.executable, "-c", _CTRL_C, str(tmp_path / "m.tflite"), str(tmp_path / "tok.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(1.0)  # the workers are running tasks
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt")
    assert err.count("Traceback") == 1  # the parent's only: the workers ignore SIGINT
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cli_has_jobs():
    from embbert.cli import build_parser

    args = build_parser().parse_args(["check", "RUN", "--jobs", "3"])
    assert args.jobs == 3
    assert build_parser().parse_args(["check", "RUN"]).jobs is None
