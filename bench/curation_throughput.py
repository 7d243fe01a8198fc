"""Curation throughput: verified samples per minute through the sandbox pool vs one sandbox call at a time,
and dedup time for a large generated pool (100k problems by default).

Both verification systems judge the same batch (synthesised answers for generated problems, each text
distinct so no cache serves them) with the same Evaluator settings, in the same run; start-up (Ray, the
workers, the first fork server) is timed separately and left out of the rates. The baseline is what a
curation script without a pool does: one `Evaluator`, `evaluate()` per sample, in order.

    .venv/bin/python bench/curation_throughput.py [--samples 24] [--workers 2] [--dedup-n 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import datetime, timezone

from kernelrl.data_pipeline.dedup import DedupConfig, deduplicate, fingerprints, load_eval_sets
from kernelrl.data_pipeline.generate import generate_problems
from kernelrl.data_pipeline.synthesize import synthesize
from kernelrl.sandbox.problem import Problem, problem_id

CATEGORIES = ["elementwise", "reduction", "softmax", "cumulative"]  # quick under the CPU interpreter


def _batch(n: int, seed: int) -> tuple[list[Problem], list[str]]:
    gen = generate_problems(n, seed=seed, categories=CATEGORIES)
    problems = [Problem(problem_id(g.source), g.name, g.source) for g in gen]
    return problems, [f"{synthesize(g)}\n<!-- bench sample {i} -->" for i, g in enumerate(gen)]


def bench_verify(n: int, workers: int, budget: int, n_seeds: int) -> dict:
    from kernelrl.sandbox.pool import SandboxPool
    from kernelrl.sandbox.supervisor import Evaluator

    settings = {"device": "cpu", "element_budget": budget, "n_seeds": n_seeds, "run_timeout_s": 120}
    problems, texts = _batch(n, seed=101)
    warm_p, warm_t = _batch(workers, seed=202)  # different problems: nothing of the batch is pre-planned

    t = time.perf_counter()
    pool = SandboxPool(num_workers=workers, **settings)
    pool.evaluate_many(warm_p, warm_t)
    pool_start = time.perf_counter() - t
    t = time.perf_counter()
    pooled = pool.evaluate_many(problems, texts)
    pool_s = time.perf_counter() - t
    pool.close()

    with Evaluator(**settings) as ev:
        t = time.perf_counter()
        ev.evaluate(warm_p[0], warm_t[0])
        single_start = time.perf_counter() - t
        t = time.perf_counter()
        single = [ev.evaluate(p, c) for p, c in zip(problems, texts, strict=True)]
        single_s = time.perf_counter() - t

    agree = sum(a.status == b.status for a, b in zip(pooled, single, strict=True))
    ok = sum(v.status == "ok" for v in pooled)
    return {
        "samples": n,
        "workers": workers,
        "ok": ok,
        "statuses_agree": agree,
        "pool_s": round(pool_s, 2),
        "single_s": round(single_s, 2),
        "pool_per_min": round(60 * n / pool_s, 1),
        "single_per_min": round(60 * n / single_s, 1),
        "ratio": round(single_s / pool_s, 2),
        "pool_start_s": round(pool_start, 1),
        "single_start_s": round(single_start, 1),
    }


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_dedup(n: int, workers: int) -> dict:
    t = time.perf_counter()
    gen = generate_problems(n, seed=0)
    gen_s = time.perf_counter() - t
    tasks = [Problem(problem_id(g.source), g.name, g.source) for g in gen]
    t = time.perf_counter()
    fingerprints([p.source for p in tasks[:5000]], 128, 1)
    fp_ms = (time.perf_counter() - t) / 5000 * 1e3
    config = DedupConfig(workers=workers)
    evals = load_eval_sets(config.eval_sets)
    t, cpu = time.perf_counter(), _cpu()
    kept, removed = deduplicate(tasks, config, eval_problems=evals)
    dedup_s, dedup_cpu = time.perf_counter() - t, _cpu() - cpu
    reasons: dict[str, int] = {}
    for r in removed:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    return {
        "problems": n,
        "workers": workers,
        "generate_s": round(gen_s, 1),
        "fingerprint_ms_per_problem_1core": round(fp_ms, 2),
        "dedup_s": round(dedup_s, 1),
        "dedup_cpu_s": round(dedup_cpu, 1),  # this process + its workers: wall time on a shared machine lies
        "kept": len(kept),
        "removed": reasons,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--budget", type=int, default=4096, help="element budget of the CPU checks")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per shape variant")
    ap.add_argument("--dedup-n", type=int, default=100_000)
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--skip-dedup", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    out = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    if not args.skip_verify:
        v = out["verify"] = bench_verify(args.samples, args.workers, args.budget, args.seeds)
        print(
            f"verify: {v['samples']} samples ({v['ok']} ok, statuses agree {v['statuses_agree']}/{v['samples']}): "
            f"pool x{v['workers']} {v['pool_per_min']}/min ({v['pool_s']} s) vs one call at a time "
            f"{v['single_per_min']}/min ({v['single_s']} s) = {v['ratio']}x; start-up pool {v['pool_start_s']} s, "
            f"single {v['single_start_s']} s"
        )
    if not args.skip_dedup:
        d = out["dedup"] = bench_dedup(args.dedup_n, args.workers)
        print(
            f"dedup: {d['problems']} generated problems in {d['dedup_s']} s on {d['workers']} processes "
            f"({d['dedup_cpu_s']} s of CPU) "
            f"(fingerprint {d['fingerprint_ms_per_problem_1core']} ms/problem on one core; generating them "
            f"took {d['generate_s']} s); kept {d['kept']}, removed {d['removed']}"
        )
    out["load_after"] = round(os.getloadavg()[0], 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
