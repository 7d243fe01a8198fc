"""Per-problem GPU run budgets and trial counts from the expected reference time.

One run budget for every problem wastes the most time exactly where it is least needed: a candidate that
hangs on a 10-microsecond problem holds its worker for the full budget. With the reference time known in
advance (measured in the shipped data, or predicted by the latency model), the sandbox gives each problem:

- `trials`: the timing protocol's 100 trials, fewer (down to 20) where that would pass ~2 s of timed calls
  per side (a 200 ms reference takes 20 s for 100 trials, with the same median to within noise at 20);
- `warmup`: 10 calls, fewer for slow problems (at least 2);
- `run_timeout_s`: a fixed allowance for Triton's JIT compile and autotuning, plus every call the run phase
  makes (checks, warm-up, trials) at up to `SLOWDOWN` times the reference time, within [MIN, MAX].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TIMED_MS = 2000.0  # timed work per side the trial count aims for
MIN_TRIALS = 20
WARMUP = 10
MIN_WARMUP = 2
JIT_ALLOWANCE_S = 30.0  # Triton compiles and autotunes on the first calls, in the run phase
SLOWDOWN = 10.0  # a candidate this much slower than the reference still gets its verdict
MIN_RUN_TIMEOUT_S = 15.0
MAX_RUN_TIMEOUT_S = 300.0  # with the 180 s compile budget, under the candidate's 600 s RLIMIT_CPU


@dataclass(frozen=True)
class RunPlan:
    trials: int
    warmup: int
    run_timeout_s: float
    reference_ms: float | None  # what the plan was made from; None: the defaults, unchanged
    basis: str  # "measured" | "predicted" | "default"


def run_plan(
    reference_ms: float | None,
    *,
    basis: str = "predicted",
    trials: int = 100,
    run_timeout_s: float = 60.0,
    check_calls: int = 12,
) -> RunPlan:
    """The budget for one problem; without a usable reference time, the caller's defaults."""
    if reference_ms is None or not math.isfinite(reference_ms) or reference_ms <= 0:
        return RunPlan(trials, WARMUP, run_timeout_s, None, "default")
    n_trials = max(min(trials, math.ceil(TIMED_MS / reference_ms)), min(MIN_TRIALS, trials))
    warmup = max(MIN_WARMUP, min(WARMUP, math.ceil(TIMED_MS / 2 / reference_ms)))
    calls = check_calls + warmup + n_trials
    timeout = JIT_ALLOWANCE_S + calls * SLOWDOWN * reference_ms / 1e3
    timeout = min(max(timeout, MIN_RUN_TIMEOUT_S), MAX_RUN_TIMEOUT_S)
    return RunPlan(n_trials, warmup, round(timeout, 1), reference_ms, basis)
