"""GPU timing by the protocol that holds up (REFERENCE.md), and the speed-of-light bound.

Used by the sandboxed child (candidate) and the trusted reference process alike, so both are timed the
same way on the same GPU in the same run. Functions are bound at import, before any candidate code runs.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

L2_FLUSH_BYTES = 256 << 20
_Event = torch.cuda.Event
_synchronize = torch.cuda.synchronize
_perf = __import__("time").perf_counter

# Peak numbers per device family: dense bf16 tensor-core FLOP/s and HBM bytes/s. Deliberately the best case,
# so only physically impossible timings are flagged.
PEAKS = {
    "H200": (989e12, 4.8e12),
    "H100": (989e12, 3.35e12),
    "A100": (312e12, 2.0e12),
    "L40": (362e12, 0.864e12),
    "L4": (121e12, 0.3e12),
    "A10": (125e12, 0.6e12),
    "B200": (2250e12, 8.0e12),
}
DEFAULT_PEAK = (2500e12, 10e12)


def peaks_for(device_name: str) -> tuple[float, float]:
    for key, value in PEAKS.items():
        if key in device_name:
            return value
    return DEFAULT_PEAK


def speed_of_light_ms(flops: float, nbytes: float, device_name: str) -> float:
    """The least time any kernel could take: compute-bound or memory-bound, whichever is slower."""
    peak_flops, peak_bw = peaks_for(device_name)
    return max(flops / peak_flops, nbytes / peak_bw) * 1e3


def time_model(
    model: Any, input_sets: list[list[Any]], trials: int = 100, warmup: int = 10
) -> dict[str, Any]:
    """Median of `trials` calls, each on the next of several rotating input sets, after an L2 flush.

    The end event is recorded after a device-wide synchronise, so work hidden on side streams is counted.
    """
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device="cuda")
    with torch.no_grad():
        for i in range(warmup):
            model(*input_sets[i % len(input_sets)])
        _synchronize()
        times = []
        wall0 = _perf()
        for i in range(trials):
            args = input_sets[i % len(input_sets)]
            flush.zero_()
            start, end = _Event(enable_timing=True), _Event(enable_timing=True)
            _synchronize()
            start.record()
            model(*args)
            _synchronize()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        wall_ms = (_perf() - wall0) * 1e3
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "sum_ms": sum(times),
        "trials": trials,
        "child_wall_ms": wall_ms,
    }


def timing_hacks(result: dict[str, Any], parent_wall_ms: float, sol_ms: float | None) -> list[str]:
    """Cross-checks the supervisor can make on a timing it did not take itself."""
    hacks = []
    # Each trial's event interval lies inside the supervisor's own wall clock around the whole loop.
    if result.get("sum_ms", 0.0) > parent_wall_ms * 1.02 + 1.0:
        hacks.append("timer_inconsistent")
    median = result.get("median_ms")
    if not isinstance(median, (int, float)) or median <= 0:
        hacks.append("timer_inconsistent")
    elif sol_ms is not None and median < 0.9 * sol_ms:
        hacks.append("faster_than_light")
    return hacks
