"""GPU timing by the protocol that holds up (REFERENCE.md), and the checks on timings the supervisor did
not take itself. The speed-of-light bound comes from `kernelrl.perf.roofline` (device table and features).

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


def timing_hacks(result: dict[str, Any], parent_wall_ms: float, floor_ms: float | None) -> list[str]:
    """Cross-checks the supervisor can make on a timing it did not take itself.

    `floor_ms` is the problem's physical floor on this GPU (`kernelrl.perf.roofline.SpeedOfLight.floor_ms`):
    a median below it (with a 10% margin for clock boost and measurement) is `faster_than_light`.
    """
    hacks = []
    # Each trial's event interval lies inside the supervisor's own wall clock around the whole loop.
    if result.get("sum_ms", 0.0) > parent_wall_ms * 1.02 + 1.0:
        hacks.append("timer_inconsistent")
    median = result.get("median_ms")
    if not isinstance(median, (int, float)) or median <= 0:
        hacks.append("timer_inconsistent")
    elif floor_ms is not None and median < 0.9 * floor_ms:
        hacks.append("faster_than_light")
    return hacks
