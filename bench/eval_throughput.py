"""Samples scored per minute by `kernelrl eval`: batched generation against one prompt at a time.

Both runs evaluate the same model on the same problems, k samples each, with the same seed, through the same
warm sandbox pool (its start-up is reported once, separately; its verdict cache is emptied between runs so
both pay for their own sandbox work). The only difference is `batch_size`: the run's value (default 8) against
1, the way a naive evaluation loop calls `model.generate` per prompt. A third figure, the sandbox's own rate on
known completions (each problem's correct and wrong answer), says what scoring alone costs.

    .venv/bin/python bench/eval_throughput.py [--model embedded] [--problems bundled:relu,gelu,swish,elementwise_add]
        [--samples 2] [--max-new-tokens 64] [--batch-size 8] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.table import Table

from kernelrl.rewards.compose import Scorer
from kernelrl.sandbox.pool import SandboxPool
from kernelrl.train.evaluate import EvalConfig, evaluate, resolve_problems


def run(config: EvalConfig, scorer: Scorer) -> dict[str, Any]:
    """One evaluation into a fresh directory; wall time, generation and scoring time, samples."""
    scorer.pool.cache.clear()
    t0 = time.perf_counter()
    summary = evaluate(config, scorer=scorer, progress=False)
    wall = time.perf_counter() - t0
    stats = next(iter(summary["models"].values()))["run"]
    samples = stats["scored"]
    return {
        "batch_size": config.batch_size,
        "samples": samples,
        "wall_s": wall,
        "generation_s": stats["generation_s"],
        "scoring_s": stats["scoring_s"],
        "samples_per_min": 60 * samples / wall,
        "generated_per_min": 60 * samples / stats["generation_s"] if stats["generation_s"] else None,
        "verdicts": summary["models"][config.models[0]]["overall"]["verdicts"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--problems", default="bundled:relu,gelu,swish,elementwise_add")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    problems = resolve_problems(args.problems)
    t0 = time.perf_counter()
    pool = SandboxPool(num_workers=args.workers, device=args.device, run_timeout_s=60)
    scorer = Scorer(pool=pool)
    first = problems[0].problem
    pool.evaluate_many(
        [first] * args.workers,
        [f"{first.extras.get('solution', '')}\n# warm {i}\n" for i in range(args.workers)],
    )
    pool_start = time.perf_counter() - t0  # up to the first verdicts: Ray starts actors lazily
    with tempfile.TemporaryDirectory(prefix="kernelrl-eval-bench-") as tmp:
        base = {
            "models": [args.model],
            "problems": args.problems,
            "samples": args.samples,
            "max_new_tokens": args.max_new_tokens,
            "seed": 0,
            "device": args.device,
        }
        # Warm-up: the model's files into the page cache, the pool's workers through one real verdict each.
        evaluate(
            EvalConfig(**{**base, "samples": 1, "max_new_tokens": 1, "out": f"{tmp}/warm"}),
            scorer=scorer,
            progress=False,
        )
        known = Path(tmp) / "known.jsonl"
        known.write_text(
            "".join(
                json.dumps({"problem_id": ep.id, "completion": ep.problem.extras[kind]}) + "\n"
                for ep in problems
                for kind in ("solution", "wrong")
                if kind in ep.problem.extras
            )
        )
        scorer.pool.cache.clear()
        t1 = time.perf_counter()
        evaluate(
            EvalConfig(completions=[str(known)], problems=args.problems, out=f"{tmp}/known"),
            scorer=scorer,
            progress=False,
        )
        known_s = time.perf_counter() - t1
        n_known = len(known.read_text().splitlines())
        batched = run(EvalConfig(**base, batch_size=args.batch_size, out=f"{tmp}/batched"), scorer)
        single = run(EvalConfig(**base, batch_size=1, out=f"{tmp}/single"), scorer)
    scorer.close()
    ray.shutdown()

    ratio = batched["samples_per_min"] / single["samples_per_min"]
    gen_ratio = single["generation_s"] / batched["generation_s"] if batched["generation_s"] else None
    table = Table(title=f"kernelrl eval throughput: {args.model} on {args.problems}, k={args.samples}")
    for col in ("run", "samples", "wall s", "generation s", "scoring s", "samples/min", "verdicts"):
        table.add_column(col, justify="left" if col in ("run", "verdicts") else "right")
    for name, r in (
        (f"batched (batch_size={args.batch_size})", batched),
        ("one at a time (batch_size=1)", single),
    ):
        table.add_row(
            name,
            str(r["samples"]),
            f"{r['wall_s']:.1f}",
            f"{r['generation_s']:.1f}",
            f"{r['scoring_s']:.1f}",
            f"{r['samples_per_min']:.1f}",
            ", ".join(f"{k} {v}" for k, v in r["verdicts"].items()),
        )
    console = Console(width=140)
    console.print(table)
    console.print(
        f"end-to-end samples/min: batched / one-at-a-time = [bold]{ratio:.2f}x[/bold]; generation time "
        f"one-at-a-time / batched = {gen_ratio:.2f}x"
        if gen_ratio
        else f"end-to-end samples/min ratio {ratio:.2f}x"
    )
    console.print(
        f"sandbox alone on known completions (correct + wrong): {n_known} samples in {known_s:.1f} s = "
        f"{60 * n_known / known_s:.1f} samples/min; pool start-up {pool_start:.1f} s (one-time, not counted); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "batched": batched,
                    "one_at_a_time": single,
                    "ratio_samples_per_min": ratio,
                    "ratio_generation_time": gen_ratio,
                    "known": {"samples": n_known, "seconds": known_s},
                    "pool_start_s": pool_start,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
