"""The reward edge: what the reward server's routes and the trainer-side adapter files share, in one file that
loads anywhere.

Standard library plus httpx at import (no torch, no kernelrl), so the adapter files beside it
(``trl_reward.py``, ``verl_reward.py``, ``openrlhf_reward.py``) load by path in a trainer's environment
that has no kernelrl (verl and OpenRLHF pin transformers and Ray versions kernelrl cannot share).

- **Shapes**: what each trainer receives, decided here once for the adapters and for the server's routes,
  so the formats cannot drift. A result is a plain dict, as ``POST /score`` answers it and
  ``RewardResult.to_dict()`` gives it: ``{"reward": float | None, "components": {name: float | None},
  "verdict": {...} | None, "notes": [...]}``.
- **Backends**: `get_backend` is where scores come from, for every adapter: a ``kernelrl serve`` reward
  server (`Remote`), or an in-process scorer (`Local`: needs kernelrl installed, imported on first use).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import sys
import threading
import time
import warnings
from typing import Any

import httpx

log = logging.getLogger("kernelrl.rewards")

# -- shapes -----------------------------------------------------------------------------------------------

# kernelrl.sandbox.verdict.STATUSES, repeated so this file needs no kernelrl (a test keeps them equal).
STATUSES = (
    "ok",
    "format_error",
    "compile_error",
    "runtime_error",
    "timeout",
    "oom",
    "mismatch",
    "hack_detected",
    "not_executed",
    "infra_error",
)
# The fixed keys of every sample's metrics (verl's dict; OpenRLHF's rewards, scores and extra_logs), before
# one key per reward component. All numbers: verl stacks and averages them, OpenRLHF makes tensors of them.
METRIC_KEYS = ("score", "acc", "correct", "compiled", "hack", "fast_1")
# What a reward component that does not apply reports: exactly what it adds to the score (see `metrics`).
NOT_APPLICABLE = 0.0
METRIC_PREFIX = "kernelrl/"  # TRL's log_metric names


def status(result: dict[str, Any]) -> str | None:
    """The verdict status of a result; None for a rules-only result (no sandbox run)."""
    verdict = result.get("verdict")
    return verdict.get("status") if verdict else None


class Unjudged(RuntimeError):
    """Some samples could not be judged (reward None), so no trainer-shaped answer exists for them.

    ``retryable`` when the sandbox itself failed (``infra_error``: a retry runs it again); not when no retry
    can help (``not_executed``: e.g. a CUDA candidate on a server without a GPU).
    """

    def __init__(self, results: list[dict[str, Any]], indices: list[int]) -> None:
        self.indices = indices
        self.statuses = [status(results[i]) for i in indices]
        self.retryable = "infra_error" in self.statuses
        verdict = results[indices[0]].get("verdict")
        why = (
            f"{verdict['status']}: {verdict.get('error') or 'no reason given'}"
            if verdict
            else "no component applies"
        )
        super().__init__(
            f"kernelrl could not judge {len(indices)} of {len(results)} samples (indices {indices[:20]}); "
            f"first: {why}. No score is reported: an outage must not read as a wrong answer"
        )


def require_judged(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results, or `Unjudged` naming every sample whose reward is None."""
    unjudged = [i for i, r in enumerate(results) if r.get("reward") is None]
    if unjudged:
        raise Unjudged(results, unjudged)
    return results


def metrics(result: dict[str, Any]) -> dict[str, float]:
    """One judged sample as numbers with the same keys every time (verl's dict, OpenRLHF's logs).

    ``score`` the composed reward; ``acc`` and ``correct`` 1.0 when the verdict is ``ok`` (``acc`` is what
    verl's validation reports); ``compiled``; ``hack`` 1.0 for a detected hack; ``fast_1`` 1.0 when correct
    and timed faster than the reference (its mean is KernelBench's fast_1; 0 on CPU, where nothing is timed);
    then one key per reward component: its value, or 0.0 where it does not apply (``speed`` of an untimed
    sample), which is exactly what it adds to the score, so ``score == sum(weight * value)`` over the
    reported values (a hack's score is instead the floor); NaN would poison verl's batch means. A component
    named like a fixed key is reported as ``component_<name>``.
    """
    if result.get("reward") is None:
        raise Unjudged([result], [0])
    v = result.get("verdict") or {}
    correct = float(v.get("status") == "ok")
    out = {
        "score": float(result["reward"]),
        "acc": correct,
        "correct": correct,
        "compiled": float(bool(v.get("compiled"))),
        "hack": float(v.get("status") == "hack_detected" or bool(v.get("hacks"))),
        "fast_1": float(correct and (v.get("speedup") or 0.0) > 1.0),
    }
    for name, value in result.get("components", {}).items():
        out[f"component_{name}" if name in METRIC_KEYS else name] = (
            NOT_APPLICABLE if value is None else float(value)
        )
    return out


def verl_score(result: dict[str, Any]) -> dict[str, float]:
    """verl's ``compute_score`` answer for one sample (`metrics`; `Unjudged` if it could not be judged)."""
    return metrics(result)


def openrlhf_answer(results: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenRLHF's remote-reward answer: ``rewards`` (the composed reward), ``scores`` (1.0 when correct: what
    its dynamic filtering reads) and ``extra_logs`` (the other `metrics` keys), one number per sample."""
    rows = [metrics(r) for r in require_judged(results)]
    keys = [k for k in (rows[0] if rows else {}) if k != "score"]
    return {
        "rewards": [row["score"] for row in rows],
        "scores": [row["correct"] for row in rows],
        "extra_logs": {k: [row[k] for row in rows] for k in keys},
    }


def trl_rewards(results: list[dict[str, Any]]) -> list[float | None]:
    """TRL's answer: one reward per completion, None where it could not be judged (TRL makes that NaN and,
    when every reward function says None for a row, an advantage of 0: an outage never reads as wrong)."""
    return [r.get("reward") for r in results]


def trl_log(results: list[dict[str, Any]], log_metric: Any = None, log_extra: Any = None) -> None:
    """Report a batch through TRL's ``log_metric`` / ``log_extra`` callables (either may be None): component
    means where they apply (``kernelrl/<component>``), every status's fraction (``kernelrl/status_<s>``), the
    geometric-mean speedup of timed correct samples, and per-sample ``status`` / ``speedup`` columns."""
    if not results:
        return
    verdicts = [r["verdict"] for r in results if r.get("verdict")]
    if log_metric is not None:
        for name in results[0].get("components", {}):
            values = [r["components"].get(name) for r in results]
            values = [v for v in values if v is not None]
            if values:  # a component that applied nowhere (speed on CPU) is left out, not logged as 0
                log_metric(f"{METRIC_PREFIX}{name}", sum(values) / len(values))
        if verdicts:  # every status every time, so a step without hacks averages in a 0, not nothing
            for s in STATUSES:
                log_metric(
                    f"{METRIC_PREFIX}status_{s}", sum(v["status"] == s for v in verdicts) / len(verdicts)
                )
            speedups = [v["speedup"] for v in verdicts if v["status"] == "ok" and (v.get("speedup") or 0) > 0]
            if speedups:
                geomean = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
                log_metric(f"{METRIC_PREFIX}speedup_geomean", geomean)
    if log_extra is not None:
        log_extra("status", [status(r) for r in results])
        log_extra("speedup", [(r.get("verdict") or {}).get("speedup") for r in results])


def response_of(query: str, prompt: str) -> str:
    """The response in an OpenRLHF query (prompt + response, decoded with special tokens). Never the whole
    query: the prompt's example answer would be judged in place of a response that has no code."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    for p in (prompt, prompt.strip()):  # a BOS or pad token the prompt string does not carry
        at = query.find(p) if p else -1
        if at >= 0:
            return query[at + len(p) :]
    raise ValueError("does not contain its prompt: cannot tell the response apart")


# -- backends ---------------------------------------------------------------------------------------------

MAX_DELAY_S = 60.0


class RewardServerError(RuntimeError):
    """The server refused a request (4xx) or kept failing (after retries); `status` is the last HTTP status
    (None for a connection that never answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Remote:
    """Scores through a ``kernelrl serve`` at `url` (its base URL; default ``$KERNELRL_REWARD_URL``) with the
    bearer `token` (default ``$KERNELRL_TOKEN``). Safe to share between threads; the async forms work from
    any event loop; picklable (no live connection travels).

    Transient failures (connection errors, 429, 5xx: the server answers 503 for a sandbox outage and for a
    verdict still running at its deadline) are retried with exponential backoff and jitter, at least the
    server's Retry-After; when they persist it raises naming the URL, the last status and the server's
    reason, because a training step must never silently get no reward. Another 4xx is the caller's mistake
    and raises at once with the server's message.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 900.0,
        retries: int = 5,
        backoff: float = 1.0,
    ) -> None:
        url = url or os.environ.get("KERNELRL_REWARD_URL")
        if not url:
            raise ValueError("no reward server URL: pass url= or set KERNELRL_REWARD_URL")
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("KERNELRL_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def results(self, problems: list[Any], completions: list[str]) -> list[dict[str, Any]]:
        """One result dict per (problem, completion) pair, in order (``POST /score``)."""
        return self._check(self.request("POST", "/score", _score_body(problems, completions)), completions)

    async def aresults(self, problems: list[Any], completions: list[str]) -> list[dict[str, Any]]:
        body = _score_body(problems, completions)
        return self._check(await self.arequest("POST", "/score", body), completions)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        url, last, status_ = self.url + path, "", None
        for attempt in range(self.retries + 1):
            try:
                response = self._sync().request(method, url, json=body, headers=self.headers)
            except httpx.TransportError as e:
                last, status_, wait = f"{type(e).__name__}: {e}", None, None
            else:
                done, last, status_, wait = _judge(url, response)
                if done:
                    return response.json()
            if attempt < self.retries:
                time.sleep(self._delay(attempt, wait))
        raise self._gave_up(url, last, status_)

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        url, last, status_ = self.url + path, "", None
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                try:
                    response = await client.request(method, url, json=body, headers=self.headers)
                except httpx.TransportError as e:
                    last, status_, wait = f"{type(e).__name__}: {e}", None, None
                else:
                    done, last, status_, wait = _judge(url, response)
                    if done:
                        return response.json()
                if attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt, wait))
        raise self._gave_up(url, last, status_)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

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

    def _gave_up(self, url: str, last: str, status_: int | None) -> RewardServerError:
        return RewardServerError(
            f"reward server {url} still failing after {self.retries + 1} attempts; last: {last}", status_
        )

    def _check(self, data: dict[str, Any], completions: list[str]) -> list[dict[str, Any]]:
        results = data["results"]
        if len(results) != len(completions):
            raise RewardServerError(
                f"{self.url}/score answered {len(results)} results for {len(completions)}"
            )
        return results

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _client=None, _lock=threading.Lock())


def _judge(url: str, response: httpx.Response) -> tuple[bool, str, int, float | None]:
    """(done, reason, status, retry_after) for a response; raises at once on a 4xx other than 429."""
    code = response.status_code
    if code < 400:
        return True, "", code, None
    reason = f"{code} {_detail(response)}"
    if code != 429 and code < 500:
        raise RewardServerError(f"reward server {url} refused the request: {reason}", code)
    try:
        retry_after = float(response.headers.get("retry-after", ""))
    except ValueError:
        retry_after = None
    return False, reason, code, retry_after


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail is not None else (response.text[:500] or response.reason_phrase)


def _score_body(problems: list[Any], completions: list[str]) -> dict[str, list[str]]:
    texts = [getattr(p, "source", p) for p in problems]  # a kernelrl Problem travels as its source
    return {"problems": [str(t) for t in texts], "completions": [str(c) for c in completions]}


class Local:
    """Scores in this process with a kernelrl `Scorer` (rule components + a Ray sandbox pool started on first
    use). Needs kernelrl installed; imported here, not at load. A `scorer` given is used as is and not closed
    (its owner closes it); otherwise one is made from `config` (a RewardConfig or a weights YAML path) and
    `pool_kwargs` for `SandboxPool`."""

    def __init__(self, scorer: Any = None, config: Any = None, **pool_kwargs: Any) -> None:
        if scorer is None:
            from kernelrl.rewards.compose import RewardConfig, Scorer, load_config

            if not isinstance(config, RewardConfig):
                config = load_config(config)
            scorer = Scorer(config, **pool_kwargs)
            self.owned = True
        else:
            self.owned = False
        self.scorer = scorer

    def results(self, problems: list[Any], completions: list[str]) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.scorer.score(problems, completions)]

    async def aresults(self, problems: list[Any], completions: list[str]) -> list[dict[str, Any]]:
        return [r.to_dict() for r in await self.scorer.ascore(problems, completions)]

    def close(self) -> None:
        if self.owned:
            self.scorer.close()


def make_backend(
    url: str | None = None,
    *,
    token: str | None = None,
    timeout: float = 900.0,
    retries: int = 5,
    backoff: float = 1.0,
    config: Any = None,
    workers: int | None = None,
    device: str | None = None,
    **pool_kwargs: Any,
) -> Remote | Local:
    """The one backend factory. A reward server when `url` (or ``$KERNELRL_REWARD_URL``) is set: its own
    weights apply, so `config` is ignored (with a warning). Otherwise an in-process `Local` with `config`
    (default ``$KERNELRL_REWARD_CONFIG``, else the built-in weights), `workers` (``$KERNELRL_WORKERS``) and
    `device` (``$KERNELRL_DEVICE``); `pool_kwargs` go to `SandboxPool`.

    Inside a trainer's Ray actor (a verl reward worker, an OpenRLHF rollout actor) an in-process pool would
    join the trainer's cluster, size itself to all of it and, on a GPU node, ask for GPUs the trainer holds.
    So there it is refused unless the size is chosen (``workers`` / ``$KERNELRL_WORKERS``), and its device
    defaults to ``cpu``: the safe default is a reward server.
    """
    url = url or os.environ.get("KERNELRL_REWARD_URL") or None
    if url:
        if isinstance(config, str) or (config is not None and _nondefault(config)):
            warnings.warn(
                "a reward server scores with its own weights; the reward config given here is ignored",
                stacklevel=3,
            )
        return Remote(url, token=token, timeout=timeout, retries=retries, backoff=backoff)
    config = config or os.environ.get("KERNELRL_REWARD_CONFIG") or None
    workers = workers or pool_kwargs.pop("num_workers", None) or os.environ.get("KERNELRL_WORKERS") or None
    device = device or pool_kwargs.pop("device", None) or os.environ.get("KERNELRL_DEVICE") or None
    if _in_ray_worker():
        if workers is None:
            raise RuntimeError(
                "kernelrl: no reward server URL, and this process is a Ray worker of a trainer (a verl reward "
                "worker or an OpenRLHF rollout actor), where an in-process sandbox pool would take the "
                "trainer's CPUs and GPUs. Run `kernelrl serve` and give its URL (verl: "
                "+reward.custom_reward_function.reward_kwargs.url=..., OpenRLHF and TRL: KERNELRL_REWARD_URL), "
                "or opt in with KERNELRL_WORKERS=N (CPU workers unless KERNELRL_DEVICE=cuda)"
            )
        device = device or "cpu"
    if workers is not None:
        pool_kwargs["num_workers"] = int(workers)
    if device is not None:
        pool_kwargs["device"] = device
    return Local(config=config, **pool_kwargs)


def _nondefault(config: Any) -> bool:
    from kernelrl.rewards.compose import RewardConfig

    return config != RewardConfig()


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")  # a Ray worker process has imported ray; nothing else needs to
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE


_lock = threading.Lock()
_default: Any = None  # the process-wide backend (`configure`, or the environment on first use)
_owned = False  # whether this module made _default (and so may close it)
_by_settings: dict[tuple, Any] = {}  # backends made for explicit settings (verl's reward_kwargs)


def configure(url: str | None = None, config: Any = None, scorer: Any = None, **pool_kwargs: Any) -> None:
    """Choose the process-wide backend every adapter uses when not given settings of its own: `scorer` (a
    kernelrl Scorer, or a backend `get_backend` returned earlier; used as given: you keep ownership), else
    `make_backend(url, config=config, **pool_kwargs)`. A backend this module made earlier is closed
    (unless it is the one given back)."""
    global _default, _owned
    if scorer is not None and url is not None:
        raise ValueError("configure: pass either a scorer or a url, not both")
    if scorer is not None:
        backend, owned = (scorer if hasattr(scorer, "results") else Local(scorer)), False
    else:
        backend, owned = make_backend(url, config=config, **pool_kwargs), True
    with _lock:
        old, old_owned, _default, _owned = _default, _owned, backend, owned
    if old is not None and old_owned and old is not backend:
        old.close()


def get_backend(**settings: Any) -> Remote | Local:
    """The process-wide backend (made from the environment on first use, see `make_backend`), or with
    `settings` (`make_backend`'s arguments) one backend per distinct setting, made once: verl calls once per
    sample, from many threads."""
    global _default, _owned
    settings = {k: v for k, v in settings.items() if v is not None}
    with _lock:
        if not settings:
            if _default is None:
                _default, _owned = make_backend(), True
            return _default
        key = tuple(sorted((k, str(v)) for k, v in settings.items()))
        if key not in _by_settings:
            _by_settings[key] = make_backend(**settings)
        return _by_settings[key]


def reset() -> None:
    """Close the backends this module made and forget them; the next call configures from the environment."""
    global _default, _owned
    with _lock:
        old = [_default] if _owned and _default is not None else []
        old += list(_by_settings.values())
        _default, _owned = None, False
        _by_settings.clear()
    for backend in old:
        backend.close()


_SETTINGS = ("url", "token", "timeout", "retries", "config", "workers", "device")


def judged(
    problems: list[Any],
    completions: list[str],
    *,
    rejudge: int = 2,
    backoff: float = 1.0,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Results for the pairs from `get_backend(**settings)`, re-scoring ``infra_error`` samples up to
    `rejudge` times with backoff (verl and OpenRLHF's file path do not retry); `Unjudged` if any sample is
    still without a reward. Without settings it is the process-wide backend; settings verl may pass that
    `make_backend` does not know are ignored."""
    chosen = {k: v for k, v in settings.items() if k in _SETTINGS and v is not None}
    backend = get_backend(**chosen, backoff=backoff) if chosen else get_backend()
    problems, completions = list(problems), [str(c) for c in completions]
    results = backend.results(problems, completions)
    for attempt in range(int(rejudge)):
        todo = [i for i, r in enumerate(results) if r.get("reward") is None and status(r) == "infra_error"]
        if not todo:
            break
        log.warning(
            "re-judging %d samples after infra_error (attempt %d of %d)", len(todo), attempt + 1, rejudge
        )
        time.sleep(float(backoff) * 2**attempt)
        again = backend.results([problems[i] for i in todo], [completions[i] for i in todo])
        for i, r in zip(todo, again, strict=True):
            results[i] = r
    return require_judged(results)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (the server's answers; NaN refused: no trainer can read it)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
