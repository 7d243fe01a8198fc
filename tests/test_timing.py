"""Timing that proves itself, tested through its CPU-side logic (no GPU here; the loop runs with perf_counter).

What a GPU verdict rests on: fresh inputs for timing refilled into the same buffers every trial, a secret
subset of trials whose outputs are checked, every trial launching a kernel, and the supervisor's wall clock
bounding what the child claims. The supervisor's judgement of a timing frame is tested on the real
`Evaluator._judge_timing` with transcripts built here.
"""

from __future__ import annotations

import random

import torch

from kernelrl.sandbox import timing, wire
from kernelrl.sandbox.protocol import Transcript
from kernelrl.sandbox.reference import prepare
from kernelrl.sandbox.supervisor import Evaluator

SETS = [[torch.randn(64)] for _ in range(3)]


def relu_call(args, recorded):
    return [torch.relu(args[0])]


def test_time_model_rotates_fresh_data_through_one_buffer_and_returns_the_captured_outputs():
    seen_ptrs, seen_first = set(), []

    def call(args, recorded):
        seen_ptrs.add(args[0].data_ptr())
        seen_first.append(float(args[0][0]))
        return relu_call(args, recorded)

    result, captured = timing.time_model(call, SETS, trials=12, warmup=2, capture={4, 9}, device="cpu")
    assert len(seen_ptrs) == 1  # one set of buffers...
    assert len(set(seen_first[2:5])) == 3  # ...holding different data on consecutive trials
    assert [i for i, _ in captured] == [4, 9]
    for i, outs in captured:
        assert torch.equal(outs[0], torch.relu(SETS[i % 3][0]))
    assert result["trials"] == 10 and result["median_ms"] > 0  # captured trials are not in the statistics


def test_a_cache_answers_wrong_when_the_buffer_is_refilled():
    cache = {}

    def caching(args, recorded):
        key = args[0].data_ptr()
        if key not in cache:
            cache[key] = [torch.relu(args[0]).clone()]
        return cache[key]

    _, captured = timing.time_model(caching, SETS, trials=9, warmup=1, capture={5}, device="cpu")
    (i, outs) = captured[0]
    assert not torch.equal(outs[0], torch.relu(SETS[i % 3][0]))


def test_trials_without_a_launch_are_seen():
    launches = {"n": 0}

    def lazy(args, recorded):
        if launches["n"] == 0:
            launches["n"] += 1
        return relu_call(args, recorded)

    result, _ = timing.time_model(
        lazy, SETS, trials=5, warmup=0, device="cpu", launches=lambda: launches["n"]
    )
    assert result["min_launches"] == 0
    assert "kernel_not_launched" in timing.timing_hacks(
        {**result, "median_ms": 1.0, "sum_ms": 4.0}, 10.0, None, 0, "triton"
    )


def honest(median=2.0, trials=95):
    return {"median_ms": median, "mean_ms": median, "min_ms": median, "sum_ms": median * trials, "trials": trials,
            "child_wall_ms": 0.0, "min_launches": 1}  # fmt: skip


def test_timing_hacks_bounds():
    wall = 95 * 2.0 + 100 * 0.5  # the trials plus refill/flush/sync overhead
    assert timing.timing_hacks(honest(), wall, 0.01, 1 << 20, "triton", n_captured=5) == []
    # claims far less than the wall clock shows, once a generous overhead is taken off: the hack that pays
    assert "timer_inconsistent" in timing.timing_hacks(honest(median=0.2), 2000.0, None, 1 << 20, "triton", 5)
    # more time than elapsed, or a median its own trials do not add up to
    assert "timer_inconsistent" in timing.timing_hacks(honest(), 50.0, None, 0, "triton")
    assert "timer_inconsistent" in timing.timing_hacks({**honest(), "sum_ms": 10.0}, wall, None, 0, "triton")
    assert timing.timing_hacks({**honest(), "median_ms": 0.0}, wall, None, 0, "triton") == [
        "timer_inconsistent"
    ]
    assert "faster_than_light" in timing.timing_hacks(
        honest(), wall, floor_ms=5.0, input_bytes=0, backend="triton"
    )


def test_capture_is_random_and_never_the_first_trial():
    picks = {tuple(timing.choose_capture(100, 5, random.Random(s))) for s in range(20)}
    assert len(picks) > 15 and all(0 not in p and len(p) == 5 for p in picks)


RELU = """import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(4, 32)]


def get_init_inputs():
    return []
"""


def test_reference_prepares_timing_inputs_distinct_from_the_checks():
    req = {"source": RELU, "seeds": [1, 2], "distributions": ["file", "shifted"], "init_seed": 7, "device": "cpu",
           "time": {"trials": 10, "warmup": 1, "seeds": [11, 12, 13]}}  # fmt: skip
    header, payloads = prepare(req)
    assert header["timing_sets"] == 3 and header["pointwise"] is True
    checks = [wire.decode(payloads[1 + 2 * i])[0] for i in range(2)]
    timed = [wire.decode(payloads[5 + 2 * k])[0] for k in range(3)]
    outs = [wire.decode(payloads[6 + 2 * k])[0] for k in range(3)]
    assert all(not torch.equal(t, c) for t in timed for c in checks)
    assert all(torch.equal(o, torch.relu(t)) for o, t in zip(outs, timed, strict=True))


def transcript(result, captured_outs, capture, wall_ms):
    t = Transcript()
    t.frames["timing"] = {**result, "captured": capture, "n_out": len(captured_outs)}
    t.payloads["timing"] = wire.encode(captured_outs)
    t.stamps.update(timing_start=0.0, timing=wall_ms / 1e3)
    return t


def test_supervisor_checks_the_captured_timed_outputs():
    ev = Evaluator(device="cuda")  # nothing starts until it evaluates; only the decision is used here
    sets = [torch.randn(64) for _ in range(3)]
    job = {"timing": {"capture": [3, 7]}, "timing_outputs": [wire.encode([torch.relu(s)]) for s in sets]}
    ref = {"timing": {"median_ms": 4.0}, "features": None, "device_name": "NVIDIA H100 80GB HBM3"}
    wall = 95 * 2.0 + 100 * 0.5
    good = [torch.relu(sets[0]), torch.relu(sets[1])]
    hacks, ms, ref_ms, speedup, _ = ev._judge_timing(
        transcript(honest(), good, [3, 7], wall), ref, job, "triton", True
    )
    assert hacks == [] and ms == 2.0 and ref_ms == 4.0 and speedup == 2.0
    lazy = [torch.relu(sets[0]), torch.zeros(64)]  # did less work once timing started
    hacks, *_ = ev._judge_timing(transcript(honest(), lazy, [3, 7], wall), ref, job, "triton", True)
    assert [h for h, _ in hacks] == ["timing_mismatch"]
    hacks, *_ = ev._judge_timing(transcript(honest(), good, [1, 2], wall), ref, job, "triton", True)
    assert "timer_inconsistent" in [h for h, _ in hacks]  # the child chose its own trials to be checked


def test_the_timing_answers_never_reach_the_child():
    ev = Evaluator(device="cuda")
    inputs, outputs = wire.encode([torch.randn(8)]), wire.encode([torch.randn(8)])
    header = {"checks": [{"seed": 1, "distribution": "file"}], "timing_sets": 2}
    payloads = [wire.encode([]), inputs, outputs, b"T0in", b"T0out", b"T1in", b"T1out"]
    var = {"name": "file", "overrides": {}, "source": RELU}

    class Cand:
        code, backend = "x = 1", "triton"

    job, frames, _ = ev._job(Cand(), [(var, header, payloads)])
    assert job["timing"]["inputs_frames"] and all(
        frames[i] in (b"T0in", b"T1in") for i in job["timing"]["inputs_frames"]
    )
    assert b"T0out" not in frames and b"T1out" not in frames and job["timing_outputs"] == [b"T0out", b"T1out"]
    assert 0 not in job["timing"]["capture"] and len(job["key"]) == 64
