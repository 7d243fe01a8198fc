"""What the pipeline does with kernelrl.perf, tested on CPU (the GPU-only parts through their CPU-side logic):
per-problem run budgets, speed of light and sol_fraction in verdicts, the timing log, curation's
runtime window on a named GPU, and the sol_fraction column of evaluation reports."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace

import pytest

from kernelrl.data_pipeline.filters import FilterConfig, ProblemFilter
from kernelrl.perf import budget, timing_log
from kernelrl.perf.features import problem_features
from kernelrl.perf.predict import reference_ms
from kernelrl.perf.roofline import speed_of_light
from kernelrl.sandbox.problem import Problem, problem_id
from kernelrl.sandbox.runner import _grid, _launch_config
from kernelrl.sandbox.supervisor import Evaluator, timing_verdict
from kernelrl.sandbox.verdict import Verdict
from kernelrl.train.eval_metrics import Outcome, group_metrics
from kernelrl.train.eval_report import render_report

H100 = "NVIDIA H100 80GB HBM3"

TANH = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return torch.tanh(x) * 2.0

rows = {rows}
cols = {cols}

def get_inputs():
    return [torch.randn(rows, cols)]

def get_init_inputs():
    return []
"""


def _problem(rows: int, cols: int) -> Problem:
    src = TANH.format(rows=rows, cols=cols)
    return Problem(problem_id(src), f"tanh_{rows}x{cols}", src)


# ---------------------------------------------------------------- run budgets


def test_run_plan_follows_the_reference_time():
    default = budget.run_plan(None, trials=100, run_timeout_s=60.0)
    assert (default.trials, default.warmup, default.run_timeout_s, default.basis) == (
        100,
        10,
        60.0,
        "default",
    )
    fast, slow, huge = (budget.run_plan(ms) for ms in (0.01, 200.0, 1e5))
    assert fast.trials == 100 and fast.warmup == 10 and fast.run_timeout_s < 60.0  # a hang costs less
    assert (
        slow.trials == 20 < fast.trials and slow.warmup < 10 and slow.run_timeout_s > 60.0
    )  # room to finish
    assert huge.run_timeout_s == budget.MAX_RUN_TIMEOUT_S and huge.trials == budget.MIN_TRIALS
    plans = [budget.run_plan(ms) for ms in (0.001, 0.1, 1, 10, 100, 1000)]
    assert all(a.run_timeout_s <= b.run_timeout_s for a, b in zip(plans, plans[1:], strict=False))
    assert budget.run_plan(50.0, trials=10).trials == 10  # never more than the caller asked for


def test_evaluator_plans_gpu_budgets_from_the_predicted_reference_time(tmp_path):
    """The GPU branch of Evaluator.run_plan, driven with what the reference process would report on a GPU."""
    ev = Evaluator(device="cpu", timing_log_path=tmp_path / "t.jsonl")
    small, big = _problem(64, 64), _problem(8192, 8192)
    try:
        assert ev.run_plan(small).basis == "default"  # on CPU: the defaults, nothing predicted
        ev.device = "cuda"
        ev._run_plans.clear()
        for p in (small, big):
            ev._plans[p.id] = {"features": problem_features(p.source).to_dict(), "device_name": H100}
        ps, pb = ev.run_plan(small), ev.run_plan(big)
        assert ps.basis == pb.basis == "predicted" and 0 < ps.reference_ms < pb.reference_ms
        assert ps.run_timeout_s < pb.run_timeout_s and ps.run_timeout_s < 60.0
        expected = budget.run_plan(reference_ms(big.source, problem_features(big.source), H100)[0])
        assert (pb.trials, pb.run_timeout_s) == (expected.trials, expected.run_timeout_s)
        ev._plans["bad"] = {"features": {"flops": "lots"}, "device_name": H100}
        bad = Problem("bad", "bad", small.source)
        assert ev.run_plan(bad).basis in ("default", "predicted")  # garbage never fails a verdict
        ev._plans["gpu?"] = {"features": None, "device_name": "Some Future GPU"}
        assert ev.run_plan(Problem("gpu?", "x", small.source)).basis == "default"
    finally:
        ev.close()


# ---------------------------------------------------------------- speed of light in verdicts


def _ref_header(source: str, ref_ms: float, device: str = H100) -> dict:
    return {
        "features": problem_features(source).to_dict(),
        "device_name": device,
        "timing": {"median_ms": ref_ms},
    }


def _claim(median: float) -> dict:
    """A child's timing report: 100 trials whose sum agrees with their median."""
    return {"median_ms": median, "sum_ms": 100 * median, "trials": 100, "min_launches": 1}


def _wall(median: float) -> float:
    return 100 * median + 50.0  # the supervisor's wall clock: the trials plus refill/flush/sync overhead


def test_timing_verdict_sol_fraction_and_faster_than_light():
    src = TANH.format(rows=8192, cols=8192)  # 256 MiB in, 256 MiB out: memory-bound
    header = _ref_header(src, ref_ms=0.5)
    sol = speed_of_light(0, 1 << 28, 1 << 28, 0, H100)
    hacks, rt, ref, speedup, frac = timing_verdict(_claim(0.25), header, _wall(0.25))
    assert hacks == [] and rt == 0.25 and ref == 0.5 and speedup == 2.0
    assert frac == pytest.approx(sol.sol_ms / 0.25) and 0 < frac < 1
    hacks, *_ = timing_verdict(_claim(sol.floor_ms * 0.5), header, _wall(sol.floor_ms * 0.5))
    assert hacks == ["faster_than_light"]  # half the physical floor: impossible, flagged
    # A GPU the table does not know: no SOL, so no fraction (never 0); only beyond-any-GPU times are flagged
    # (512 MiB in 0.05 ms is 11 TB/s: fine for an unknown GPU; in 0.01 ms, 54 TB/s: not on any GPU).
    unknown = _ref_header(src, 0.5, "GPU X")
    hacks, rt, _, _, frac = timing_verdict(_claim(0.05), unknown, _wall(0.05))
    assert hacks == [] and rt == 0.05 and frac is None
    assert timing_verdict(_claim(0.01), unknown, _wall(0.01))[0] == ["faster_than_light"]
    # Features the reference could not count: the floor falls back to generous peaks.
    hacks, *_, frac = timing_verdict(_claim(0.01), {"timing": {"median_ms": 1.0}}, _wall(0.01))
    assert hacks == [] and frac is None


def test_cpu_verdicts_carry_no_sol_fraction(evaluator, problems):
    v = evaluator.evaluate(problems["relu"], problems["relu"].extras["solution"])
    assert v.status == "ok" and v.sol_fraction is None and v.speedup is None
    assert "sol_fraction" in v.to_dict() and Verdict.from_dict(v.to_dict()) == v


# ---------------------------------------------------------------- the timing log


def test_timing_record_from_a_gpu_run(tmp_path):
    log = tmp_path / "timings.jsonl"
    ev = Evaluator(device="cpu", timing_log_path=log)
    p = _problem(4096, 4096)
    header = _ref_header(p.source, 1.25) | {
        "timing": {"median_ms": 1.25, "mean_ms": 1.3, "min_ms": 1.2, "trials": 100}
    }
    evil = {f"k{i}": {"BLOCK": 1024, "num_warps": 4, "x" * 500: 1, "obj": {"nested": 1}} for i in range(40)}
    evil["k0"]["grid"] = [64, 1, 1]
    run = {
        "frames": [
            ({"event": "timing", "median_ms": 0.5, "mean_ms": 0.52, "min_ms": 0.49, "trials": 100}, b"", 0.0),
            ({"event": "done", "launch_configs": evil}, b"", 0.0),
        ]
    }
    cand = SimpleNamespace(backend="triton", sha256="ab" * 32)
    v = Verdict("ok", backend="triton", speedup=2.5, sol_fraction=0.4, device="cuda")
    ev._log_timing(p, cand, [({}, header, [])], run, v, budget.run_plan(1.25))
    ev.close()
    [rec] = timing_log.read(log)
    assert rec["problem_id"] == p.id and rec["device_name"] == H100 and rec["features"]["n_ops"] == 2
    assert rec["reference"]["median_ms"] == 1.25 and rec["candidate"]["median_ms"] == 0.5
    assert rec["speedup"] == 2.5 and rec["sol_fraction"] == 0.4 and rec["run_plan"]["basis"] == "predicted"
    configs = rec["launch_configs"]
    assert len(configs) == timing_log.MAX_KERNELS and configs["k0"]["BLOCK"] == 1024
    assert configs["k0"]["grid"] == [64, 1, 1] and all(len(k) <= timing_log.MAX_STR for k in configs["k0"])
    assert "obj" not in configs["k0"]  # only plain values from the candidate's process


def test_runner_keeps_only_plain_bounded_launch_values():
    cfg = _launch_config({"BLOCK": 128, "num_warps": 8, "warmup": False, "name": "y" * 300, "t": object()})
    assert cfg == {"BLOCK": 128, "num_warps": 8, "name": "y" * 64}
    assert _grid((4, 2)) == [4, 2] and _grid((4, "a")) is None and _grid(lambda m: 1) is None


def _append_many(path: str, worker: int) -> None:
    for i in range(50):
        timing_log.append(path, {"worker": worker, "i": i, "pad": "z" * 5000})


def test_timing_log_appends_whole_lines_from_many_processes(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    recs = timing_log.read(path)
    assert len(recs) == 200 == len(path.read_text().splitlines())
    assert {(r["worker"], r["i"]) for r in recs} == {(w, i) for w in range(4) for i in range(50)}
    monkeypatch.setenv("KERNELRL_TIMING_LOG", "")
    assert timing_log.default_path() is None
    monkeypatch.setenv("KERNELRL_TIMING_LOG", str(path))
    assert timing_log.default_path() == path


# ---------------------------------------------------------------- curation: runtime window on a named GPU


def test_runtime_window_on_a_named_gpu_without_running_it():
    with pytest.raises(ValueError, match="unknown device 'H900'"):
        FilterConfig(target_gpu="H900")
    tiny, big = _problem(32, 32), _problem(16384, 16384)
    config = FilterConfig(workers=1, target_gpu="H100-SXM", runtime_ms=(0.5, 1e5))
    with ProblemFilter(config) as pf:
        results = {r.name: r for r in pf.run([tiny, big])}
    t, b = results[tiny.name], results[big.name]
    assert t.reason == "runtime_out_of_window" and "eager time on H100-SXM" in t.detail
    assert b.kept and b.stats["target_basis"] == "predicted" and b.stats["target_ms"] > 0.5
    assert t.stats["target_ms"] < b.stats["target_ms"]
    # The probe's own CPU time no longer decides: the window is about the target GPU.
    assert "median forward" not in t.detail


# ---------------------------------------------------------------- evaluation reports


def _row(pid: str, status: str, speedup: float | None, frac: float | None, device: str = "cuda") -> dict:
    v = Verdict(
        status, backend="triton", correct=status == "ok", speedup=speedup, sol_fraction=frac, device=device
    )
    return {"problem_id": pid, "sample": 0, "verdict": v.to_dict(), "reward": 1.0}


def test_sol_fraction_in_eval_metrics_and_report():
    rows = [_row("a", "ok", 2.0, 0.2), _row("b", "ok", 1.0, 0.8), _row("c", "mismatch", None, None)]
    outs = [Outcome.from_row(r) for r in rows]
    m = group_metrics(outs, ["a", "b", "c"], [1])
    assert m.geomean_sol_fraction == pytest.approx(0.4) and m.geomean_speedup == pytest.approx(2**0.5)
    cpu = group_metrics([Outcome.from_row(_row("a", "ok", None, None, "cpu"))], ["a"], [1])
    assert cpu.geomean_sol_fraction is None  # never 0 when nothing was timed
    from dataclasses import asdict

    summary = {
        "config": {"seed": 0},
        "problems": {"spec": "x", "n": 3, "by_category": {}, "by_level": {}, "list": []},
        "samples_per_problem": None,
        "pass_k": [1],
        "fast_p_thresholds": [0.0, 1.0, 1.5, 2.0],
        "devices": {"cuda": 3},
        "isolation": {"bwrap": 3},
        "timed": True,
        "created": "now",
        "models": {"m": {"overall": asdict(m)}},
    }
    report = render_report(summary, [], {})
    assert "| model | correct timed samples | geomean speedup | SOL fraction (geomean) |" in report
    assert "| `m` | 2 | 1.41× | 40.0% |" in report


def test_check_summary_shows_the_speed_of_light_fraction():
    from kernelrl.sandbox.cli import summary

    timed = Verdict("ok", runtime_ms=0.5, ref_runtime_ms=1.0, speedup=2.0, sol_fraction=0.42, device="cuda")
    assert "2.00x  (42% of the speed of light)" in summary(timed)
    assert "speed of light" not in summary(Verdict("ok", device="cpu"))
