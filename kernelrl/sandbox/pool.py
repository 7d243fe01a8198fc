"""A pool of sandbox workers as Ray actors: one per GPU, or N on CPU, on a laptop or a Ray cluster.

A dispatcher thread keeps every worker busy (each gets its next pair the moment it finishes), serves repeats
from a cache keyed by (problem id, candidate hash, device kind, protocol version), retries a pair once when
a worker dies, and answers `infra_error` rather than dropping a pair. A worker whose candidate hit a fatal
CUDA error is restarted by Ray before it takes more work, since its GPU context may be poisoned. Waiting for
a worker to come back happens on a thread of its own: the others keep serving meanwhile.
"""

from __future__ import annotations

import inspect
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ray

from kernelrl.sandbox.candidate import extract_candidate
from kernelrl.sandbox.problem import Problem, ProblemError
from kernelrl.sandbox.supervisor import detect_device
from kernelrl.sandbox.verdict import PROTOCOL_VERSION, Verdict


def _evaluator_default(name: str) -> Any:
    from kernelrl.sandbox.supervisor import Evaluator

    return inspect.signature(Evaluator).parameters[name].default


@dataclass
class _Job:
    problem: Problem
    completion: str
    seeds: list[int]
    key: tuple
    future: Future
    attempts: int = 0


@ray.remote(max_restarts=-1, max_task_retries=0)
class SandboxWorker:
    """One Evaluator (its reference process and sandboxed fork server) inside a Ray actor."""

    def __init__(self, device: str, slot: int, evaluator_kwargs: dict[str, Any]) -> None:
        from kernelrl.sandbox.supervisor import Evaluator

        self.evaluator = Evaluator(device=device, slot=slot, **evaluator_kwargs)

    def evaluate(self, problem: Problem, completion: str, seeds: list[int]) -> dict[str, Any]:
        try:
            return self.evaluator.evaluate(problem, completion, seeds).to_dict()
        except ProblemError as e:
            return Verdict(
                "infra_error",
                device=self.evaluator.device,
                isolation=self.evaluator.profile,
                error=str(e),
                problem_id=problem.id,
            ).to_dict()

    def pid(self) -> int:
        return os.getpid()


class SandboxPool:
    """Ray sandbox workers behind one dispatcher thread, so any number of callers can share them.

    `submit_many` returns futures at once (the server and async reward functions wait on them without
    blocking each other); `evaluate_many` is the blocking form. Identical pairs share one evaluation, whether
    cached or still in flight.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        device: str = "auto",
        *,
        address: str | None = None,
        cache_size: int = 100_000,
        **evaluator_kwargs: Any,
    ) -> None:
        self.device = detect_device(device)
        if not ray.is_initialized():
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                ignore_reinit_error=True,
            )
        resources = ray.cluster_resources()
        if num_workers is None:
            num_workers = (
                int(resources.get("GPU", 0)) if self.device == "cuda" else int(resources.get("CPU", 1))
            )
        if num_workers < 1:
            raise ValueError("a sandbox pool needs at least one worker")
        # Secret seeds are drawn here, one set per call: as many as the Evaluator would draw itself.
        self.n_seeds = int(evaluator_kwargs.get("n_seeds", _evaluator_default("n_seeds")))
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be at least 1, got {self.n_seeds}")
        gpu = 1 if self.device == "cuda" else 0
        # More CPU workers than cores is allowed (they mostly wait on their children): share the cores out.
        cpus = 0 if gpu else min(1.0, resources.get("CPU", 1) / num_workers)
        self.workers = [
            SandboxWorker.options(num_cpus=cpus, num_gpus=gpu).remote(self.device, slot, evaluator_kwargs)
            for slot in range(num_workers)
        ]
        self.cache: OrderedDict[tuple, Verdict] = OrderedDict()
        self.cache_size = cache_size
        self.cache_hits = 0
        self.restarts = 0
        self._lock = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._idle: list[int] = list(range(num_workers))
        self._recovering: set[int] = set()
        self._inflight: dict[tuple, Future] = {}
        self._wake = threading.Event()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="sandbox-pool", daemon=True)
        self._dispatcher.start()

    @property
    def queue_depth(self) -> int:
        """Pairs waiting for a worker (not counting those running)."""
        return len(self._queue)

    def evaluate(self, problem: Problem, completion: str) -> Verdict:
        return self.evaluate_many([problem], [completion])[0]

    def evaluate_many(self, problems: list[Problem], completions: list[str]) -> list[Verdict]:
        """Verdicts for the pairs (problems[i], completions[i]), in order; one secret seed set per call."""
        return [f.result() for f in self.submit_many(problems, completions)]

    def submit_many(self, problems: list[Problem], completions: list[str]) -> list[Future]:
        """One future per pair, each resolving to a Verdict (never to an exception)."""
        if len(problems) != len(completions):
            raise ValueError(
                f"{len(problems)} problems but {len(completions)} completions: pairs must line up"
            )
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        seeds = [secrets.randbelow(1 << 31) for _ in range(self.n_seeds)]
        futures: list[Future] = []
        with self._lock:
            for p, c in zip(problems, completions, strict=True):
                key = (p.id, extract_candidate(c).sha256, self.device, PROTOCOL_VERSION)
                if key in self.cache:
                    self.cache_hits += 1
                    self.cache.move_to_end(key)
                    f: Future = Future()
                    f.set_result(self.cache[key])
                elif key in self._inflight:
                    self.cache_hits += 1
                    f = self._inflight[key]
                else:
                    f = Future()
                    self._inflight[key] = f
                    self._queue.append(_Job(p, c, seeds, key, f))
                futures.append(f)
        self._wake.set()
        return futures

    def _dispatch(self) -> None:
        """Keep every worker busy: each gets the next job the moment it finishes one. Never waits for a
        worker to come back: that happens on a recovery thread, which returns the worker when it serves."""
        running: dict[Any, tuple[_Job, int]] = {}
        while not self._closed:
            with self._lock:
                while self._queue and self._idle:
                    job, w = self._queue.popleft(), self._idle.pop()
                    ref = self.workers[w].evaluate.remote(job.problem, job.completion, job.seeds)
                    running[ref] = (job, w)
            if not running:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.05)
            for ref in done:
                job, w = running.pop(ref)
                try:
                    verdict, recovery = self._finish(ref, job)
                except Exception as e:  # the dispatcher must never die with callers waiting
                    verdict, recovery = Verdict("infra_error", device=self.device, error=f"pool: {e!r}"), None
                if recovery is None:
                    with self._lock:
                        self._idle.append(w)
                else:  # a job that lost its worker is retried by that worker once it is back
                    self._recover(w, recovery, retry=job if verdict is None else None)
                if verdict is not None:
                    self._resolve(job, verdict)
        for job, _ in running.values():
            self._resolve(job, Verdict("infra_error", device=self.device, error="sandbox pool closed"))

    def _finish(self, ref: Any, job: _Job) -> tuple[Verdict | None, str | None]:
        """The verdict of a finished task (None when the job went back in the queue for a retry), and what
        its worker needs before it takes more work: nothing, "revive" (it died) or "restart"."""
        try:
            verdict = Verdict.from_dict(ray.get(ref))
        except (
            ray.exceptions.RayActorError,
            ray.exceptions.RayTaskError,
            ray.exceptions.ActorUnavailableError,
        ) as e:
            job.attempts += 1
            if job.attempts < 2:
                return None, "revive"
            error = f"worker failed twice: {type(e).__name__}"
            return Verdict(
                "infra_error", device=self.device, error=error, problem_id=job.problem.id
            ), "revive"
        if verdict.error and verdict.error.startswith("fatal CUDA error"):
            return verdict, "restart"
        return verdict, None

    def _recover(self, w: int, kind: str, retry: _Job | None = None) -> None:
        """Bring worker `w` back on a thread of its own, then hand it to the dispatcher again, with `retry`
        first in the queue (the dispatcher hands the last worker back the first job: it goes to `w`)."""

        def run() -> None:
            try:
                if kind == "restart":
                    self._restart(w)
                else:
                    self._await_alive(w)  # Ray is bringing it back; work sent before that would fail at once
            except Exception:  # noqa: BLE001 - a worker that cannot come back fails its next pair: infra_error
                pass
            finally:
                with self._lock:
                    self._recovering.discard(w)
                    closed = self._closed
                    if not closed:
                        if retry is not None:
                            self._queue.appendleft(retry)
                        self._idle.append(w)
                if closed and retry is not None:
                    self._resolve(
                        retry, Verdict("infra_error", device=self.device, error="sandbox pool closed")
                    )
                self._wake.set()

        with self._lock:
            self._recovering.add(w)
        threading.Thread(target=run, name=f"sandbox-pool-recover-{w}", daemon=True).start()

    def _resolve(self, job: _Job, verdict: Verdict) -> None:
        with self._lock:
            self._inflight.pop(job.key, None)
            if verdict.status != "infra_error":
                self.cache[job.key] = verdict
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        job.future.set_result(verdict)

    def _restart(self, w: int) -> None:
        """Have Ray replace worker `w` with a fresh process (new GPU context) and wait until it serves."""
        old = self._await_alive(w)
        ray.kill(self.workers[w], no_restart=False)
        self._await_alive(w, not_pid=old)
        with self._lock:
            self.restarts += 1

    def _await_alive(self, w: int, not_pid: int | None = None, timeout_s: float = 120.0) -> int | None:
        """The worker's pid once it answers (and is not `not_pid`); None if it never does in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._closed:
            try:
                pid = ray.get(self.workers[w].pid.remote(), timeout=10)
                if pid != not_pid:
                    return pid
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.ActorUnavailableError,
                ray.exceptions.GetTimeoutError,
            ):
                pass
            time.sleep(0.2)
        return None

    def close(self) -> None:
        """Stop the dispatcher (pairs still queued or running are answered infra_error) and the workers."""
        self._closed = True
        self._wake.set()
        self._dispatcher.join(timeout=30)
        with self._lock:
            queued, self._queue = list(self._queue), deque()
        for job in queued:
            self._resolve(job, Verdict("infra_error", device=self.device, error="sandbox pool closed"))
        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []

    @property
    def recovering(self) -> int:
        """Workers being brought back (not serving meanwhile)."""
        return len(self._recovering)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
