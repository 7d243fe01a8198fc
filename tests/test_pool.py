"""The Ray worker pool: order, cache, seeds, retries, restart after a fatal CUDA error (beside the dispatcher,
so the other workers keep serving), and the reference process's deadline."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from kernelrl.sandbox import Problem, SandboxPool
from kernelrl.sandbox.problem import problem_id
from kernelrl.sandbox.supervisor import ReferenceProcess, ReferenceTimeout

FATAL = """
import torch, torch.nn as nn, triton, triton.language as tl

@triton.jit
def k(x, n, B: tl.constexpr):
    pass

class ModelNew(nn.Module):
    def forward(self, x):
        k[(1,)](x, 1, B=16)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
"""

SLOW_PREFIX = "import time\ntime.sleep(4)\n"  # slows the import, so a worker can be killed mid-request
N_VARIANTS, N_SEEDS = 2, 2  # not the Evaluator's default of 3 seeds: the pool must pass it on


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(
        num_workers=2, device="cpu", run_timeout_s=30, n_variants=N_VARIANTS, n_seeds=N_SEEDS
    ) as p:
        yield p
    ray.shutdown()


def _wait_for(cond, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def test_evaluate_many_keeps_order_and_caches(pool, problems):
    names = ["relu", "softmax", "elementwise_add", "gelu"]
    probs = [problems[n] for n in names] * 2
    comps = [problems[n].extras["solution"] for n in names] + [problems[n].extras["wrong"] for n in names]
    verdicts = pool.evaluate_many(probs, comps)
    assert [v.status for v in verdicts] == ["ok"] * 4 + ["mismatch"] * 4
    assert [v.problem_id for v in verdicts] == [p.id for p in probs]
    hits = pool.cache_hits
    again = pool.evaluate_many(probs[:2] + probs[:2], comps[:2] + comps[:2])
    assert [v.status for v in again] == ["ok"] * 4 and pool.cache_hits == hits + 4


def test_pool_checks_n_variants_times_n_seeds(pool, problems):
    v = pool.evaluate(problems["relu"], problems["relu"].extras["solution"] + "\n# seeds\n")
    assert v.status == "ok"
    assert len(v.checks) == N_VARIANTS * N_SEEDS
    assert sorted({c.seed_index for c in v.checks}) == list(range(N_SEEDS))


def test_mismatched_lengths_are_refused(pool, problems):
    with pytest.raises(ValueError, match="pairs must line up"):
        pool.evaluate_many([problems["relu"]], [])


def test_worker_restarts_after_fatal_cuda_error(pool, problems):
    pids_before = set(_pids(pool))
    v = pool.evaluate(problems["relu"], FATAL)
    assert v.status == "runtime_error" and v.error.startswith("fatal CUDA error")
    _wait_for(lambda: pool.restarts == 1 and pool.recovering == 0)  # the restart runs beside the dispatcher
    pids_after = set(_pids(pool))
    assert len(pids_before - pids_after) == 1  # exactly one actor came back as a new process
    ok = pool.evaluate(problems["relu"], problems["relu"].extras["solution"] + "\n# after restart\n")
    assert ok.status == "ok"


def _pids(pool) -> list[int]:
    for _ in range(100):  # a worker Ray is bringing back answers once it is up
        try:
            return ray.get([w.pid.remote() for w in pool.workers])
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            time.sleep(0.5)
    raise AssertionError("workers never came back")


def test_worker_killed_mid_request_is_retried(pool, problems):
    pids = _pids(pool)
    comp = SLOW_PREFIX + problems["relu"].extras["solution"]

    def kill_soon() -> None:
        time.sleep(2.0)
        for pid in pids:  # whichever worker took it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    killer = threading.Thread(target=kill_soon)
    killer.start()
    verdicts = pool.evaluate_many([problems["relu"]], [comp])
    killer.join()
    assert len(verdicts) == 1
    assert verdicts[0].status in ("ok", "infra_error")  # answered either way, never dropped
    assert verdicts[0].status == "ok"  # the retry on a restarted worker succeeds


def test_other_workers_serve_while_one_is_restarted(pool, problems, monkeypatch):
    """Bringing a worker back (here made slow on purpose) happens off the dispatcher: the verdict that
    caused it arrives at once, and the other worker keeps serving meanwhile."""
    real, finished = pool._await_alive, []

    def slow_await_alive(w, not_pid=None, timeout_s=120.0):
        time.sleep(6.0)
        pid = real(w, not_pid, timeout_s)
        finished.append(time.monotonic())
        return pid

    relu = problems["relu"]
    _pids(pool)  # both workers are up (an earlier test killed them) and warm
    pool.evaluate_many([relu] * 2, [relu.extras["solution"] + f"\n# warm {i}\n" for i in range(2)])
    monkeypatch.setattr(pool, "_await_alive", slow_await_alive)
    restarts = pool.restarts
    v = pool.submit_many([relu], [FATAL + "\n# slow restart\n"])[0].result(timeout=60)
    assert v.error.startswith("fatal CUDA error") and not finished  # answered before its worker is back
    assert pool.recovering == 1
    comps = [relu.extras["solution"] + f"\n# while restarting {i}\n" for i in range(3)]
    verdicts = [f.result(timeout=60) for f in pool.submit_many([relu] * 3, comps)]
    served = time.monotonic()
    assert [v.status for v in verdicts] == ["ok"] * 3
    assert not finished or served < finished[0], "the other worker waited for the restart"
    _wait_for(lambda: pool.restarts == restarts + 1 and pool.recovering == 0)


HANGING = """
import time
import torch
import torch.nn as nn

time.sleep(3600)  # the problem's own code never answers


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(4, 4)]


def get_init_inputs():
    return []
"""


def test_hanging_reference_times_out_and_is_replaced(evaluator, problems):
    """A problem whose reference hangs cannot hang the worker: a clear error after the deadline, the
    reference process is killed, and the next problem gets a fresh one."""
    hanging = Problem(id=problem_id(HANGING), name="hanging", source=HANGING)
    evaluator._reference = ReferenceProcess(evaluator.device, timeout_s=3.0)
    old = evaluator._reference.proc
    t0 = time.monotonic()
    with pytest.raises(ReferenceTimeout, match="did not answer a 'plan' request within 3 s"):
        evaluator.evaluate(hanging, problems["relu"].extras["solution"])
    assert time.monotonic() - t0 < 30
    assert old.poll() is not None  # killed
    v = evaluator.evaluate(problems["relu"], problems["relu"].extras["solution"])
    assert v.status == "ok" and evaluator._reference.proc is not old
