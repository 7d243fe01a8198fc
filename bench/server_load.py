"""Load on the reward server: N concurrent HTTP clients for a fixed time, cache-hit and cold paths in one run.

Starts `kernelrl serve` itself (CPU workers, a random token) unless given ``--url``. Each client loops
``POST /score`` with one pair and a unique ``X-Request-ID`` until the phase ends; requests still in flight
are waited for, then the phase is checked: every request sent was answered exactly once (the server echoes
the id; sent ids, answered ids and echoed ids must be the same set, with no repeats).

- *cache-hit*: the same few pairs (bundled solutions of fast problems), primed once first, then repeated:
  what the HTTP layer, the scorer and the pool's cache cost per request.
- *cold*: distinct completions (the same solutions with a unique trailing comment, so the candidate hash
  differs): every request is a real sandbox run; throughput is bounded by the workers.

    .venv/bin/python bench/server_load.py [--clients 64] [--duration 30] [--workers 2] [--url URL --token T]
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

import httpx
from prometheus_client.parser import text_string_to_metric_families
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
    """`clients` coroutines, each sending one request at a time until `duration` is over; then drain."""
    phase = Phase(name, clients, duration)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=900, limits=limits, headers=headers) as http:
        start = time.perf_counter()
        end = start + duration

        async def client(k: int) -> None:
            i = 0
            while time.perf_counter() < end:
                problem, completion = pairs(k, i)
                i += 1
                rid = uuid.uuid4().hex
                phase.sent.append(rid)
                t0 = time.perf_counter()
                try:
                    r = await http.post(
                        f"{url}/score",
                        json={"problems": [problem], "completions": [completion]},
                        headers={"X-Request-ID": rid},
                    )
                except httpx.HTTPError as e:
                    phase.errors.append(f"{type(e).__name__}: {e}")
                    continue
                phase.latencies_s.append(time.perf_counter() - t0)
                phase.answered.append(rid)
                phase.echoed.append(r.headers.get("x-request-id", ""))
                phase.codes[r.status_code] += 1
                if r.status_code != 200:
                    phase.errors.append(f"{r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(client(k) for k in range(clients)))
        phase.wall_s = time.perf_counter() - start
    return phase


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


def main() -> int:
    ap = argparse.ArgumentParser(description="Reward server load: cache-hit and cold paths.")
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
        for name, pairs, duration in [
            ("cache-hit", lambda k, i: hot[(k + i) % len(hot)], args.duration),
            (
                "cold",
                lambda k, i: (hot[(k + i) % len(hot)][0], f"{hot[(k + i) % len(hot)][1]}\n# load {k}.{i}\n"),
                args.cold_duration or args.duration,
            ),
        ]:
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
