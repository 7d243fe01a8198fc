"""The pieces of the supervisor that parse hostile bytes and make the decision."""

from __future__ import annotations

import struct

import pytest
import torch

from kernelrl.sandbox import judge, wire
from kernelrl.sandbox.ops import fallback_ops
from kernelrl.sandbox.verdict import Check, Verdict


def test_wire_roundtrip_all_dtypes_and_values():
    values = [
        torch.randn(3, 4),
        torch.tensor(2.5),
        torch.zeros(0, 3),
        torch.randn(5).bfloat16(),
        torch.arange(4),
        torch.tensor([True, False]),
        7,
        None,
        "s",
    ]
    out = wire.decode(wire.encode(values))
    for a, b in zip(values, out, strict=True):
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        else:
            assert a == b


@pytest.mark.parametrize(
    "forge",
    [
        lambda m: m[:5],  # truncated header length
        lambda m: struct.pack("<Q", 1 << 40) + m[8:],  # absurd header length
        lambda m: m[:-4],  # payload shorter than the header claims
        lambda m: m[:8] + m[8:].replace(b'"float32"', b'"pickle!"'),  # unknown dtype
    ],
)
def test_wire_rejects_forged_messages(forge):
    msg = wire.encode([torch.randn(4)])
    with pytest.raises(wire.WireError):
        wire.decode(forge(msg))


def test_compare_tolerances_and_nan():
    ref = torch.randn(100)
    assert judge.compare(ref + 5e-5, ref)[0]
    assert not judge.compare(ref + 1e-2, ref)[0]
    assert not judge.compare(ref.half().float() * 1.01, ref)[0]  # a 1 % error is never fp32-correct
    assert not judge.compare(ref[:50], ref)[0]
    assert not judge.compare(ref.double(), ref)[0]  # dtype must match
    nan = ref.clone()
    nan[3] = float("nan")
    assert not judge.compare(nan, ref)[0] and judge.compare(nan, nan)[0]
    big = torch.randn(64, 64) * 100
    assert judge.compare(big + 1e-3, big)[0]  # atol scales with the output's RMS


def test_tolerance_scales_down_with_tiny_outputs():
    """Outputs far below atol (a softmax over 400k columns) must not pass with scaled-down garbage."""
    x = torch.randn(4, 4096)
    ref = torch.softmax(x, dim=-1) * 1e-3  # every value far below atol = 1e-4
    garbage = torch.softmax(torch.randn(4, 4096), dim=-1) * 1e-3  # input-shaped, wrong
    assert (ref.abs() < 1e-4).all()
    ok, _, _, msg = judge.compare(garbage, ref)
    assert not ok and "max abs error" in msg
    assert judge.compare(ref * (1 + 1e-6), ref)[0]  # honest rounding still passes
    for pointwise in (False, True):
        assert not judge.compare(garbage, ref, pointwise)[0]


def test_pointwise_tolerance_catches_an_approximate_substitute():
    """tanh-GELU for erf-GELU passes an RMS-scaled atol on wide inputs; per element it does not."""
    x = (
        torch.rand(4096, generator=torch.Generator().manual_seed(0)) * 10
    )  # the `wide` draw of torch.rand inputs
    ref = torch.nn.functional.gelu(x)
    approx = torch.nn.functional.gelu(x, approximate="tanh")
    assert judge.compare(approx, ref, pointwise=False)[0]  # the reduction tolerance is too lenient for this
    assert not judge.compare(approx, ref, pointwise=True)[0]
    assert judge.compare(ref + 1e-6, ref, pointwise=True)[0]


def test_constant_output_where_the_reference_varies_fails():
    """Half precision's 1e-2 tolerance would let a constant pass for a reference that varies by 1 %."""
    ref = (torch.rand(256) * 1e-2 + 1.0).half()
    ok, _, _, msg = judge.compare(torch.full_like(ref, float(ref.float().mean())), ref)
    assert not ok and "constant" in msg
    assert judge.compare(ref.clone(), ref)[0]


def test_judge_flags_input_mutation_and_non_tensor_outputs():
    x = torch.randn(8)
    ref = [x.relu()]
    meta = [{"plain": True, "device": "cpu", "type": "Tensor"}]
    ok = judge.judge_check("v", 0, "file", ref, [x], meta, [x.relu()], [x.relu()], [x.clone()], "cpu")
    assert ok.check.passed and ok.hacks == []
    mutated = judge.judge_check("v", 0, "file", ref, [x], meta, [x.relu()], [x.relu()], [x.relu()], "cpu")
    assert mutated.hacks == ["input_mutation"]
    lazy = judge.judge_check(
        "v", 0, "file", ref, [x], [{"plain": False, "type": "LazyTensor"}], None, None, None, "cpu"
    )
    assert not lazy.check.passed and lazy.hacks == ["non_tensor_output"]
    second = judge.judge_check("v", 0, "file", ref, [x], meta, [x.relu()], [x], [x.clone()], "cpu")
    assert not second.check.passed and "second run" in second.check.message


def test_stale_output_only_when_reference_changed():
    a, b = torch.randn(4), torch.randn(4)
    assert judge.stale([a], [a.clone()], [a], [b])
    assert not judge.stale([a], [b], [a], [b])
    assert not judge.stale([a], [a.clone()], [a], [a.clone()])


def test_fallback_rules():
    """An allow-list: data movement is free, any other op in forward is PyTorch doing the work."""
    assert fallback_ops({"addmm": 1, "empty": 2}) == ["addmm"]
    assert fallback_ops({"empty_like": 1, "view": 3, "copy_": 2}) == []
    assert fallback_ops({"mul": 1}) == ["mul"]  # even a light epilogue
    for op in (
        "_addmm_activation",
        "_safe_softmax",
        "conv_tbc",
        "dist",
        "index_add",
        "_embedding_bag",
        "aminmax",
    ):
        assert fallback_ops({op: 1}) == [op]  # fused ops no list of heavy ops would name
    # compute at import / construction counts unless the reference's constructor does the same
    assert fallback_ops({}, {"sigmoid": 1, "uniform_": 2}, {"uniform_": 2}) == ["sigmoid"]
    assert fallback_ops({}, {"uniform_": 2, "empty": 1}, {}) == []  # initialising parameters is not compute


def _done(**kw):
    base = {"launches": {"k": 1}, "launch_configs": {}, "torch_ops": {}, "timing_ops": {}, "threads_started": 0, "scalar_reads": 0,
            "violations": [], "integrity": []}  # fmt: skip
    return {**base, **kw}


def test_runtime_hacks_from_hook_reports():
    names = lambda hacks: sorted(h for h, _ in hacks)  # noqa: E731
    assert names(judge.runtime_hacks(_done(launches={}), {}, "triton", {}, True, 2)) == [
        "kernel_not_launched"
    ]
    assert names(judge.runtime_hacks(_done(torch_ops={"mm": 1}), {}, "triton", {}, True, 2)) == [
        "torch_fallback"
    ]
    assert names(judge.runtime_hacks(_done(timing_ops={"mm": 1}), {}, "triton", {}, True, 2)) == [
        "torch_fallback"
    ]
    assert names(judge.runtime_hacks(_done(), {"exp": 1}, "triton", {"ref_init_ops": {}}, True, 2)) == [
        "torch_fallback"
    ]
    assert names(judge.runtime_hacks(_done(threads_started=1), {}, "triton", {}, True, 2)) == [
        "thread_started"
    ]
    assert names(judge.runtime_hacks(_done(scalar_reads=500), {}, "triton", {}, True, 2)) == [
        "python_compute"
    ]
    assert names(judge.runtime_hacks(_done(scalar_reads=20), {}, "triton", {}, True, 2)) == []
    assert names(judge.runtime_hacks(_done(violations=["x"]), {}, "triton", {}, True, 2)) == [
        "forbidden_access"
    ]
    assert names(judge.runtime_hacks(_done(integrity=["x"]), {}, "triton", {}, True, 2)) == [
        "recorder_tamper"
    ]
    assert (
        judge.runtime_hacks(_done(launches={}), {}, "triton", {}, False, 0) == []
    )  # never ran: nothing to say


def test_verdict_json_contract():
    v = Verdict(
        "mismatch",
        backend="triton",
        checks=[Check("scaled", 0, "file", False, 0.5, 1.0, "bad")],
        hacks=["b", "a", "a"],
        log_tail="x" * 10000,
    )
    d = v.to_dict()
    assert d["schema_version"] == 2 and d["hacks"] == ["a", "b"] and len(d["log_tail"]) == 4000
    assert Verdict.from_dict(d) == v
    assert set(d) >= {
        "status",
        "backend",
        "compiled",
        "executed",
        "correct",
        "checks",
        "hacks",
        "hack_details",
        "runtime_ms",
        "ref_runtime_ms",
        "speedup",
        "device",
        "isolation",
        "error",
        "log_tail",
    }
    with pytest.raises(ValueError, match="unknown verdict status"):
        Verdict("great")
