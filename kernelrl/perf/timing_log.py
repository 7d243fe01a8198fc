"""The timing log: one JSONL record per timed verdict on a GPU, the data a candidate-level
(GPPerf-style) model needs: problem features, device, reference and candidate times, and the candidate's
Triton launch configuration.

Several sandbox workers append to one file: each record is one `write` on an `O_APPEND` descriptor under
an exclusive `flock`, so lines never interleave. The launch configuration comes from the candidate's own
process, so it is reduced to bounded plain values before it is written (it never affects a verdict).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

MAX_KERNELS = 16
MAX_KEYS = 24
MAX_STR = 64


def default_path() -> Path | None:
    """`$KERNELRL_TIMING_LOG` ("" turns the log off), else `$KERNELRL_CACHE/timings.jsonl` (~/.cache/kernelrl)."""
    env = os.environ.get("KERNELRL_TIMING_LOG")
    if env is not None:
        return Path(env) if env else None
    cache = os.environ.get("KERNELRL_CACHE") or Path.home() / ".cache" / "kernelrl"
    return Path(cache) / "timings.jsonl"


def _value(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v if abs(v) < 1 << 62 else None
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else None
    if isinstance(v, str):
        return v[:MAX_STR]
    if (
        isinstance(v, (list, tuple))
        and len(v) <= 3
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    ):
        return [int(x) for x in v]
    return None


def launch_configs(raw: Any) -> dict[str, dict[str, Any]]:
    """Bounded {kernel: {grid, num_warps, num_stages, BLOCK_SIZE, ...}} from the candidate's report."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(raw, dict):
        return out
    for name, cfg in list(raw.items())[:MAX_KERNELS]:
        if not isinstance(name, str) or not isinstance(cfg, dict):
            continue
        clean = {}
        for key, val in list(cfg.items())[:MAX_KEYS]:
            v = _value(val)
            if isinstance(key, str) and v is not None:
                clean[key[:MAX_STR]] = v
        out[name[:MAX_STR]] = clean
    return out


def append(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record (a `time` stamp is added) as one JSON line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (
        json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True, default=str) + "\n"
    ).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a log (a line cut off by a crash is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
