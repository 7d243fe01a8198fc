"""The device table: datasheet peaks of GPUs (`devices.yaml`, sources cited per entry) and name lookup."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

TABLE = Path(__file__).with_name("devices.yaml")


class UnknownDeviceError(ValueError):
    """A device name that matches no entry of the table."""


@dataclass(frozen=True)
class Device:
    """One GPU's datasheet peaks: FLOP/s, bytes/s and bytes, not the table's TFLOP/s, GB/s and MB."""

    name: str
    vendor: str
    arch: str
    fp32: float
    fp16: float
    bandwidth: float
    sms: int
    l2_bytes: float
    tf32: float | None = None
    fp32_matrix: float | None = None
    memory_gb: float | None = None
    source: str = ""
    match: tuple[str, ...] = ()

    def peak(self, dtype: str = "float32", op_class: str = "matmul") -> float:
        """What eager PyTorch can reach for `op_class` in `dtype` (FLOP/s).

        PyTorch's defaults: fp32 matmuls run in full FP32 (`allow_tf32` is off for matmul, on for cuDNN),
        so fp32 convolutions and recurrent layers use TF32 tensor cores where the GPU has them; AMD's
        BLAS libraries use FP32 matrix cores; fp16/bf16 use tensor cores.
        """
        if dtype in ("float16", "bfloat16"):
            return self.fp16
        fp32 = max(self.fp32, self.fp32_matrix or 0.0)
        if op_class in ("conv", "rnn") and self.tf32 and self.vendor == "nvidia":
            return self.tf32
        return fp32

    @property
    def best_peak(self) -> float:
        """The highest dense rate any kernel could reach for fp16/bf16/fp32 work (FLOP/s)."""
        return max(self.fp16, self.tf32 or 0.0, self.fp32, self.fp32_matrix or 0.0)


def average_device(members: list[Device], name: str = "unnamed GPU") -> Device:
    """A stand-in for a GPU whose datasheet is unknown: the geometric mean of `members`' peaks."""

    def gmean(values: list[float]) -> float:
        return math.exp(sum(map(math.log, values)) / len(values))

    return Device(
        name=name,
        vendor="nvidia" if all(d.vendor == "nvidia" for d in members) else "unknown",
        arch="unknown",
        fp32=gmean([d.peak("float32", "matmul") for d in members]),
        fp16=gmean([d.fp16 for d in members]),
        tf32=gmean([d.tf32 or d.fp32 for d in members]),
        bandwidth=gmean([d.bandwidth for d in members]),
        sms=round(gmean([d.sms for d in members])),
        l2_bytes=gmean([d.l2_bytes for d in members]),
    )


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[^a-z0-9]+", name.lower()) if t)


def _contains(hay: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


@lru_cache(maxsize=1)
def devices() -> dict[str, Device]:
    """Every device of the table by canonical name."""
    raw = yaml.safe_load(TABLE.read_text())["devices"]
    out = {}
    for row in raw:
        out[row["name"]] = Device(
            name=row["name"],
            vendor=row["vendor"],
            arch=row["arch"],
            fp32=row["fp32"] * 1e12,
            fp16=row["fp16"] * 1e12,
            tf32=row["tf32"] * 1e12 if row.get("tf32") else None,
            fp32_matrix=row["fp32_matrix"] * 1e12 if row.get("fp32_matrix") else None,
            bandwidth=row["bandwidth"] * 1e9,
            sms=int(row["sms"]),
            l2_bytes=row["l2_mb"] * 2**20,
            memory_gb=row.get("memory_gb"),
            source=row["source"],
            match=tuple(row.get("match", ())),
        )
    return out


@lru_cache(maxsize=256)
def find_device(name: str) -> Device | None:
    """The table's entry for a device name (`torch.cuda.get_device_name()`, a canonical name or alias).

    Matching is by whole words, case-insensitive; the longest matching alias wins ("NVIDIA A10G" is the
    A10G, not the A10). None when nothing matches.
    """
    table = devices()
    if name in table:
        return table[name]
    hay = _tokens(name)
    best: tuple[int, Device] | None = None
    for dev in table.values():
        for alias in (dev.name, *dev.match):
            tokens = _tokens(alias)
            if tokens and _contains(hay, tokens) and (best is None or len(alias) > best[0]):
                best = (len(alias), dev)
    return best[1] if best else None


def get_device(name: str) -> Device:
    """Like `find_device`, but an unknown name is an error that lists the known ones."""
    dev = find_device(name)
    if dev is None:
        known = ", ".join(devices())
        raise UnknownDeviceError(f"unknown device {name!r}; known devices: {known}")
    return dev
