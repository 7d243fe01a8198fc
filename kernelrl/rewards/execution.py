"""Execution reward components: read the sandbox verdict, decided by the trusted supervisor from real runs.

The verdict's runtime checks stand behind the static rules: the Triton launch path is hooked in the child
(``kernel_not_launched``, launches only in training mode), heavy aten ops run outside our kernels are counted
(``torch_fallback``), threads are counted (``thread_started``), inputs are compared before and after
(``input_mutation``), outputs are poisoned (``stale_output``). Any hack makes the status ``hack_detected``.
"""

from __future__ import annotations

import math

from kernelrl.rewards.sample import Sample

# The graded ladder: a hack scores below everything, an honest wrong answer above every failure to run.
LADDER = {
    "hack_detected": -1.0,
    "format_error": -0.5,
    "compile_error": -0.3,
    "runtime_error": -0.2,
    "timeout": -0.2,
    "oom": -0.2,
    "mismatch": 0.0,
    "ok": 1.0,
}
# Speedups are clipped at 3x either way (log-scaled), so one lucky timing cannot dominate a group.
SPEEDUP_CLIP = 3.0
# Reasoning longer than this earns nothing from the conciseness term.
REASONING_BUDGET_CHARS = 4000


def execution_reward(s: Sample) -> float | None:
    """The ladder value of the verdict's status; None when the sandbox could not judge (``infra_error``,
    or ``not_executed``: e.g. a CUDA candidate on a machine without a GPU)."""
    if s.verdict is None:
        return None
    return LADDER.get(s.verdict.status)


def speed_reward(s: Sample) -> float | None:
    """log(speedup)/log(3) clipped to [-1, 1], only for a correct, hack-free, timed candidate; None otherwise
    (nothing was timed on CPU), so it is left out rather than counted as zero."""
    v = s.verdict
    if v is None or v.status != "ok" or v.speedup is None or not v.speedup > 0:
        return None
    return max(-1.0, min(1.0, math.log(v.speedup) / math.log(SPEEDUP_CLIP)))


def concise_reward(s: Sample) -> float | None:
    """ConCuR's observation as shaping: among correct answers, shorter reasoning is better. 1 - length/budget
    (floored at 0) when correct; None otherwise, so it never rewards a short wrong answer."""
    v = s.verdict
    if v is None or v.status != "ok":
        return None
    return max(0.0, 1.0 - len(s.candidate.reasoning) / REASONING_BUDGET_CHARS)
