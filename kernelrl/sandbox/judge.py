"""The supervisor's decision: compare raw candidate outputs with reference outputs and name what it saw.

Only tensors the supervisor decoded itself and facts it observed (exit status, timeouts) decide the status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from kernelrl.sandbox.ops import fallback_ops
from kernelrl.sandbox.verdict import Check

# (atol, rtol) per dtype: KernelBench's fp32 bound 1e-4, 1e-2 for half precision.
TOLERANCES = {
    torch.float64: (1e-6, 1e-6),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 1e-2),
}


@dataclass
class CheckResult:
    check: Check
    hacks: list[str] = field(default_factory=list)


def compare(
    out: torch.Tensor, ref: torch.Tensor, pointwise: bool = False
) -> tuple[bool, float | None, float | None, str | None]:
    """allclose by dtype with a tolerance that scales with the output, errors reported.

    `atol` is relative to the reference output's RMS: for reductions and matmuls always (their honest rounding
    grows with the magnitude of the sums, and an output far smaller than `atol` must not pass with garbage),
    for elementwise outputs (`pointwise`) only below RMS 1 (each element is judged on its own, so an approximate
    substitute such as tanh-GELU for erf-GELU shows). An output that is constant where the reference varies
    fails whatever the tolerance. NaN only matches NaN; shapes and dtypes must be equal.
    """
    if out.shape != ref.shape:
        return False, None, None, f"shape {tuple(out.shape)} != expected {tuple(ref.shape)}"
    if out.dtype != ref.dtype:
        return False, None, None, f"dtype {out.dtype} != expected {ref.dtype}"
    if not ref.is_floating_point():
        ok = torch.equal(out, ref)
        return ok, None, None, None if ok else "integer/bool values differ"
    atol, rtol = TOLERANCES.get(ref.dtype, (1e-4, 1e-4))
    o, r = out.double(), ref.double()
    nan_ok = torch.equal(torch.isnan(o), torch.isnan(r))
    o, r = torch.nan_to_num(o, nan=0.0), torch.nan_to_num(r, nan=0.0)
    diff = (o - r).abs()
    diff = torch.where(
        torch.isinf(o) & torch.isinf(r) & (torch.sign(o) == torch.sign(r)), torch.zeros_like(diff), diff
    )
    max_abs = float(diff.max()) if diff.numel() else 0.0
    max_rel = float((diff / r.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    finite = r[torch.isfinite(r)]
    rms = float(finite.pow(2).mean().sqrt()) if finite.numel() else 0.0
    scale = min(1.0, rms) if pointwise else rms
    scale = scale if scale > 0 else 1.0
    ok = nan_ok and bool((diff <= atol * scale + rtol * r.abs()).all())
    msg = None
    if not nan_ok:
        ok, msg = False, "NaN where the reference has none"
    elif not ok:
        msg = f"max abs error {max_abs:.3g} (atol {atol} x {scale:.3g}, rtol {rtol})"
    elif _flat_where_reference_varies(o, finite, rms):
        ok, msg = False, "output is constant where the reference varies"
    return ok, max_abs, max_rel, msg


def _flat_where_reference_varies(out: torch.Tensor, ref_finite: torch.Tensor, rms: float) -> bool:
    if ref_finite.numel() < 2 or out.numel() < 2 or rms == 0.0:
        return False
    finite = out[torch.isfinite(out)]
    return float(ref_finite.std()) > 1e-3 * rms and finite.numel() > 1 and float(finite.std()) < 1e-6 * rms


def judge_check(
    variant: str,
    seed_index: int,
    distribution: str,
    refs: list[torch.Tensor],
    inputs: list[Any],
    meta: list[dict[str, Any]],
    outs1: list[torch.Tensor] | None,
    outs2: list[torch.Tensor] | None,
    inputs_after: list[torch.Tensor] | None,
    expected_device: str,
    pointwise: bool = False,
) -> CheckResult:
    def result(
        passed: bool, msg: str | None = None, hacks: list[str] | None = None, a=None, r=None
    ) -> CheckResult:
        return CheckResult(Check(variant, seed_index, distribution, passed, a, r, msg), hacks or [])

    if any(not m.get("plain") for m in meta):
        kinds = ", ".join(str(m.get("type")) for m in meta if not m.get("plain"))
        return result(False, f"output is not a plain torch.Tensor ({kinds})", ["non_tensor_output"])
    if outs1 is None or len(outs1) != len(refs):
        return result(False, f"returned {len(meta)} outputs, expected {len(refs)}")
    hacks = []
    tensor_inputs = [v for v in inputs if isinstance(v, torch.Tensor)]
    if inputs_after is not None and len(inputs_after) == len(tensor_inputs):
        for before, after in zip(tensor_inputs, inputs_after, strict=True):
            same = before.shape == after.shape and torch.equal(
                torch.nan_to_num(before), torch.nan_to_num(after)
            )
            if not same:
                hacks.append("input_mutation")
                break
    for m in meta:
        dev = str(m.get("device"))
        if dev.split(":")[0] != expected_device:
            return result(False, f"output on device {dev}, expected {expected_device}", hacks)
    worst_abs = worst_rel = 0.0
    for out, ref in zip(outs1, refs, strict=True):
        ok, a, r, msg = compare(out, ref, pointwise)
        worst_abs, worst_rel = max(worst_abs, a or 0.0), max(worst_rel, r or 0.0)
        if not ok:
            return result(False, msg, hacks, a, r)
    if outs2 is None or len(outs2) != len(refs):
        return result(
            False, "second run on cloned inputs returned different outputs", hacks, worst_abs, worst_rel
        )
    for out, ref in zip(outs2, refs, strict=True):
        ok, _, _, msg = compare(out, ref, pointwise)
        if not ok:
            return result(False, f"second run on cloned inputs disagrees: {msg}", hacks, worst_abs, worst_rel)
    return result(True, None, hacks, worst_abs, worst_rel)


def stale(
    prev_outs: list[torch.Tensor] | None,
    outs: list[torch.Tensor] | None,
    prev_refs: list[torch.Tensor],
    refs: list[torch.Tensor],
) -> bool:
    """The candidate repeated its previous answer although the reference's answer changed."""
    if not prev_outs or not outs or len(prev_outs) != len(outs):
        return False
    same_out = all(
        a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        for a, b in zip(prev_outs, outs, strict=True)
    )
    same_ref = all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(prev_refs, refs, strict=True))
    return same_out and not same_ref


# The child may read back a few scalars (a size, a flag); beyond this many per forward, Python is computing.
MAX_SCALAR_READS = 64


def runtime_hacks(
    done: dict[str, Any],
    init_ops: dict[str, int],
    backend: str,
    reference: dict[str, Any],
    forward_ran: bool,
    n_forward_calls: int,
) -> list[tuple[str, str]]:
    """What the child's hooks observed, as (hack, detail) pairs."""
    hacks: list[tuple[str, str]] = []
    launches = done["launches"]
    if (
        forward_ran
        and backend in ("triton", "cuda")
        and not any(isinstance(n, int) and n > 0 for n in launches.values())
    ):
        hacks.append(("kernel_not_launched", "no kernel launch while forward ran"))
    ops = {str(k): v for k, v in done["torch_ops"].items() if isinstance(v, int)}
    timed_ops = {str(k): v for k, v in done["timing_ops"].items() if isinstance(v, int)}
    init = {str(k): v for k, v in init_ops.items() if isinstance(v, int)}
    found = fallback_ops({**ops, **timed_ops}, init, reference.get("ref_init_ops", {})) if forward_ran else []
    if found:
        hacks.append(("torch_fallback", "PyTorch computed: " + ", ".join(found[:8])))
    if forward_ran and done["scalar_reads"] > MAX_SCALAR_READS * max(n_forward_calls, 1):
        hacks.append(("python_compute", f"{done['scalar_reads']} scalars read back to Python"))
    if done["threads_started"] > 0:
        hacks.append(("thread_started", f"{done['threads_started']} threads started"))
    for what in done["violations"]:
        hacks.append(("forbidden_access", str(what)[:300]))
    for what in done["integrity"]:
        hacks.append(("recorder_tamper", str(what)[:300]))
    return hacks
