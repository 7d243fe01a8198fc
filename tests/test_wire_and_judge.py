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
    ref = {"addmm": 1, "relu": 1}
    assert fallback_ops({"addmm": 1, "empty": 2}, ref) == ["addmm"]  # a heavy op in PyTorch
    assert fallback_ops({"empty_like": 1, "view": 3}, ref) == []  # data movement only
    assert fallback_ops({"add": 1}, {"add": 1}) == ["add"]  # the whole (elementwise) reference re-run
    assert fallback_ops({"mul": 1}, {"add": 1, "mul": 1}) == []  # part of an epilogue: allowed


def test_runtime_hacks_from_hook_reports():
    assert judge.runtime_hacks({"launches": {}, "torch_ops": {}}, "triton", {}, True) == [
        "kernel_not_launched"
    ]
    assert judge.runtime_hacks({"launches": {"k": 2}, "torch_ops": {"mm": 1}}, "triton", {"mm": 1}, True) == [
        "torch_fallback"
    ]
    assert judge.runtime_hacks({"launches": {"k": 1}, "threads_started": 1}, "triton", {}, True) == [
        "thread_started"
    ]
    assert judge.runtime_hacks({"launches": {}}, "triton", {}, False) == []  # never ran: nothing to say


def test_verdict_json_contract():
    v = Verdict(
        "mismatch",
        backend="triton",
        checks=[Check("scaled", 0, "file", False, 0.5, 1.0, "bad")],
        hacks=["b", "a", "a"],
        log_tail="x" * 10000,
    )
    d = v.to_dict()
    assert d["schema_version"] == 1 and d["hacks"] == ["a", "b"] and len(d["log_tail"]) == 4000
    assert Verdict.from_dict(d) == v
    assert set(d) >= {
        "status",
        "backend",
        "compiled",
        "executed",
        "correct",
        "checks",
        "hacks",
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
