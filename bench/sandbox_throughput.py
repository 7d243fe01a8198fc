"""Verdicts per second: our Ray `SandboxPool` against the naive one-subprocess-per-candidate baseline.

Both systems judge the same fixed mixed batch in the same run, with the same run budget per candidate:
correct and wrong bundled Triton solutions, crashing candidates and never-ending ones. Ours is a warmed-up
pool (its start-up is reported separately, as a one-time cost); the baseline (`bench/naive_check.py`) starts
a fresh Python per candidate, imports torch and triton, and execs problem and candidate in-process, with no
isolation, doing the same checks (2 shape variants x 3 seeds, 2 calls each) on the same scaled shapes.

    .venv/bin/python bench/sandbox_throughput.py [--candidates 24] [--workers 2] [--timeout 5] [--json out.json]

Per-candidate overhead = verdict wall time - time of the candidate's own forward calls, which are timed
in-process here on the same shapes. Ours is measured with one warm `Evaluator`, sequentially, over one full
mix: per-phase times of the correct verdicts (where the sandbox spends its time) and the pool's parallel
efficiency (sequential time / (workers x pool wall)).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: the in-process forward timings use it
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from kernelrl.sandbox import Problem, bundled_problems
from kernelrl.sandbox.pool import SandboxPool
from kernelrl.sandbox.supervisor import Evaluator
from kernelrl.sandbox.variants import plan_variants

BENCH = Path(__file__).resolve().parent
NAIVE = BENCH / "naive_check.py"
SEEDS = [1, 2, 3]  # the baseline's seeds; ours draws secret ones per batch (same number, same work)
N_VARIANTS, BUDGET = 2, 1 << 14  # passed to both systems, so both check the same shapes

# The base mix of 24. Correct: every bundled problem whose solution finishes its 12 forward calls well inside
# 5 s under the interpreter (at 1<<14 elements cross_entropy takes ~5 s, rms_norm ~12 s, layer_norm ~22 s).
CORRECT = [
    "elementwise_add",
    "gelu",
    "linear_relu",
    "log_softmax",
    "matmul",
    "matmul_bias_sigmoid",
    "max_reduction",
    "mse_loss",
    "relu",
    "softmax",
    "sum_reduction",
    "swish",
]
WRONG = ["elementwise_add", "gelu", "matmul", "mse_loss", "relu", "swish"]
CRASH = [  # statements put first in forward; all fail at run time (a conditional raise: an unconditional
    # one would make the kernel statically unreachable and the sandbox would call it a hack)
    ("relu", "if x.numel() > 0:\n    raise RuntimeError('candidate crashed')"),
    ("gelu", "x = x.view(x.numel() + 1)  # shape error (an import outside the allow-list is a hack now)"),
    ("swish", "x = x.flatten()[x.numel()]  # index out of bounds"),
]
LOOP = [
    ("relu", "while True:\n    pass"),
    ("elementwise_add", "while True:\n    pass"),
    ("swish", "while True:\n    pass"),
]
MIX_SIZE = len(CORRECT) + len(WRONG) + len(CRASH) + len(LOOP)
EXPECTED = {"correct": "ok", "wrong": "mismatch", "crash": "runtime_error", "loop": "timeout"}


@dataclass
class Item:
    index: int
    kind: str  # correct | wrong | crash | loop
    problem: Problem
    code: str  # the completion, distinct per item
    path: str  # the candidate written to a file, for the baseline
    variants: list[str]  # the problem's scaled variant sources, as files

    @property
    def expected(self) -> str:
        return EXPECTED[self.kind]


def inject(code: str, stmt: str) -> str:
    """`code` with `stmt` as the first statement of the last `def forward(...)`."""
    m = list(re.finditer(r"^( *)def forward\(.*\):[ \t]*$", code, re.M))[-1]
    indent = m.group(1) + "    "
    return code[: m.end()] + "\n" + "\n".join(indent + line for line in stmt.splitlines()) + code[m.end() :]


def base_mix(problems: dict[str, Problem]) -> list[tuple[str, Problem, str]]:
    mix = [("correct", problems[n], problems[n].extras["solution"]) for n in CORRECT]
    mix += [("wrong", problems[n], problems[n].extras["wrong"]) for n in WRONG]
    mix += [("crash", problems[n], inject(problems[n].extras["solution"], s)) for n, s in CRASH]
    mix += [("loop", problems[n], inject(problems[n].extras["solution"], s)) for n, s in LOOP]
    random.Random(0).shuffle(mix)  # fixed interleaving, so a truncated or repeated batch stays mixed
    return mix


def build_batch(n: int, tmp: Path) -> list[Item]:
    problems = bundled_problems()
    mix = base_mix(problems)
    variant_files: dict[str, list[str]] = {}
    for _kind, p, _code in mix:
        if p.name not in variant_files:
            variants, _notes = plan_variants(p.source, element_budget=BUDGET, count=N_VARIANTS, seed=0)
            variant_files[p.name] = []
            for v in variants:
                path = tmp / f"{p.name}_{v.name}.py"
                path.write_text(v.source)
                variant_files[p.name].append(str(path))
    items = []
    for i in range(n):
        kind, p, code = mix[i % len(mix)]
        code = f"{code.rstrip()}\n\n# bench candidate {i}\n"  # distinct text: never a cache hit
        path = tmp / f"candidate_{i}.py"
        path.write_text(code)
        items.append(Item(i, kind, p, code, str(path), variant_files[p.name]))
    return items


def forward_times(items: list[Item], passes: int = 2) -> dict[int, float]:
    """The 12 forward calls of each correct solution, timed in this process (interpreter): best of `passes`
    (the first pass also pays this process's one-time lazy initialisation, which the fork server pre-pays)."""
    sys.path.insert(0, str(BENCH))
    import naive_check

    best: dict[str, float] = {}
    firsts = list({it.problem.name: it for it in reversed(items)}.values())
    for _ in range(passes):
        for it in tqdm(firsts, desc="in-process forward timing", leave=False):
            res = naive_check.check(it.path, it.variants, SEEDS)
            assert res["status"] == "ok", res
            best[it.problem.name] = min(best.get(it.problem.name, float("inf")), res["forward_s"])
    return {it.index: best[it.problem.name] for it in items}


def naive_env() -> dict[str, str]:
    return {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}


def probe_startup(runs: int = 3) -> float:
    """The baseline's own start-up (Python + torch + triton imports): median of `runs`, after one unmeasured
    run that warms the page cache."""
    walls = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        cmd = [sys.executable, str(NAIVE), "--probe"]
        subprocess.run(cmd, env=naive_env(), capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls[1:])


def run_baseline(items: list[Item], timeout_s: float) -> tuple[float, list[str], list[float]]:
    statuses, walls = [], []
    start = time.perf_counter()
    for it in tqdm(items, desc="naive baseline", unit="cand"):
        cmd = [sys.executable, str(NAIVE), it.path, *it.variants, "--seeds", *map(str, SEEDS)]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, env=naive_env(), capture_output=True, text=True, timeout=timeout_s)
            lines = r.stdout.strip().splitlines()
            status = json.loads(lines[-1])["status"] if lines else "runtime_error"
        except subprocess.TimeoutExpired:
            status = "timeout"
        except ValueError:
            status = "runtime_error"
        walls.append(time.perf_counter() - t0)
        statuses.append(status)
    return time.perf_counter() - start, statuses, walls


def run_ours(items: list[Item], workers: int, timeout_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    # default CPU count: the pool shares the cores out among its workers
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init = time.perf_counter() - t0
    pool = SandboxPool(num_workers=workers, device="cpu", run_timeout_s=timeout_s, element_budget=BUDGET)
    warm = bundled_problems()["relu"]
    warm_codes = [f"{warm.extras['solution']}\n# warm-up {w}\n" for w in range(workers)]
    warm_ups = pool.evaluate_many([warm] * workers, warm_codes)
    startup = time.perf_counter() - t0
    pool.cache.clear()
    pool.cache_hits = 0
    t1 = time.perf_counter()
    verdicts = pool.evaluate_many([it.problem for it in items], [it.code for it in items])
    wall = time.perf_counter() - t1
    result = {
        "startup_s": startup,
        "ray_init_s": ray_init,
        "wall_s": wall,
        "statuses": [v.status for v in verdicts],
        "errors": [v.error for v in verdicts],
        "cache_hits": pool.cache_hits,
        "isolation": verdicts[0].isolation,
        "warm_up": [v.status for v in warm_ups],
    }
    pool.close()
    ray.shutdown()
    return result


def timed(fn: Callable[..., Any], acc: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.monotonic() - t0

    return wrapper


def ours_sequential(items: list[Item], timeout_s: float) -> list[dict[str, Any]]:
    """Each item through one warm Evaluator, sequentially: its wall time and where that time went."""
    ev = Evaluator(device="cpu", run_timeout_s=timeout_s, element_budget=BUDGET)
    warm = bundled_problems()["relu"]
    ev.evaluate(warm, warm.extras["solution"] + "\n# warm-up sequential\n", [7, 8, 9])
    acc: dict[str, float] = {}
    real_run = ev._run

    def run(job: dict[str, Any], frames: list[bytes]) -> dict[str, Any]:
        res = real_run(job, frames)
        end = time.monotonic()
        at = {h.get("event"): t for h, _p, t in reversed(res["frames"])}  # first frame of each event
        if {"started", "compiled", "done"} <= at.keys():
            acc["fork_to_started"] = at["started"] - res["start"]
            acc["import_candidate"] = at["compiled"] - at["started"]
            acc["checks"] = at["done"] - at["compiled"]
            acc["exit_and_cleanup"] = end - at["done"]
        return res

    ev.plan = timed(ev.plan, acc, "plan")  # type: ignore[method-assign]
    ev._reference_data = timed(ev._reference_data, acc, "reference")  # type: ignore[method-assign]
    ev._run = run  # type: ignore[method-assign]
    ev._decide = timed(ev._decide, acc, "judge")  # type: ignore[method-assign]
    out = []
    for it in tqdm(items, desc="ours, one Evaluator, sequential", leave=False):
        acc.clear()
        t0 = time.monotonic()
        v = ev.evaluate(it.problem, it.code.replace("# bench", "# sequential"), [11, 12, 13])
        out.append({"wall": time.monotonic() - t0, "status": v.status, **acc})
    ev.close()
    return out


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description="Sandbox pool vs naive subprocess-per-candidate throughput.")
    ap.add_argument("--candidates", type=int, default=24, help="batch size; the 24-candidate mix repeats")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0, help="run budget per candidate, s (both systems)")
    ap.add_argument("--json", type=Path, help="write all figures here")
    args = ap.parse_args()
    console = Console(width=120)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        console.print(
            f"[yellow]warning: load average {load_before:.2f} before start: timings will be noisy[/yellow]"
        )
    tmp = Path(tempfile.mkdtemp(prefix="kernelrl-bench-"))
    items = build_batch(args.candidates, tmp)
    n = len(items)
    kinds = dict(Counter(it.kind for it in items))
    console.print(f"batch: {n} candidates {kinds}; run budget {args.timeout:g} s; {args.workers} workers")

    correct = [it for it in items if it.kind == "correct"]
    fwd = forward_times(correct)
    startup = probe_startup()
    naive_timeout = args.timeout + startup
    console.print(
        f"baseline start-up (python + torch + triton): {startup:.2f} s -> timeout {naive_timeout:.2f} s"
    )
    base_wall, base_statuses, base_walls = run_baseline(items, naive_timeout)
    shutil.rmtree(tmp, ignore_errors=True)
    ours = run_ours(items, args.workers, args.timeout)
    mix = items[:MIX_SIZE]  # one full mix, each problem/kind once
    seq = ours_sequential(mix, args.timeout)
    load_after = os.getloadavg()[0]

    seq_correct = [(it, r) for it, r in zip(mix, seq, strict=True) if it.kind == "correct"]
    our_over = [r["wall"] - fwd[it.index] for it, r in seq_correct]
    base_over = [base_walls[it.index] - fwd[it.index] for it in correct]
    ours_vps, base_vps = n / ours["wall_s"], n / base_wall
    ratio = ours_vps / base_vps
    med = statistics.median
    rows = [
        [f"SandboxPool ({args.workers} workers)", str(n), f"{ours['wall_s']:.1f}", f"{ours_vps:.3f}"]
        + [f"{ratio:.2f}x", f"{med(our_over) * 1e3:.0f}", ours["isolation"]],
        ["naive subprocess", str(n), f"{base_wall:.1f}", f"{base_vps:.3f}", "1.00x"]
        + [f"{med(base_over) * 1e3:.0f}", "none (in-process exec)"],
    ]
    cols = ["system", "verdicts", "wall s", "verdicts/s", "ratio", "median overhead ms", "isolation"]
    title = f"Throughput: {n} candidates, {os.cpu_count()} CPU cores, Triton interpreter, {args.timeout:g} s budget"
    console.print(table(title, cols, rows))
    console.print(
        f"pool start-up, one-time: {ours['startup_s']:.1f} s (ray.init {ours['ray_init_s']:.1f} s, then "
        f"{args.workers} workers + warm-up verdicts); cache hits in the timed batch: {ours['cache_hits']}"
    )

    exp, oc, bc = Counter(it.expected for it in items), Counter(ours["statuses"]), Counter(base_statuses)
    statuses = sorted(set(exp) | set(oc) | set(bc))
    console.print(
        table(
            "Verdict statuses",
            ["status", "expected", "ours", "baseline"],
            [[s, str(exp[s]), str(oc[s]), str(bc[s])] for s in statuses],
        )
    )
    agree = sum(o == b for o, b in zip(ours["statuses"], base_statuses, strict=True))
    as_expected = sum(o == it.expected for o, it in zip(ours["statuses"], items, strict=True))
    console.print(f"per-candidate agreement ours/baseline: {agree}/{n}; ours as expected: {as_expected}/{n}")
    for it, s, e in zip(items, ours["statuses"], ours["errors"], strict=True):
        if s != it.expected:
            console.print(f"  [yellow]#{it.index} {it.kind} {it.problem.name}: {s}: {e}[/yellow]")

    keys = ["plan", "reference", "fork_to_started", "import_candidate", "checks", "exit_and_cleanup", "judge"]
    phase = {k: med(r.get(k, 0.0) for _it, r in seq_correct) for k in keys}
    phase["checks - forward"] = med(r.get("checks", 0.0) - fwd[it.index] for it, r in seq_correct)
    phase["forward"] = med(fwd[it.index] for it, _r in seq_correct)
    phase["wall"] = med(r["wall"] for _it, r in seq_correct)
    shown = ["wall", "forward", *keys[:4], "checks - forward", *keys[5:]]
    title = f"Ours, one warm Evaluator, sequential: median ms per correct verdict ({len(seq_correct)})"
    console.print(table(title, shown, [[f"{phase[k] * 1e3:.0f}" for k in shown]]))
    seq_wall = sum(r["wall"] for r in seq) * n / len(mix)
    efficiency = seq_wall / (args.workers * ours["wall_s"])
    console.print(
        f"one Evaluator, sequential, over the batch: {seq_wall:.1f} s ({dict(Counter(r['status'] for r in seq))}); "
        f"pool parallel efficiency {efficiency:.0%} of {args.workers} workers; "
        f"forward time of the correct candidates: {sum(fwd.values()):.1f} s; "
        f"load average {load_before:.2f} before, {load_after:.2f} after"
    )

    if args.json:
        report = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu_cores": os.cpu_count(),
            "load_average": [load_before, load_after],
            "candidates": n,
            "workers": args.workers,
            "run_budget_s": args.timeout,
            "ratio": ratio,
            "ours": {**ours, "verdicts_per_s": ours_vps, "overhead_ms": [o * 1e3 for o in our_over]},
            "ours_sequential": seq,
            "baseline": {
                "wall_s": base_wall,
                "verdicts_per_s": base_vps,
                "statuses": base_statuses,
                "walls_s": base_walls,
                "startup_s": startup,
                "timeout_s": naive_timeout,
                "overhead_ms": [o * 1e3 for o in base_over],
            },
            "forward_s": fwd,
            "items": [{"kind": it.kind, "problem": it.problem.name, "expected": it.expected} for it in items],
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
