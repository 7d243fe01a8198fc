"""Speed of light per (problem, device): the roofline bound from a problem's features and a device's peaks.

Two bounds, for two uses:

- `sol_ms`, reported as `sol_fraction` (SOL time / measured time): max(compute, memory) where compute is
  FLOPs at the problem's own precision (fp32 work at the FP32 rate, fp16/bf16 on tensor cores) and memory is
  the compulsory bytes (inputs + parameters + outputs, each moved once) at DRAM bandwidth. A kernel can beat
  it only by changing precision (TF32, 3xTF32 emulation) or by leaving outputs in L2.
- `floor_ms`, what the sandbox's `faster_than_light` check compares against: no kernel on this device can be
  faster, whatever it does. Compute at the device's best dense rate, memory = inputs and parameters read
  from DRAM (the timing protocol flushes L2 before each call) plus the outputs that cannot stay in L2.
  An unknown device gets no SOL and a floor from generous peaks, so nothing is flagged by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernelrl.perf.devices import Device, find_device

# Peaks beyond any current GPU: the floor for a device the table does not know.
UNKNOWN_PEAK_FLOPS = 2.5e16
UNKNOWN_BANDWIDTH = 2e13


@dataclass(frozen=True)
class SpeedOfLight:
    sol_ms: float | None  # the roofline at the problem's precision; None for an unknown device
    floor_ms: float  # the physical floor used to flag impossible timings
    bound: str | None  # "compute" or "memory": which side of the roofline sol_ms is on
    device: str | None  # the table's name for the device, None when unknown


def speed_of_light(
    flops: float,
    input_bytes: float,
    output_bytes: float,
    param_bytes: float = 0.0,
    device_name: str | Device | None = None,
    flops_lowp: float = 0.0,
) -> SpeedOfLight:
    """The roofline bound of one forward pass on a device (see the module docstring)."""
    dev = device_name if isinstance(device_name, Device) else find_device(device_name or "")
    flops, flops_lowp = max(float(flops), 0.0), min(max(float(flops_lowp), 0.0), max(float(flops), 0.0))
    reads = max(float(input_bytes), 0.0) + max(float(param_bytes), 0.0)
    outputs = max(float(output_bytes), 0.0)
    if dev is None:
        floor = max(flops / UNKNOWN_PEAK_FLOPS, (reads + outputs) / UNKNOWN_BANDWIDTH) * 1e3
        return SpeedOfLight(None, floor, None, None)
    compute = (flops - flops_lowp) / dev.peak("float32", "matmul") + flops_lowp / dev.fp16
    memory = (reads + outputs) / dev.bandwidth
    floor = max(flops / dev.best_peak, (reads + max(outputs - dev.l2_bytes, 0.0)) / dev.bandwidth) * 1e3
    return SpeedOfLight(
        max(compute, memory) * 1e3, floor, "compute" if compute > memory else "memory", dev.name
    )


def sol_fraction(sol_ms: float | None, measured_ms: float | None) -> float | None:
    """SOL time / measured time; None (never 0) when either is missing or the measurement is not positive."""
    if sol_ms is None or measured_ms is None or measured_ms <= 0 or sol_ms <= 0:
        return None
    return sol_ms / measured_ms
