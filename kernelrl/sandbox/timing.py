"""GPU timing by the protocol that holds up (REFERENCE.md), and the checks the supervisor makes on a timing.
The speed-of-light floor comes from `kernelrl.perf.roofline` (device table and problem features).

Used by the sandboxed child (candidate) and the trusted reference process alike, so both are timed the same way
on the same GPU in the same run:

- the timed inputs are fresh (their own seeds, never the correctness checks'), several sets rotated through ONE
  set of buffers, refilled before every trial outside the timed region: consecutive calls see the same pointers
  but different data, so neither a cache keyed by the inputs nor one keyed by their addresses can answer;
- a random subset of trials (chosen by the supervisor, unknown to the candidate) runs under the op recorder and
  returns its outputs, which the supervisor checks against the reference's for that input set: doing less work
  once timing starts is a wrong answer;
- every trial must launch kernels (`min_launches`), L2 is flushed before each, the end event follows a
  device-wide synchronise (side streams are counted), the median is reported;
- the clock functions are bound at import, before any candidate code runs, and the supervisor's own wall clock
  around the loop bounds what the child may claim (`timing_hacks`).

On a CPU the same loop runs with `time.perf_counter` (only tests use it: CPU speed is never reported).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

L2_FLUSH_BYTES = 256 << 20
_Event = torch.cuda.Event
_synchronize = torch.cuda.synchronize
_perf = __import__("time").perf_counter

# Per-trial work outside the timed region the supervisor's wall clock also sees: refilling the inputs, the L2
# flush, synchronisation and event overhead. Generous on purpose: the bound only catches gross understatement.
OVERHEAD_FIXED_MS = 1.0
OVERHEAD_BYTES_PER_MS = 100e6  # 100 GB/s: far below any GPU's copy bandwidth


class _Clock:
    """CUDA events around a call on a GPU; perf_counter on a CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            _synchronize()

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if not self.cuda:
            t0 = _perf()
            out = fn()
            return (_perf() - t0) * 1e3, out
        start, end = _Event(enable_timing=True), _Event(enable_timing=True)
        _synchronize()
        start.record()
        out = fn()
        _synchronize()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), out


def time_model(
    call: Callable[[list[Any], bool], list[Any]],
    input_sets: list[list[Any]],
    trials: int = 100,
    warmup: int = 10,
    capture: set[int] | None = None,
    device: str = "cuda",
    launches: Callable[[], int] | None = None,
) -> tuple[dict[str, Any], list[tuple[int, list[Any]]]]:
    """Median of `trials` calls of `call(args, recorded)`, args refilled from the next input set each time.

    Returns the statistics and, for each trial index in `capture`, that trial's outputs (run with
    `recorded=True`; their times are left out of the statistics, the recorder costs time).
    """
    capture = capture or set()
    clock = _Clock(device)
    buffers = [v.clone() if isinstance(v, torch.Tensor) else v for v in input_sets[0]]
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device) if clock.cuda else None

    def refill(i: int) -> None:
        for buf, src in zip(buffers, input_sets[i % len(input_sets)], strict=True):
            if isinstance(buf, torch.Tensor):
                buf.copy_(src)

    with torch.no_grad():
        for i in range(warmup):
            refill(i)
            call(buffers, False)
        clock.sync()
        times: list[float] = []
        captured: list[tuple[int, list[Any]]] = []
        min_launches: int | None = None
        wall0 = _perf()
        for i in range(trials):
            refill(i)
            if flush is not None:
                flush.zero_()
            recorded = i in capture
            before = launches() if launches else 0
            ms, outs = clock.time(lambda: call(buffers, recorded))  # noqa: B023 - called at once
            if launches:
                n = launches() - before
                min_launches = n if min_launches is None else min(min_launches, n)
            if recorded:
                captured.append((i, [o.clone() if isinstance(o, torch.Tensor) else o for o in outs]))
            else:
                times.append(ms)
        wall_ms = (_perf() - wall0) * 1e3
    times = times or [float("nan")]
    result = {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "sum_ms": sum(times),
        "trials": len(times),
        "child_wall_ms": wall_ms,
        "min_launches": -1 if min_launches is None else min_launches,
    }
    return result, captured


def choose_capture(trials: int, count: int, rng: Any) -> list[int]:
    """The trials whose outputs are checked: random, never the first (warm caches make it special)."""
    count = max(1, min(count, trials - 1))
    return sorted(rng.sample(range(1, trials), count))


def timing_hacks(
    result: dict[str, Any],
    parent_wall_ms: float,
    floor_ms: float | None,
    input_bytes: int = 0,
    backend: str = "triton",
    n_captured: int = 0,
) -> list[str]:
    """Cross-checks the supervisor makes on a timing it did not take itself.

    - every trial's event interval lies inside the supervisor's wall clock around the whole loop, and the sum
      of the trials agrees with their median (a claimed median far below what the trials add up to is made up);
    - the claimed trials cannot add up to much less than the wall clock shows, once a generous per-trial
      overhead (refill, flush, sync) is taken off: understating the time is the hack that pays;
    - a median below the problem's physical floor on this GPU (`kernelrl.perf.roofline`, 10% margin for
      clock boost) is impossible (`faster_than_light`);
    - a trial that launched no kernel answered from somewhere else (`kernel_not_launched`).
    """
    hacks = []
    median, total, trials = result.get("median_ms"), result.get("sum_ms", 0.0), result.get("trials", 0)
    if not isinstance(median, int | float) or not median > 0 or not trials:
        return ["timer_inconsistent"]
    if total > parent_wall_ms * 1.02 + 1.0 or total < 0.5 * median * trials:
        hacks.append("timer_inconsistent")
    # Captured trials run under the recorder and copy their outputs: allow each far more than a plain trial.
    overhead = (trials + n_captured) * (OVERHEAD_FIXED_MS + input_bytes / OVERHEAD_BYTES_PER_MS)
    overhead += n_captured * (10 * median + 10.0)
    if total < 0.5 * (parent_wall_ms - overhead) - 1.0:
        hacks.append("timer_inconsistent")
    if floor_ms is not None and median < 0.9 * floor_ms:
        hacks.append("faster_than_light")
    if backend in ("triton", "cuda") and result.get("min_launches", 1) == 0:
        hacks.append("kernel_not_launched")
    return sorted(set(hacks))
