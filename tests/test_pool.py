"""The Ray worker pool: order, cache, retries, and restart after a fatal CUDA error."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from kernelrl.sandbox import SandboxPool

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


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(num_workers=2, device="cpu", run_timeout_s=30) as p:
        yield p
    ray.shutdown()


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


def test_mismatched_lengths_are_refused(pool, problems):
    with pytest.raises(ValueError, match="pairs must line up"):
        pool.evaluate_many([problems["relu"]], [])


def test_worker_restarts_after_fatal_cuda_error(pool, problems):
    pids_before = set(_pids(pool))
    v = pool.evaluate(problems["relu"], FATAL)
    assert v.status == "runtime_error" and v.error.startswith("fatal CUDA error")
    assert pool.restarts == 1
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
