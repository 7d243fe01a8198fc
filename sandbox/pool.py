"""A pool of sandbox workers as Ray actors: one per GPU, or N on CPU, on a laptop or a Ray cluster.

`evaluate_many` keeps every worker busy (each gets its next pair the moment it finishes), serves repeats
from a cache keyed by (problem id, candidate hash, device kind, protocol version), retries a pair once when
a worker dies, and answers `infra_error` rather than dropping a pair. A worker whose candidate hit a fatal
CUDA error is restarted by Ray before it takes more work, since its GPU context may be poisoned.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from typing import Any

import ray

from sandbox.candidate import extract_candidate
from sandbox.problem import Problem, ProblemError
from sandbox.supervisor import detect_device
from sandbox.verdict import PROTOCOL_VERSION, Verdict


@ray.remote(max_restarts=-1, max_task_retries=0)
class SandboxWorker:
    """One Evaluator (its reference process and sandboxed fork server) inside a Ray actor."""

    def __init__(self, device: str, slot: int, evaluator_kwargs: dict[str, Any]) -> None:
        from sandbox.supervisor import Evaluator

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

    def evaluate(self, problem: Problem, completion: str) -> Verdict:
        return self.evaluate_many([problem], [completion])[0]

    def evaluate_many(self, problems: list[Problem], completions: list[str]) -> list[Verdict]:
        """Verdicts for the pairs (problems[i], completions[i]), in order; one secret seed set per call."""
        if len(problems) != len(completions):
            raise ValueError(
                f"{len(problems)} problems but {len(completions)} completions: pairs must line up"
            )
        seeds = [secrets.randbelow(1 << 31) for _ in range(3)]
        results: list[Verdict | None] = [None] * len(problems)
        keys = [
            (p.id, extract_candidate(c).sha256, self.device, PROTOCOL_VERSION)
            for p, c in zip(problems, completions, strict=True)
        ]
        todo: list[int] = []
        first_of: dict[tuple, int] = {}
        for i, key in enumerate(keys):
            if key in self.cache:
                self.cache_hits += 1
                results[i] = self.cache[key]
            elif key in first_of:
                self.cache_hits += 1
            else:
                first_of[key] = i
                todo.append(i)
        attempts = dict.fromkeys(todo, 0)
        idle = list(range(len(self.workers)))
        running: dict[Any, tuple[int, int]] = {}
        queue = list(reversed(todo))
        while queue or running:
            while queue and idle:
                i, w = queue.pop(), idle.pop()
                ref = self.workers[w].evaluate.remote(problems[i], completions[i], seeds)
                running[ref] = (i, w)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i, w = running.pop(ref)
                try:
                    verdict = Verdict.from_dict(ray.get(ref))
                except (
                    ray.exceptions.RayActorError,
                    ray.exceptions.RayTaskError,
                    ray.exceptions.ActorUnavailableError,
                ) as e:
                    attempts[i] += 1
                    self._await_alive(w)  # Ray is bringing it back; a retry sent now would fail at once
                    if attempts[i] < 2:
                        queue.append(i)
                    else:
                        results[i] = Verdict(
                            "infra_error",
                            device=self.device,
                            error=f"worker failed twice: {type(e).__name__}",
                            problem_id=problems[i].id,
                        )
                    idle.append(w)
                    continue
                if verdict.error and verdict.error.startswith("fatal CUDA error"):
                    self._restart(w)
                results[i] = verdict
                if verdict.status != "infra_error":
                    self._remember(keys[i], verdict)
                idle.append(w)
        for i, key in enumerate(keys):
            if results[i] is None:
                results[i] = results[first_of[key]]
        return [r for r in results if r is not None]

    def _restart(self, w: int) -> None:
        """Have Ray replace worker `w` with a fresh process (new GPU context) and wait until it serves."""
        old = self._await_alive(w)
        ray.kill(self.workers[w], no_restart=False)
        self._await_alive(w, not_pid=old)
        self.restarts += 1

    def _await_alive(self, w: int, not_pid: int | None = None, timeout_s: float = 120.0) -> int | None:
        """The worker's pid once it answers (and is not `not_pid`); None if it never does in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
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

    def _remember(self, key: tuple, verdict: Verdict) -> None:
        self.cache[key] = verdict
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def close(self) -> None:
        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
