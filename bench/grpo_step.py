"""Time per GRPO step, split into generation, reward and update: rewards scored one completion at a time
(the baseline) against the whole batch at once through the sandbox pool (`kernelrl.rewards.trl_reward.kernel_reward`),
in one run, same model, data and seeds.

    .venv/bin/python bench/grpo_step.py [--model embedded] [--steps 3] [--generations 4] [--workers 2]

The reward share of the step is the figure to drive down. A freshly initialised or small policy mostly
writes unusable text, which the sandbox rejects in milliseconds; to time the sandbox doing real work, the
reward is computed on each row's bundled solution with a unique comment per completion (so nothing comes
from the cache), standing in for a policy that writes runnable kernels. Generation and update are the real
model's.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from typing import Any

from datasets import Dataset
from rich.console import Console
from rich.table import Table
from trl import GRPOConfig, GRPOTrainer

from kernelrl.data_pipeline.embedded_model import resolve_model
from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.rewards import trl_reward
from kernelrl.rewards.compose import Scorer
from kernelrl.sandbox import bundled_problems

NAMES = ["relu", "gelu", "swish", "elementwise_add"]
_counter = itertools.count()


def _runnable(problems: list[str]) -> list[str]:
    """The stand-in completions: each row's bundled solution, made unique so the cache never answers."""
    by_source = {p.source: p for p in bundled_problems().values()}
    return [
        f"```python\n{by_source[src].extras['solution']}# sample {next(_counter)}\n```" for src in problems
    ]


def make_serial_reward(scorer: Scorer):
    def serial_reward(prompts, completions, problem, **kwargs) -> list[float | None]:
        return [scorer.score([p], [c])[0].reward for p, c in zip(problem, _runnable(problem), strict=True)]

    return serial_reward


async def batched_reward(prompts, completions, problem, **kwargs) -> list[float | None]:
    return await trl_reward.kernel_reward(prompts, _runnable(problem), problem=problem, **kwargs)


class StepClock:
    """Wall time of each training step and of the generation and reward calls inside it."""

    def __init__(self, trainer: GRPOTrainer) -> None:
        self.rows: list[dict[str, float]] = []
        self._acc = {"generation": 0.0, "reward": 0.0}
        for attr, name in (("_generate", "generation"), ("_calculate_rewards", "reward")):
            setattr(trainer, attr, self._timed(getattr(trainer, attr), name))
        trainer.training_step = self._step(trainer.training_step)

    def _timed(self, fn: Any, name: str) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self._acc[name] += time.perf_counter() - t

        return run

    def _step(self, fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            self._acc = {"generation": 0.0, "reward": 0.0}
            t = time.perf_counter()
            out = fn(*a, **k)
            total = time.perf_counter() - t
            self.rows.append({**self._acc, "update": total - sum(self._acc.values()), "total": total})
            return out

        return run


def run(reward_fn: Any, args: argparse.Namespace, data: Dataset) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            max_steps=args.steps + 1,  # the first step (warm-up) is not counted
            per_device_train_batch_size=args.generations,
            num_generations=args.generations,
            max_completion_length=args.completion_tokens,
            learning_rate=1e-6,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            seed=0,
        )
        trainer = GRPOTrainer(
            model=resolve_model(args.model), reward_funcs=[reward_fn], args=config, train_dataset=data
        )
        clock = StepClock(trainer)
        trainer.train()
    return clock.rows[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per mode (after one warm-up step)")
    ap.add_argument("--generations", type=int, default=4, help="completions per step (one group)")
    ap.add_argument("--completion-tokens", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    problems = bundled_problems()
    data = Dataset.from_list(
        [{"prompt": build_prompt(problems[n].source), "problem": problems[n].source} for n in NAMES]
    )
    scorer = Scorer(num_workers=args.workers, device="cpu", run_timeout_s=60)
    scorer.score(
        [problems["relu"].source], [problems["relu"].extras["solution"]]
    )  # start the pool: not timed
    trl_reward.configure(scorer=scorer)
    results = {
        "serial (one completion at a time)": run(make_serial_reward(scorer), args, data),
        f"batched (whole batch, {args.workers} workers)": run(batched_reward, args, data),
    }
    scorer.close()
    table = Table(
        title=f"GRPO step on CPU: {args.model}, {args.generations} completions/step, median of {args.steps}"
    )
    for col in ("reward scoring", "generation s", "reward s", "update s", "step s", "reward share"):
        table.add_column(col, justify="right" if col != "reward scoring" else "left")
    medians = {}
    for label, rows in results.items():
        m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        medians[label] = m
        table.add_row(
            label,
            f"{m['generation']:.1f}",
            f"{m['reward']:.1f}",
            f"{m['update']:.1f}",
            f"{m['total']:.1f}",
            f"{m['reward'] / m['total']:.0%}",
        )
    console = Console()
    console.print(table)
    serial, batched = medians.values()
    console.print(
        f"reward time: batched is {serial['reward'] / batched['reward']:.2f}x faster; "
        f"step: {serial['total'] / batched['total']:.2f}x faster"
    )


if __name__ == "__main__":
    main()
