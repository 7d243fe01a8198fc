"""The verdict contract shared by every consumer (rewards, curation, evaluation, the server).

A verdict is decided by the trusted supervisor alone; nothing a candidate prints can set a field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 2  # 2: `hack_details`
# Bumped whenever the correctness/timing protocol changes, so cached verdicts from an older protocol are not reused.
PROTOCOL_VERSION = 2  # 2: capability guards, sealed channel, scaled tolerance, fresh timing inputs

STATUSES = (
    "ok",
    "format_error",
    "compile_error",
    "runtime_error",
    "timeout",
    "oom",
    "mismatch",
    "hack_detected",
    "not_executed",
    "infra_error",
)
BACKENDS = ("triton", "cuda", "none")
LOG_TAIL_CHARS = 4000


@dataclass
class Check:
    """One comparison of candidate against reference: a shape variant under one seed."""

    variant: str
    seed_index: int
    distribution: str
    passed: bool
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    message: str | None = None


@dataclass
class Verdict:
    status: str
    backend: str = "none"
    compiled: bool = False
    executed: bool = False
    correct: bool = False
    checks: list[Check] = field(default_factory=list)
    hacks: list[str] = field(default_factory=list)
    hack_details: list[str] = field(default_factory=list)  # "<hack>: <what, where>" for each detection
    runtime_ms: float | None = None
    ref_runtime_ms: float | None = None
    speedup: float | None = None
    sol_fraction: float | None = None  # speed-of-light time / runtime_ms (kernelrl.perf.roofline); GPU only
    device: str = "cpu"
    isolation: str = "none"
    error: str | None = None
    log_tail: str = ""
    problem_id: str | None = None
    candidate_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}; expected one of {STATUSES}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        self.log_tail = self.log_tail[-LOG_TAIL_CHARS:]
        self.hacks = sorted(set(self.hacks))
        self.hack_details = list(dict.fromkeys(self.hack_details))[:50]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        data = dict(data)
        data["checks"] = [Check(**c) for c in data.get("checks", [])]
        return cls(**data)
