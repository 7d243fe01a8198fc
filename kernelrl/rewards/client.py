"""A client for ``kernelrl serve``, for scripts that score over HTTP and want `RewardResult` objects.

The transport (retries with backoff and jitter honouring Retry-After, errors naming the URL, the last status
and the server's reason) is `kernelrl.rewards.edge.Remote`, the one the trainer adapters use.
"""

from __future__ import annotations

from typing import Any

from kernelrl.rewards.compose import RewardResult
from kernelrl.rewards.edge import Remote, RewardServerError
from kernelrl.sandbox.problem import Problem

__all__ = ["RewardClient", "RewardServerError"]


class RewardClient(Remote):
    """Scores through a reward server at `url` (its base URL; default ``$KERNELRL_REWARD_URL``), with the
    bearer `token` (default ``$KERNELRL_TOKEN``). Safe to share between threads; `ascore` works from any
    event loop."""

    def score(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        """One RewardResult per (problem, completion) pair, in order (reward None = could not judge)."""
        return [RewardResult.from_dict(r) for r in self.results(problems, completions)]

    async def ascore(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        return [RewardResult.from_dict(r) for r in await self.aresults(problems, completions)]

    def compute_score(
        self, data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None
    ) -> dict[str, Any]:
        """verl's shape (`kernelrl.rewards.edge.metrics`): the same numeric keys every time; a sample the
        server cannot judge is a 503 (retried) or a 422 (raised)."""
        body = {
            "data_source": data_source,
            "solution_str": solution_str,
            "ground_truth": ground_truth,
            "extra_info": _jsonable(extra_info),
        }
        return self.request("POST", "/compute_score", body)

    def turn(self, problem: str | Problem, completion: str) -> dict[str, Any]:
        """One turn of a multi-turn episode: ``{reward, status, feedback, speedup, components, correct, hack}``
        (the server is stateless; `kernelrl.rewards.episode` keeps the episode)."""
        body = {
            "problem": problem.source if isinstance(problem, Problem) else problem,
            "completion": completion,
        }
        return self.request("POST", "/turn", body)

    async def aturn(self, problem: str | Problem, completion: str) -> dict[str, Any]:
        body = {
            "problem": problem.source if isinstance(problem, Problem) else problem,
            "completion": completion,
        }
        return await self.arequest("POST", "/turn", body)

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    """verl's extra_info may hold numpy scalars or arrays: turn them into plain JSON values."""
    import json

    if value is None:
        return None

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        return o.item() if hasattr(o, "item") else str(o)

    return json.loads(json.dumps(value, default=default))
