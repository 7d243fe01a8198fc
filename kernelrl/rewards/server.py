"""The reward server: `kernelrl serve` puts a Scorer (rule components + a SandboxPool of Ray workers) behind
HTTP, for trainers in other processes or on other machines (OpenRLHF, verl, anything that speaks JSON).

Routes (a problem is KernelBench source text or ``bundled:<name>``, never a path):

- ``GET /health`` (no token): workers alive, isolation profile, device, queue depth, versions.
- ``POST /score``: ``{"problems": [str], "completions": [str]}`` ->
  ``{"results": [RewardResult.to_dict()], "rewards": [float | null]}``.
- ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``): ``{"query": [prompt + response], "prompts": [str],
  "labels": [problem]}`` -> ``{"rewards": [float], "scores": [float], "extra_logs": {name: [float]}}``.
  OpenRLHF cannot take a null reward: a batch with an unjudged sample is answered 503 (``infra_error``,
  retryable) or 422 (``not_executed``: this server can never judge it), naming the indices.
- ``POST /compute_score`` (verl): ``{"data_source", "solution_str", "ground_truth": problem, "extra_info"}`` ->
  one flat dict with the same keys for every sample (`SCORE_KEYS` + one per reward component).
- ``POST /turn`` (multi-turn episodes): ``{"problem", "completion"}`` -> ``{reward, status, feedback, speedup,
  components, correct, hack}``; stateless, the episode lives in the trainer's hook (`kernelrl.rewards.episode`).
- ``GET /metrics``: Prometheus text.

Limits answer before any work is queued: 413 for a body, batch or completion over its limit, 429 (with
Retry-After) when the pool's queue would pass ``max_queue``. Every request gets an answer: a dead worker is
retried by the pool, an unexpected exception is a 500 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import logging
import os
import socket
import sys
import time
import uuid
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

from kernelrl.rewards.compose import RewardResult, Scorer, load_config, problem_from_text
from kernelrl.sandbox.problem import Problem, ProblemError
from kernelrl.sandbox.verdict import PROTOCOL_VERSION, SCHEMA_VERSION, STATUSES, Verdict

log = logging.getLogger("kernelrl.server")

API_VERSION = 1
MiB = 1 << 20
# Keys of every /compute_score answer besides one per reward component (verl needs the same keys for all).
SCORE_KEYS = ("score", "status", "correct", "compiled", "hack", "speedup", "error")
# /get_reward's extra_logs besides one per reward component: numbers only (OpenRLHF makes tensors of them).
LOG_KEYS = ("correct", "hack", "status_code", "speedup")
ROUTES = ("/health", "/score", "/get_reward", "/compute_score", "/turn", "/metrics")
RETRY_AFTER_S = 5  # a hint for 429/503; our client backs off exponentially on top of it
STARTUP_TIMEOUT_S = 600.0  # workers that are not up by then will not come (e.g. no GPU in the cluster)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    problems: list[str] = Field(description="KernelBench source text or 'bundled:<name>', one per completion")
    completions: list[str] = Field(description="model completions (reasoning + one fenced python block)")


class ScoreResponse(BaseModel):
    results: list[dict[str, Any]]
    rewards: list[float | None]


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward request; fields it may add later are ignored."""

    query: list[str] = Field(description="prompt + response, as OpenRLHF decodes it")
    prompts: list[str] = Field(description="the prompt each query starts with")
    labels: list[str] = Field(description="the problem: KernelBench source text or 'bundled:<name>'")


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


class ComputeScoreRequest(BaseModel):
    """verl's ``compute_score`` arguments; ``data_source`` and ``extra_info`` are carried, not used."""

    data_source: str = ""
    solution_str: str
    ground_truth: str = Field(min_length=1, description="the problem")
    extra_info: dict[str, Any] | None = None


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


def create_app(
    scorer: Scorer,
    *,
    token: str | None = None,
    max_queue: int = 4096,
    max_batch: int = 1024,
    max_completion_chars: int = 200_000,
    max_body_bytes: int = 64 * MiB,
) -> FastAPI:
    """The reward app over `scorer`; its lifespan starts the scorer's pool and closes it (the app owns it)."""
    clash = {*SCORE_KEYS, *LOG_KEYS} & set(scorer.components)
    if clash:
        raise ValueError(f"reward component names clash with response keys: {', '.join(sorted(clash))}")
    needs_pool = scorer.config.needs_verdict
    info: dict[str, list[str]] = {"isolation": []}
    admit = asyncio.Lock()  # the queue check and the submission it admits happen as one step

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
    metrics = _Metrics(pool)
    app.state.metrics = metrics
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse({"detail": "; ".join(errors[:5]) + more}, status_code=422)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    def check_batch(name: str, n: int) -> None:
        if n > max_batch:
            raise HTTPException(413, f"{name}: {n} items, over the limit of {max_batch} per request")

    def check_chars(name: str, texts: list[str]) -> None:
        for i, t in enumerate(texts):
            if len(t) > max_completion_chars:
                raise HTTPException(
                    413, f"{name}[{i}]: {len(t)} characters, over the limit of {max_completion_chars}"
                )

    async def score(problems: list[Problem], completions: list[str]) -> list[RewardResult]:
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
        verdicts = await asyncio.gather(*(_verdict(f) for f in futures))
        results = await asyncio.to_thread(
            lambda: [scorer.result(c, v) for c, v in zip(completions, verdicts, strict=True)]
        )
        for r in results:
            metrics.verdicts.labels(r.verdict.status if r.verdict else "none").inc()
        return results

    @app.get("/health")
    async def health() -> HealthResponse:
        p = pool()
        if p is None:
            return HealthResponse(
                status="ok", workers=0, workers_total=0, isolation=[], devices=[], queue_depth=0, cache_hits=0
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
            cache_hits=p.cache_hits,
        )

    @app.post("/score")
    async def score_route(req: ScoreRequest) -> ScoreResponse:
        if len(req.problems) != len(req.completions):
            raise HTTPException(
                422,
                f"{len(req.problems)} problems but {len(req.completions)} completions: pairs must line up",
            )
        check_batch("completions", len(req.completions))
        check_chars("completions", req.completions)
        results = await score(_problems("problems", req.problems), req.completions)
        return ScoreResponse(results=[r.to_dict() for r in results], rewards=[r.reward for r in results])

    @app.post("/get_reward", response_model=GetRewardResponse)
    async def get_reward(req: GetRewardRequest) -> Any:
        n = len(req.query)
        if len(req.prompts) != n or len(req.labels) != n:
            raise HTTPException(
                422,
                f"query, prompts and labels must line up: {n} queries, {len(req.prompts)} prompts, "
                f"{len(req.labels)} labels",
            )
        check_batch("query", n)
        completions = [
            _response(i, q, p) for i, (q, p) in enumerate(zip(req.query, req.prompts, strict=True))
        ]
        check_chars("query", completions)
        results = await score(_problems("labels", req.labels), completions)
        unjudged = [i for i, r in enumerate(results) if r.reward is None]
        if unjudged:
            return _unjudged(results, unjudged)
        logs: dict[str, list[float]] = {name: [] for name in (*scorer.components, *LOG_KEYS)}
        for r in results:
            for name, value in r.components.items():
                logs[name].append(0.0 if value is None else value)  # not applicable: 0 (no nulls here)
            v = r.verdict
            logs["correct"].append(float(bool(v and v.status == "ok")))
            logs["hack"].append(float(bool(v and v.hacks)))
            logs["status_code"].append(float(STATUSES.index(v.status)) if v else -1.0)
            logs["speedup"].append(v.speedup if v and v.speedup is not None else 0.0)
        rewards = [float(r.reward) for r in results]  # type: ignore[arg-type]
        return GetRewardResponse(rewards=rewards, scores=logs["correct"], extra_logs=logs)

    @app.post("/compute_score")
    async def compute_score(req: ComputeScoreRequest) -> dict[str, Any]:
        check_chars("solution_str", [req.solution_str])
        [r] = await score(_problems("ground_truth", [req.ground_truth], single=True), [req.solution_str])
        v = r.verdict
        return {
            "score": r.reward,
            "status": v.status if v else None,
            "correct": bool(v and v.status == "ok"),
            "compiled": bool(v and v.compiled),
            "hack": bool(v and v.hacks),
            "speedup": v.speedup if v else None,
            "error": v.error if v else None,
            **r.components,
        }

    @app.post("/turn")
    async def turn_route(req: TurnRequest) -> TurnResponse:
        return await score_turn(req, score, check_chars)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        text = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return app


# -- multi-turn: one stateless route; the episode (turns, stop rule, episode reward) lives in the trainer's hook ---


class TurnRequest(BaseModel):
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


async def score_turn(req: TurnRequest, score: Callable, check_chars: Callable) -> TurnResponse:
    """Score one answer and render its feedback (the static checks' line numbers included for hacks)."""
    from kernelrl.rewards.episode import turn_from_result

    check_chars("completion", [req.completion])
    [r] = await score(_problems("problem", [req.problem], single=True), [req.completion])
    turn = await asyncio.to_thread(turn_from_result, req.completion, r)
    return TurnResponse(**turn.to_dict(), correct=turn.correct, hack=turn.hack)


# -- helpers ---------------------------------------------------------------------------------------------


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


async def _verdict(f: Future | None) -> Verdict | None:
    return None if f is None else await asyncio.wrap_future(f)


def _problems(name: str, texts: list[str], single: bool = False) -> list[Problem]:
    """Problems from request texts; a bad one is a 422 naming the field (and index)."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(problem_from_text(text))
        except ProblemError as e:
            raise HTTPException(422, f"{name if single else f'{name}[{i}]'}: {e}") from None
    return out


def _response(i: int, query: str, prompt: str) -> str:
    """The response part of an OpenRLHF query. Never the whole query: the prompt's example answer would be
    judged in place of a response that has no code."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    for p in (prompt, prompt.strip()):  # a BOS or pad token the prompt string does not carry
        at = query.find(p) if p else -1
        if at >= 0:
            return query[at + len(p) :]
    raise HTTPException(422, f"query[{i}]: does not contain prompts[{i}]")


def _unjudged(results: list[RewardResult], idx: list[int]) -> JSONResponse:
    """503 when the sandbox failed (OpenRLHF retries), 422 when no retry can help (e.g. not_executed)."""
    statuses = [r.verdict.status if r.verdict else None for r in (results[i] for i in idx)]
    infra = "infra_error" in statuses
    first = results[idx[0]].verdict
    why = f"{first.status}: {first.error}" if first else "no reward component applies"
    detail = f"{len(idx)} of {len(results)} samples could not be judged (indices {idx[:20]}); first: {why}"
    return JSONResponse(
        {"detail": detail, "indices": idx, "statuses": statuses},
        status_code=503 if infra else 422,
        headers={"Retry-After": str(RETRY_AFTER_S)} if infra else None,
    )


def _where(loc: tuple) -> str:
    """('body', 'problems', 3) -> 'problems[3]'."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


class _Metrics:
    """Prometheus metrics in an app-local registry, so several apps in one process do not collide."""

    def __init__(self, pool: Callable[[], Any]) -> None:
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
        self._pool = pool
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
        yield CounterMetricFamily(
            "kernelrl_cache_hits", "pairs served from the verdict cache", p.cache_hits if p else 0
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
        route = scope["path"] if scope["path"] in ROUTES else "other"
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        code = 500  # what an exception escaping the app turns into
        start = time.perf_counter()

        async def send_tagged(message: dict) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            if self.token and scope["path"] != "/health" and not self._authorized(headers):
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

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
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
    app = create_app(scorer, token=args.token or None, max_queue=args.max_queue, max_batch=args.max_batch)
    host, port = sock.getsockname()[:2]
    log.info("kernelrl reward server on http://%s:%d", host, port)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=args.drain_timeout)
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has drained and shut down
        pass
    return 0 if server.started else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve rewards over HTTP (/score, OpenRLHF /get_reward, verl /compute_score, /turn, /health, /metrics)",
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
        help="bearer token required on every route but /health (default: $KERNELRL_TOKEN)",
    )
    serve.add_argument("--max-queue", type=_int_in(1), default=4096, help="pairs waiting before 429")
    serve.add_argument("--max-batch", type=_int_in(1), default=1024, help="pairs per request before 413")
    serve.add_argument(
        "--run-timeout", type=_positive_float, default=60.0, help="run budget per candidate (s)"
    )
    serve.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=300.0,
        help="on SIGTERM/Ctrl-C, how long in-flight requests may finish before the workers stop (s)",
    )
    serve.set_defaults(func=cmd_serve)
