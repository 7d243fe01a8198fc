"""A client for `kernelrl serve`, for trainer adapters and scripts that score over HTTP.

Transient failures (connection errors, 429, 5xx) are retried with exponential backoff and jitter, honouring
Retry-After; when they persist the client raises naming the URL, the last status and the server's reason,
because a training step must never silently get no reward. A 4xx other than 429 is the caller's mistake
and is raised at once with the server's message.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from typing import Any

import httpx

from kernelrl.rewards.compose import RewardResult
from kernelrl.sandbox.problem import Problem

MAX_DELAY_S = 60.0


class RewardServerError(RuntimeError):
    """The server refused a request (4xx) or kept failing (after retries); `status` is the last HTTP status
    (None for a connection that never answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RewardClient:
    """Scores through a reward server at `url` (its base URL; default ``$KERNELRL_REWARD_URL``), with the
    bearer `token` (default ``$KERNELRL_TOKEN``). Safe to share between threads; `ascore` works from any
    event loop."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 900,
        retries: int = 5,
        backoff: float = 1.0,
    ) -> None:
        url = url or os.environ.get("KERNELRL_REWARD_URL")
        if not url:
            raise ValueError("no reward server URL: pass url= or set KERNELRL_REWARD_URL")
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("KERNELRL_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    # -- the routes ------------------------------------------------------------------------------------

    def score(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        """One RewardResult per (problem, completion) pair, in order (reward None = could not judge)."""
        return self._results(self._request("POST", "/score", _score_body(problems, completions)), completions)

    async def ascore(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        body = _score_body(problems, completions)
        return self._results(await self._arequest("POST", "/score", body), completions)

    def compute_score(
        self, data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None
    ) -> dict[str, Any]:
        """verl's shape: ``{"score": float | None, "status", "correct", ...}`` with the same keys every time."""
        body = {
            "data_source": data_source,
            "solution_str": solution_str,
            "ground_truth": ground_truth,
            "extra_info": _jsonable(extra_info),
        }
        return self._request("POST", "/compute_score", body)

    def turn(self, problem: str | Problem, completion: str) -> dict[str, Any]:
        """One turn of a multi-turn episode: ``{reward, status, feedback, speedup, components, correct, hack}``
        (the server is stateless; `kernelrl.rewards.episode` keeps the episode)."""
        body = {
            "problem": problem.source if isinstance(problem, Problem) else problem,
            "completion": completion,
        }
        return self._request("POST", "/turn", body)

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    # -- transport -------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url, last = self.url + path, ""
        for attempt in range(self.retries + 1):
            try:
                response = self._sync().request(method, url, json=body, headers=self.headers)
            except httpx.TransportError as e:
                last, status, wait = f"{type(e).__name__}: {e}", None, None
            else:
                done, last, status, wait = _judge(url, response)
                if done:
                    return response.json()
            if attempt < self.retries:
                time.sleep(self._delay(attempt, wait))
        raise self._gave_up(url, last, status)

    async def _arequest(self, method: str, path: str, body: Any = None) -> Any:
        url, last = self.url + path, ""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                try:
                    response = await client.request(method, url, json=body, headers=self.headers)
                except httpx.TransportError as e:
                    last, status, wait = f"{type(e).__name__}: {e}", None, None
                else:
                    done, last, status, wait = _judge(url, response)
                    if done:
                        return response.json()
                if attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt, wait))
        raise self._gave_up(url, last, status)

    def _sync(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            return self._client

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (so many ranks retrying do not arrive together), at least the
        server's Retry-After."""
        delay = self.backoff * 2**attempt * random.uniform(0.5, 1.5)
        return min(MAX_DELAY_S, max(delay, retry_after or 0.0))

    def _gave_up(self, url: str, last: str, status: int | None) -> RewardServerError:
        return RewardServerError(
            f"reward server {url} still failing after {self.retries + 1} attempts; last: {last}", status
        )

    def _results(self, data: dict[str, Any], completions: list[str]) -> list[RewardResult]:
        results = [RewardResult.from_dict(r) for r in data["results"]]
        if len(results) != len(completions):
            raise RewardServerError(
                f"{self.url}/score answered {len(results)} results for {len(completions)}"
            )
        return results

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable for Ray/multiprocessing: no live connections
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _client=None, _lock=threading.Lock())


def _judge(url: str, response: httpx.Response) -> tuple[bool, str, int, float | None]:
    """(done, reason, status, retry_after) for a response; raises at once on a 4xx other than 429."""
    status = response.status_code
    if status < 400:
        return True, "", status, None
    reason = f"{status} {_detail(response)}"
    if status != 429 and status < 500:
        raise RewardServerError(f"reward server {url} refused the request: {reason}", status)
    try:
        retry_after = float(response.headers.get("retry-after", ""))
    except ValueError:
        retry_after = None
    return False, reason, status, retry_after


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail is not None else (response.text[:500] or response.reason_phrase)


def _score_body(problems: list[str | Problem], completions: list[str]) -> dict[str, list[str]]:
    texts = [p.source if isinstance(p, Problem) else p for p in problems]
    return {"problems": texts, "completions": list(completions)}


def _jsonable(value: Any) -> Any:
    """verl's extra_info may hold numpy scalars or arrays: turn them into plain JSON values."""
    if value is None:
        return None

    def default(o: Any) -> Any:
        if hasattr(o, "tolist"):
            return o.tolist()
        return o.item() if hasattr(o, "item") else str(o)

    return json.loads(json.dumps(value, default=default))
