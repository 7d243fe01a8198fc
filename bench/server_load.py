"""Load on the reward server: N concurrent HTTP clients for a fixed time, cache-hit and cold paths in one run.

Starts `kernelrl serve` itself (CPU workers, a random token) unless given ``--url``. Each client loops
``POST /score`` with one pair and a unique ``X-Request-ID`` until the phase ends; requests still in flight
are waited for, then the phase is checked: every request sent was answered exactly once (the server echoes
the id; sent ids, answered ids and echoed ids must be the same set, with no repeats).

- *cache-hit*: the same few pairs (bundled solutions of fast problems), primed once first, then repeated:
  what the HTTP layer, the scorer and the pool's cache cost per request.
- *cold*: distinct completions (the same solutions with a unique trailing comment, so the candidate hash
  differs): every request is a real sandbox run; throughput is bounded by the workers.
- *floor* (the baseline, same run): a FastAPI app with the same request model under the same uvicorn, that
  answers a constant: what the framework alone costs on this machine now. The cache-hit path is reported
  as a ratio of it.

The load generator is this process, one keep-alive connection per client (a lean HTTP/1.1 client: httpx
would spend more CPU per request than the server's cache-hit path); the servers are separate processes.

    .venv/bin/python bench/server_load.py [--clients 64] [--duration 30] [--workers 2] [--url URL --token T]
    .venv/bin/python bench/server_load.py --duration 10 --cold-duration 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from kernelrl.sandbox import bundled_problems

FAST = ["relu", "elementwise_add", "swish", "gelu"]  # ~1 s per verdict under the CPU interpreter


@dataclass
class Phase:
    name: str
    clients: int
    duration_s: float
    wall_s: float = 0.0  # phase start until the last answer (in-flight requests drained)
    sent: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    echoed: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cache_hits: float = 0.0
    verdicts: dict[str, float] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        sent = set(self.sent)
        return (
            len(sent) == len(self.sent) == len(self.answered) == len(self.echoed)
            and set(self.answered) == sent
            and set(self.echoed) == sent
        )

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def run_phase(name: str, url: str, headers: dict, pairs, clients: int, duration: float) -> Phase:
    """`clients` coroutines, each on its own keep-alive connection, sending one request at a time until
    `duration` is over; then drain. A lean HTTP/1.1 client (`_Connection`): httpx's pool costs more CPU per
    request than the server's cache-hit path, and would measure itself."""
    phase = Phase(name, clients, duration)
    parsed = urlsplit(url)
    fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    start = time.perf_counter()
    end = start + duration

    async def client(k: int) -> None:
        conn = _Connection(parsed.hostname, parsed.port, parsed.path.rstrip("/") + "/score", fixed)
        i = 0
        try:
            while time.perf_counter() < end:
                problem, completion = pairs(k, i)
                i += 1
                rid = uuid.uuid4().hex
                phase.sent.append(rid)
                body = json.dumps({"problems": [problem], "completions": [completion]}).encode()
                t0 = time.perf_counter()
                try:
                    status, echoed, text = await conn.post(body, rid)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    phase.errors.append(f"{type(e).__name__}: {e}")
                    await conn.close()
                    continue
                phase.latencies_s.append(time.perf_counter() - t0)
                phase.answered.append(rid)
                phase.echoed.append(echoed)
                phase.codes[status] += 1
                if status != 200:
                    phase.errors.append(f"{status}: {text[:200]}")
        finally:
            await conn.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    phase.wall_s = time.perf_counter() - start
    return phase


class _Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read status, X-Request-ID and the body (the
    server always sends Content-Length)."""

    def __init__(self, host: str, port: int, path: str, headers: str) -> None:
        self.host, self.port, self.path, self.headers = host, port, path, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, rid: str) -> tuple[int, str, str]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.headers}X-Request-ID: {rid}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        text = (await self.reader.readexactly(int(fields["content-length"]))).decode()
        return status, fields.get("x-request-id", ""), text

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


def scrape(url: str, headers: dict) -> dict[tuple, float]:
    text = httpx.get(f"{url}/metrics", headers=headers).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def start_server(args: argparse.Namespace, token: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "kernelrl.cli", "serve", "--port", str(port), "--device", "cpu"]
    cmd += ["--workers", str(args.workers), "--run-timeout", str(args.run_timeout), "--max-queue", "100000"]
    log = open(args.server_log, "w")  # open as long as the server runs
    proc = subprocess.Popen(cmd, env={**os.environ, "KERNELRL_TOKEN": token}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start; see {args.server_log}")
        time.sleep(0.5)


class ScoreRequest(BaseModel):  # the floor server's request: the same model as the reward server's
    problems: list[str]
    completions: list[str]


def serve_floor(port: int) -> None:
    """The baseline: `POST /score` with the server's request model, answered with a constant; it echoes
    X-Request-ID as the reward server does (so the exactly-once check applies to it too)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/score")
    async def score(req: ScoreRequest) -> dict:
        return {"results": [], "rewards": [0.0] * len(req.completions)}

    def echo(inner):
        async def wrapped(scope, receive, send):
            rid = dict(scope.get("headers") or []).get(b"x-request-id", b"")

            async def tagged(message):
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
                await send(message)

            await inner(scope, receive, tagged)

        return wrapped

    uvicorn.run(echo(app), host="127.0.0.1", port=port, log_level="info")


def start_floor(log_path: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "w")  # open as long as the server runs
    proc = subprocess.Popen([sys.executable, __file__, "--floor", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.post(f"{url}/score", json={"problems": [], "completions": []})
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"floor server did not start; see {log_path}")


def main() -> int:
    ap = argparse.ArgumentParser(description="Reward server load: cache-hit and cold paths.")
    ap.add_argument("--floor", type=int, help=argparse.SUPPRESS)  # internal: run the baseline server
    ap.add_argument("--url", help="a running server (default: start `kernelrl serve` here)")
    ap.add_argument("--token", default=os.environ.get("KERNELRL_TOKEN"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase (sending; then drain)")
    ap.add_argument("--cold-duration", type=float, help="seconds for the cold phase (default: --duration)")
    ap.add_argument("--workers", type=int, default=2, help="sandbox workers of the server started here")
    ap.add_argument("--run-timeout", type=float, default=20.0)
    ap.add_argument("--server-log", default="/tmp/kernelrl_server_load.log")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.floor:
        serve_floor(args.floor)
        return 0
    console = Console(width=140)
    problems = bundled_problems()
    hot = [(f"bundled:{n}", problems[n].extras["solution"]) for n in FAST]

    proc = None
    token = args.token
    if args.url:
        url = args.url.rstrip("/")
    else:
        token = secrets.token_hex(16)
        t0 = time.perf_counter()
        proc, url = start_server(args, token)
        console.print(f"server started in {time.perf_counter() - t0:.1f} s (log: {args.server_log})")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        health = httpx.get(f"{url}/health").json()
        console.print(
            f"{url}: {health['workers']} workers, device {health['devices']}, isolation {health['isolation']}; "
            f"{args.clients} clients, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        t0 = time.perf_counter()
        body = {"problems": [p for p, _ in hot], "completions": [c for _, c in hot]}
        primed = httpx.post(f"{url}/score", json=body, headers=headers, timeout=900).json()
        console.print(f"primed {len(hot)} hot pairs in {time.perf_counter() - t0:.1f} s: {primed['rewards']}")

        phases = []
        floor, floor_url = start_floor(args.server_log + ".floor")
        try:
            phases.append(
                asyncio.run(
                    run_phase(
                        "floor",
                        floor_url,
                        {},
                        lambda k, i: hot[(k + i) % len(hot)],
                        args.clients,
                        args.duration,
                    )
                )
            )
        finally:
            floor.terminate()
            floor.wait(timeout=60)
        for name, pairs, duration in [
            ("cache-hit", lambda k, i: hot[(k + i) % len(hot)], args.duration),
            (
                "cold",
                lambda k, i: (hot[(k + i) % len(hot)][0], f"{hot[(k + i) % len(hot)][1]}\n# load {k}.{i}\n"),
                args.cold_duration or args.duration,
            ),
        ]:
            before = scrape(url, headers)
            if name == "cache-hit":  # 64 connections: let the server's side settle too
                asyncio.run(run_phase("warm-up", url, headers, pairs, args.clients, 1.0))
                before = scrape(url, headers)
            phase = asyncio.run(run_phase(name, url, headers, pairs, args.clients, duration))
            after = scrape(url, headers)
            phase.cache_hits = (
                after[("kernelrl_cache_hits_total", ())] - before[("kernelrl_cache_hits_total", ())]
            )
            phase.verdicts = {
                dict(k[1])["status"]: v - before.get(k, 0)
                for k, v in after.items()
                if k[0] == "kernelrl_verdicts_total" and v - before.get(k, 0)
            }
            phases.append(phase)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)

    t = Table(title=f"reward server load, {args.clients} concurrent clients, 1 pair per request")
    for col in ["path", "send s", "wall s", "sent", "answered", "exactly once", "errors", "req/s", "p50 ms"]:
        t.add_column(col, justify="right")
    t.add_column("p99 ms", justify="right")
    t.add_column("cache hits", justify="right")
    t.add_column("verdicts", justify="left")
    for p in phases:
        t.add_row(
            p.name,
            f"{p.duration_s:g}",
            f"{p.wall_s:.1f}",
            str(len(p.sent)),
            str(len(p.answered)),
            "yes" if p.exactly_once else "[red]NO[/red]",
            str(len(p.errors)),
            f"{len(p.answered) / p.wall_s:.1f}",
            f"{p.percentile(0.5) * 1e3:.0f}",
            f"{p.percentile(0.99) * 1e3:.0f}",
            f"{p.cache_hits:.0f}",
            ", ".join(f"{k} {v:.0f}" for k, v in p.verdicts.items()),
        )
    console.print(t)
    rate = {p.name: len(p.answered) / p.wall_s for p in phases}
    if "floor" in rate and "cache-hit" in rate:
        console.print(
            f"cache-hit / floor: {rate['cache-hit'] / rate['floor']:.2f} of the framework's own throughput here "
            f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    for p in phases:
        for e in Counter(p.errors).most_common(5):
            console.print(f"[yellow]{p.name}: {e[1]} x {e[0]}[/yellow]")
    if args.json:
        out = []
        for p in phases:
            d = asdict(p)
            del d["sent"], d["answered"], d["echoed"], d["latencies_s"]
            d.update(
                codes={str(k): v for k, v in p.codes.items()},
                answered=len(p.answered),
                sent=len(p.sent),
                exactly_once=p.exactly_once,
                requests_per_s=len(p.answered) / p.wall_s,
                p50_ms=p.percentile(0.5) * 1e3,
                p99_ms=p.percentile(0.99) * 1e3,
                mean_ms=statistics.fmean(p.latencies_s) * 1e3 if p.latencies_s else None,
            )
            out.append(d)
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(p.exactly_once and not p.errors for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
