"""The reward server: `kernelrl serve` puts a Scorer (rule components + a SandboxPool of Ray workers) behind
HTTP, for trainers in other processes or on other machines (OpenRLHF, verl, anything that speaks JSON).

Routes (a problem is KernelBench source text or ``bundled:<name>``, never a path); each is one small function
over `judge` (cache, admission, deadline) and a shape from `kernelrl.rewards.edge`, the module the trainer-side
adapter files use too, so the HTTP answers and the adapters' cannot drift:

- ``GET /health`` (no token): workers alive, isolation profile, device, queue depth, versions.
- ``POST /score``: ``{"problems": [str], "completions": [str]}`` ->
  ``{"results": [RewardResult.to_dict()], "rewards": [float | null]}``.
- ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``): ``{"query": [prompt + response], "prompts": [str],
  "labels": [problem]}`` -> `edge.openrlhf_answer`: ``{"rewards", "scores", "extra_logs"}``, numbers only.
- ``POST /compute_score`` (verl's arguments) -> `edge.verl_score`: the same numeric keys for every sample.
- ``POST /turn`` (multi-turn episodes): ``{"problem", "completion"}`` -> ``{reward, status, feedback, speedup,
  components, correct, hack}``; stateless, the episode lives in the trainer's hook (`kernelrl.rewards.episode`).
- ``GET /metrics``: Prometheus text.

A trainer-shaped answer has no place for a null reward: a sample the sandbox could not judge is a 503
(``infra_error``: retry) or a 422 (``not_executed``: no retry can help), naming the indices. Every route
answers within ``deadline_s`` (default 170 s, under OpenRLHF's 180 s client timeout): pairs not judged by
then stay queued or running and the answer is a 503 with Retry-After; a retry joins them (the pool
evaluates identical pairs once) or finds them in the cache. Limits answer before any work is queued: 413
for a body, batch or completion over its limit, 429 (with Retry-After) when the pool's queue would pass
``max_queue``. The token goes in an ``Authorization: Bearer`` header, or, for clients that cannot send
one (OpenRLHF), in the path: ``/t/<token>/get_reward``.

Repeated pairs (a GRPO group, a retried request) are answered from an in-process cache of composed answers
(keyed by problem id and the completion's hash; the same verdict the pool's cache would give), on the
event loop, without a thread hop or a sandbox call.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ipaddress
import logging
import logging.config
import os
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from kernelrl.rewards import edge
from kernelrl.rewards.compose import Scorer, load_config, problem_from_text
from kernelrl.sandbox.problem import Problem, ProblemError
from kernelrl.sandbox.verdict import PROTOCOL_VERSION, SCHEMA_VERSION, Verdict

log = logging.getLogger("kernelrl.rewards.server")

API_VERSION = 1
MiB = 1 << 20
ROUTES = ("/health", "/score", "/get_reward", "/compute_score", "/turn", "/metrics")
TOKEN_PREFIX = "/t/"  # /t/<token>/<route>: the token for clients that cannot send a header (OpenRLHF)
RETRY_AFTER_S = 5  # a hint for 429/503; our client backs off exponentially on top of it
STILL_JUDGING_RETRY_S = 1  # a retry only re-attaches to the running pair: soon is fine
DEADLINE_S = 170.0  # every scoring route answers by then: OpenRLHF's client gives each try 180 s
STARTUP_TIMEOUT_S = 600.0  # workers that are not up by then will not come (e.g. no GPU in the cluster)
CACHE_SIZE = 16384  # composed answers kept for repeats (a verdict's JSON is ~1-6 KB)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
JSON = "application/json"
# The one logging set-up of `kernelrl serve`: kernelrl's loggers and uvicorn's share a format and a stream
# (library code, the adapters included, only creates loggers under "kernelrl").
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"},
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "kernelrl": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    problems: list[str] = Field(description="KernelBench source text or 'bundled:<name>', one per completion")
    completions: list[str] = Field(description="model completions (reasoning + one fenced python block)")


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward request; fields it may add later are ignored."""

    query: list[str] = Field(description="prompt + response, as OpenRLHF decodes it")
    prompts: list[str] = Field(description="the prompt each query starts with")
    labels: list[str] = Field(description="the problem: KernelBench source text or 'bundled:<name>'")


class ComputeScoreRequest(BaseModel):
    """verl's ``compute_score`` arguments; ``data_source`` and ``extra_info`` are carried, not used."""

    data_source: str = ""
    solution_str: str
    ground_truth: str = Field(min_length=1, description="the problem")
    extra_info: dict[str, Any] | None = None


class TurnRequest(BaseModel):
    """One answer of a multi-turn episode; the episode's state stays with the trainer's hook."""

    model_config = ConfigDict(extra="forbid")
    problem: str = Field(min_length=1, description="KernelBench source text or 'bundled:<name>'")
    completion: str = Field(description="this turn's answer (reasoning + one fenced python block)")


class TurnResponse(BaseModel):
    reward: float | None  # the composed reward of this turn (null: not judged)
    status: str
    feedback: str  # the observation for the model's next turn (kernelrl.rewards.feedback)
    speedup: float | None
    components: dict[str, float | None]
    correct: bool
    hack: bool


class HealthResponse(BaseModel):
    status: str  # ok | degraded (some workers down) | down (none alive)
    workers: int | None  # alive, as Ray reports them (None where this Ray does not say)
    workers_total: int
    isolation: list[str]
    devices: list[str]
    queue_depth: int
    cache_hits: int
    api_version: int = API_VERSION
    protocol_version: int = PROTOCOL_VERSION
    schema_version: int = SCHEMA_VERSION


class _Answer:
    """A composed result, as the dict the shapes read and as the JSON ``/score`` sends (encoded once)."""

    __slots__ = ("result", "json")

    def __init__(self, result: dict[str, Any]) -> None:
        self.result, self.json = result, edge.dumps(result)


class _Answers:
    """The answers of recent pairs, by (problem id, completion hash): LRU, event-loop only (no lock)."""

    def __init__(self, size: int) -> None:
        self.size, self.hits = size, 0
        self._data: OrderedDict[tuple[str, bytes], _Answer] = OrderedDict()

    def get(self, key: tuple[str, bytes]) -> _Answer | None:
        answer = self._data.get(key)
        if answer is not None:
            self._data.move_to_end(key)
            self.hits += 1
        return answer

    def put(self, key: tuple[str, bytes], answer: _Answer) -> None:
        if edge.status(answer.result) == "infra_error":
            return  # the sandbox's own failure: the next ask runs it again
        self._data[key] = answer
        if len(self._data) > self.size:
            self._data.popitem(last=False)


def create_app(
    scorer: Scorer,
    *,
    token: str | None = None,
    max_queue: int = 4096,
    max_batch: int = 1024,
    max_completion_chars: int = 200_000,
    max_body_bytes: int = 64 * MiB,
    deadline_s: float = DEADLINE_S,
    cache_size: int = CACHE_SIZE,
) -> FastAPI:
    """The reward app over `scorer`; its lifespan starts the scorer's pool and closes it (the app owns it)."""
    needs_pool = scorer.config.needs_verdict
    info: dict[str, list[str]] = {"isolation": []}
    admit = asyncio.Lock()  # the queue check and the submission it admits happen as one step
    answers = _Answers(cache_size)

    def pool() -> Any:
        return scorer.pool if needs_pool else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if needs_pool:
            t0 = time.monotonic()
            try:
                info["isolation"] = await asyncio.wait_for(
                    asyncio.to_thread(_start_workers, scorer), STARTUP_TIMEOUT_S
                )
            except asyncio.TimeoutError:
                raise RuntimeError(f"sandbox workers not ready after {STARTUP_TIMEOUT_S:.0f} s") from None
            p = scorer.pool
            log.info(
                "%d sandbox workers ready in %.1f s (device %s, isolation %s)",
                len(p.workers),
                time.monotonic() - t0,
                p.device,
                ", ".join(info["isolation"]) or "unknown",
            )
        else:
            log.info("rules-only reward config: no sandbox workers")
        try:
            yield
        finally:
            await asyncio.to_thread(scorer.close)

    app = FastAPI(title="kernelrl reward server", version=str(API_VERSION), lifespan=lifespan)
    metrics = _Metrics(pool, answers)
    app.state.metrics = metrics
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse({"detail": "; ".join(errors[:5]) + more}, status_code=422)

    @app.exception_handler(edge.Unjudged)
    async def _unjudged(request: Request, exc: edge.Unjudged) -> JSONResponse:
        """503 when the sandbox failed (a retry runs it again), 422 when no retry can help (not_executed)."""
        return JSONResponse(
            {"detail": str(exc), "indices": exc.indices, "statuses": exc.statuses},
            status_code=503 if exc.retryable else 422,
            headers={"Retry-After": str(RETRY_AFTER_S)} if exc.retryable else None,
        )

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    def check_size(name: str, texts: list[str]) -> None:
        if len(texts) > max_batch:
            raise HTTPException(413, f"{name}: {len(texts)} items, over the limit of {max_batch} per request")
        for i, t in enumerate(texts):
            if len(t) > max_completion_chars:
                raise HTTPException(
                    413, f"{name}[{i}]: {len(t)} characters, over the limit of {max_completion_chars}"
                )

    async def judge(problems: list[Problem], completions: list[str]) -> list[_Answer]:
        """The answer of every pair: from the cache, else admitted to the pool (429 past max_queue), judged
        and composed; a 503 when the pool has not judged them all within the deadline."""
        keys = [(p.id, _digest(c)) for p, c in zip(problems, completions, strict=True)]
        found = [answers.get(k) for k in keys]
        todo = [i for i, a in enumerate(found) if a is None]
        if todo:
            fresh = await run([problems[i] for i in todo], [completions[i] for i in todo])
            for i, answer in zip(todo, fresh, strict=True):
                found[i] = answer
                answers.put(keys[i], answer)
        for a in found:
            metrics.verdicts.labels(edge.status(a.result) or "none").inc()
        return found  # type: ignore[return-value]

    async def run(problems: list[Problem], completions: list[str]) -> list[_Answer]:
        async with admit:
            if needs_pool:
                depth = pool().queue_depth
                if depth + len(completions) > max_queue:
                    raise HTTPException(
                        429,
                        f"queue full: {depth} pairs waiting + {len(completions)} in this request "
                        f"> max_queue {max_queue}",
                        headers={"Retry-After": str(RETRY_AFTER_S)},
                    )
            futures = await asyncio.to_thread(scorer.submit, problems, completions)
        verdicts = await _verdicts(futures, deadline_s)
        return await asyncio.to_thread(
            lambda: [
                _Answer(scorer.result(c, v).to_dict()) for c, v in zip(completions, verdicts, strict=True)
            ]
        )

    @app.get("/health")
    async def health() -> HealthResponse:
        p = pool()
        if p is None:
            return HealthResponse(
                status="ok",
                workers=0,
                workers_total=0,
                isolation=[],
                devices=[],
                queue_depth=0,
                cache_hits=answers.hits,
            )
        states = await asyncio.to_thread(_worker_states, p)
        alive = None if states is None else sum(s.get("State") == "ALIVE" for s in states)
        status = "ok" if alive in (None, len(p.workers)) else ("down" if alive == 0 else "degraded")
        return HealthResponse(
            status=status,
            workers=alive,
            workers_total=len(p.workers),
            isolation=info["isolation"],
            devices=[p.device],
            queue_depth=p.queue_depth,
            cache_hits=answers.hits + p.cache_hits,
        )

    @app.post("/score")
    async def score(req: ScoreRequest) -> Response:
        if len(req.problems) != len(req.completions):
            raise HTTPException(
                422,
                f"{len(req.problems)} problems but {len(req.completions)} completions: pairs must line up",
            )
        check_size("completions", req.completions)
        found = await judge(_problems("problems", req.problems), req.completions)
        rewards = edge.dumps([a.result["reward"] for a in found])
        body = b'{"results":[' + b",".join(a.json for a in found) + b'],"rewards":' + rewards + b"}"
        return Response(body, media_type=JSON)

    @app.post("/get_reward")
    async def get_reward(req: GetRewardRequest) -> Response:
        n = len(req.query)
        if len(req.prompts) != n or len(req.labels) != n:
            raise HTTPException(
                422,
                f"query, prompts and labels must line up: {n} queries, {len(req.prompts)} prompts, "
                f"{len(req.labels)} labels",
            )
        check_size("query", req.query)
        found = await judge(_problems("labels", req.labels), _responses(req.query, req.prompts))
        return Response(edge.dumps(edge.openrlhf_answer([a.result for a in found])), media_type=JSON)

    @app.post("/compute_score")
    async def compute_score(req: ComputeScoreRequest) -> Response:
        check_size("solution_str", [req.solution_str])
        [a] = await judge(_problems("ground_truth", [req.ground_truth], single=True), [req.solution_str])
        return Response(edge.dumps(edge.verl_score(a.result)), media_type=JSON)

    @app.post("/turn")
    async def turn(req: TurnRequest) -> TurnResponse:
        """Score one answer and render its feedback (with the static checks' line numbers for hacks)."""
        from kernelrl.rewards.compose import RewardResult
        from kernelrl.rewards.episode import turn_from_result

        check_size("completion", [req.completion])
        [a] = await judge(_problems("problem", [req.problem], single=True), [req.completion])
        t = await asyncio.to_thread(turn_from_result, req.completion, RewardResult.from_dict(a.result))
        return TurnResponse(**t.to_dict(), correct=t.correct, hack=t.hack)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        text = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return app


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


async def _verdicts(futures: list[Future | None], deadline_s: float) -> list[Verdict | None]:
    """The verdicts, waiting at most `deadline_s`. Never cancels a pool future (the pool shares one future
    between identical pairs of different requests): on time-out they keep running, and a retry joins them."""
    waiting = {i: asyncio.wrap_future(f) for i, f in enumerate(futures) if f is not None and not f.done()}
    if waiting:
        _, pending = await asyncio.wait(waiting.values(), timeout=deadline_s)
        if pending:
            raise HTTPException(
                503,
                f"{len(pending)} of {len(futures)} samples still being judged after {deadline_s:.0f} s; they "
                "stay queued or running: retry to collect them",
                headers={"Retry-After": str(STILL_JUDGING_RETRY_S)},
            )
    return [None if f is None else f.result() for f in futures]


def _start_workers(scorer: Scorer) -> list[str]:
    """Create the pool and wait until every worker answers; their isolation profiles (blocking: a thread)."""
    import ray

    p = scorer.pool
    ray.get([w.pid.remote() for w in p.workers])
    try:  # the profile each worker's Evaluator chose at start-up
        profiles = ray.get([w.__ray_call__.remote(lambda self: self.evaluator.profile) for w in p.workers])
    except Exception:  # an older Ray without __ray_call__: the verdicts still carry it
        return []
    return sorted(set(profiles))


def _worker_states(pool: Any) -> list[dict[str, Any]] | None:
    """Ray's own record of each worker (State, NumRestarts); None where this Ray does not expose it."""
    try:
        from ray._private.state import actors

        return [actors(w._actor_id.hex()) or {} for w in pool.workers]
    except Exception:
        return None


def _problems(name: str, texts: list[str], single: bool = False) -> list[Problem]:
    """Problems from request texts; a bad one is a 422 naming the field (and index)."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(problem_from_text(text))
        except ProblemError as e:
            raise HTTPException(422, f"{name if single else f'{name}[{i}]'}: {e}") from None
    return out


def _responses(queries: list[str], prompts: list[str]) -> list[str]:
    """The response part of each OpenRLHF query (`edge.response_of`); a query without its prompt is a 422."""
    out = []
    for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        try:
            out.append(edge.response_of(query, prompt))
        except ValueError:
            raise HTTPException(422, f"query[{i}]: does not contain prompts[{i}]") from None
    return out


def _where(loc: tuple) -> str:
    """('body', 'problems', 3) -> 'problems[3]'."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


class _Metrics:
    """Prometheus metrics in an app-local registry, so several apps in one process do not collide."""

    def __init__(self, pool: Callable[[], Any], answers: _Answers) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "kernelrl_requests", "HTTP requests by route and status code", ["route", "code"], registry=r
        )
        self.latency = Histogram(
            "kernelrl_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.verdicts = Counter(
            "kernelrl_verdicts", "verdicts served by status ('none': rules only)", ["status"], registry=r
        )
        self._pool, self._answers = pool, answers
        r.register(self)

    def collect(self):
        """Pool figures, read when scraped: queue depth, cache hits, workers alive, worker restarts."""
        p = self._pool()
        states = _worker_states(p) if p is not None else []
        restarts = (
            sum(s.get("NumRestarts", 0) for s in states) if states is not None else getattr(p, "restarts", 0)
        )
        yield GaugeMetricFamily(
            "kernelrl_queue_depth", "pairs waiting for a worker", p.queue_depth if p else 0
        )
        hits = self._answers.hits + (p.cache_hits if p else 0)
        yield CounterMetricFamily(
            "kernelrl_cache_hits", "pairs served from a cache (composed answers, then verdicts)", hits
        )
        yield CounterMetricFamily(
            "kernelrl_worker_restarts", "sandbox worker restarts (crashes and fatal CUDA errors)", restarts
        )
        if states is not None:
            alive = sum(s.get("State") == "ALIVE" for s in states)
            yield GaugeMetricFamily("kernelrl_workers_alive", "sandbox workers alive", alive)

    def describe(self):
        return []  # collected on demand only (the pool may not exist when the registry is built)


class _Guard:
    """ASGI middleware around every request: request id, bearer token, body limit, request metrics.

    A token check and a body limit in front of routing mean an unauthenticated or oversized request costs
    nothing but its headers (and the body bytes read up to the limit).
    """

    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int, metrics: _Metrics) -> None:
        self.app, self.token, self.max_body, self.metrics = app, token, max_body_bytes, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        in_path = _token_in_path(scope)  # taken out of the path before routing and the access log see it
        route = scope["path"] if scope["path"] in ROUTES else "other"
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or os.urandom(16).hex()
        code = 500  # what an exception escaping the app turns into
        start = time.perf_counter()

        async def send_tagged(message: dict) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            if self.token and route != "/health" and not self._authorized(headers, in_path):
                return await _answer(
                    scope, send_tagged, 401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
                )
            body = await self._body(scope, headers, receive, send_tagged)
            if body is None:
                return
            await self.app(scope, _replay(body, receive), send_tagged)
        finally:
            self.metrics.requests.labels(route, str(code)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _authorized(self, headers: dict[bytes, bytes], in_path: str | None) -> bool:
        if in_path is not None:
            return hmac.compare_digest(in_path.encode(), (self.token or "").encode())
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token or "")

    async def _body(
        self, scope: dict, headers: dict[bytes, bytes], receive: Callable, send: Callable
    ) -> bytes | None:
        """The whole body, or None once a 413 (or nothing, for a client that left) has been answered."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _answer(scope, send, 413, f"body: {int(declared)} bytes, over the limit of {self.max_body}")
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _answer(scope, send, 413, f"body: over the limit of {self.max_body} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _token_in_path(scope: dict) -> str | None:
    """The token of a ``/t/<token>/<route>`` path, which becomes ``/<route>`` (in the shared scope, so the
    access log shows the route, never the token); None for a path without one."""
    path = scope["path"]
    if not path.startswith(TOKEN_PREFIX):
        return None
    token, _, rest = path[len(TOKEN_PREFIX) :].partition("/")
    scope["path"] = "/" + rest
    scope["raw_path"] = scope["path"].encode()
    return token


def _replay(body: bytes, receive: Callable) -> Callable[[], Awaitable[dict]]:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect, as the server would
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(scope: dict, send: Callable, status: int, detail: str, **headers: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers or None)
    await response(scope, _disconnected, send)


async def _disconnected() -> dict:
    return {"type": "http.disconnect"}


# -- `kernelrl serve` -----------------------------------------------------------------------------------


def _usage_error(message: str) -> NoReturn:
    print(f"kernelrl: error: {message}", file=sys.stderr)
    sys.exit(2)


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the (slow) worker start so a taken port fails at once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        config = load_config(args.config)
    except ValueError as e:
        _usage_error(str(e))
    if args.device == "cuda" and args.address is None:
        from kernelrl.sandbox.supervisor import detect_device

        if detect_device("auto") != "cuda":
            _usage_error(
                "--device cuda but no GPU is visible here (use --device cpu, or --address a cluster)"
            )
    try:
        sock = _bind(args.host, args.port)
    except OSError as e:
        _usage_error(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    logging.config.dictConfig(LOG_CONFIG)
    if not args.token and not _is_loopback(args.host):
        log.warning(
            "serving on %s without a token: anyone who can reach it can run code in the sandbox", args.host
        )
    scorer = Scorer(
        config,
        num_workers=args.workers,
        device=args.device,
        address=args.address,
        run_timeout_s=args.run_timeout,
    )
    app = create_app(
        scorer,
        token=args.token or None,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        deadline_s=args.deadline,
    )
    host, port = sock.getsockname()[:2]
    log.info("kernelrl reward server on http://%s:%d", host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=LOG_CONFIG,
            access_log=args.access_log,
            timeout_graceful_shutdown=args.drain_timeout,
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has drained and shut down
        pass
    return 0 if server.started else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve rewards over HTTP (/score, OpenRLHF /get_reward, verl /compute_score, /health, /metrics)",
    )
    serve.error = _usage_error  # type: ignore[method-assign]  # one line, like the other usage errors
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_int_in(0, 65535), default=8000)
    serve.add_argument(
        "--address", default=None, help="Ray cluster to join (auto, ray://host:10001); default: a local Ray"
    )
    serve.add_argument(
        "--workers", type=_int_in(1), default=None, help="sandbox workers (default: one per GPU, or per core)"
    )
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--config", default=None, help="reward weights YAML (default: the built-in weights)")
    serve.add_argument(
        "--token",
        default=os.environ.get("KERNELRL_TOKEN"),
        help="token required on every route but /health, as 'Authorization: Bearer <token>' or in the path "
        "(/t/<token>/get_reward, for OpenRLHF) (default: $KERNELRL_TOKEN)",
    )
    serve.add_argument("--max-queue", type=_int_in(1), default=4096, help="pairs waiting before 429")
    serve.add_argument("--max-batch", type=_int_in(1), default=1024, help="pairs per request before 413")
    serve.add_argument(
        "--run-timeout", type=_positive_float, default=60.0, help="run budget per candidate (s)"
    )
    serve.add_argument(
        "--deadline",
        type=_positive_float,
        default=DEADLINE_S,
        help="answer every scoring request within this many seconds: pairs not judged by then stay queued "
        "and the answer is a 503 a retry collects them with (s; OpenRLHF's client waits 180 s per try)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one log line per request (tokens in paths are never logged)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=300.0,
        help="on SIGTERM/Ctrl-C, how long in-flight requests may finish before the workers stop (s)",
    )
    serve.set_defaults(func=cmd_serve)
