"""Rule-based reward components: read the completion text and its AST only, so they are cheap and explainable.

Each returns a value in [-1, 1] ("not achieved" is -1), or None when it does not apply. The sandbox verdict
carries a runtime check behind each of them (see `kernelrl.rewards.execution`), so a rule fooled statically is still
caught when the code runs.
"""

from __future__ import annotations

from kernelrl.rewards.sample import Sample
from kernelrl.sandbox.candidate import ERR_EMPTY, ERR_NO_BLOCK, ERR_UNCLOSED

# Static hacks that the `kernel` component scores itself; every other static hack is a banned construct.
KERNEL_HACKS = frozenset({"no_kernel", "kernel_not_reachable", "training_branch"})


def format_reward(s: Sample) -> float:
    """1 for exactly one usable ``ModelNew`` block; -1 for prose only, empty or truncated; 0 for a broken block."""
    err = s.candidate.format_error
    if err is None:
        return 1.0
    if err in (ERR_EMPTY, ERR_NO_BLOCK, ERR_UNCLOSED):
        return -1.0
    return 0.0


def kernel_reward(s: Sample) -> float:
    """1 when a Triton kernel or CUDA extension is reachable from ``ModelNew.forward`` in eval mode.

    -0.5 when kernels are defined but not reached (decoys, training-only branches); -1 with no kernel or no
    usable code. Runtime counterparts: ``kernel_not_launched`` and ``torch_fallback`` in the verdict.
    """
    if s.candidate.code is None or not s.static.kernels or "no_kernel" in s.static.hacks:
        return -1.0
    if KERNEL_HACKS & set(s.static.hacks):
        return -0.5
    return 1.0


def banned_reward(s: Sample) -> float:
    """0 when clean, -1 when a banned construct is present (try/except fallback, threads, side streams,
    the reference ``Model``, monkey-patching, result caches, ...). Nothing to judge without code: 0."""
    return -1.0 if set(s.static.hacks) - KERNEL_HACKS else 0.0
