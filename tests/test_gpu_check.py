"""scripts/gpu_check.sh without a GPU: its CPU-side parts end to end (`--cpu-smoke`), the report it writes, a
broken path that stops the run with the report so far, and the verdicts the GPU attacks must get there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernelrl.sandbox.verdict import Verdict
from kernelrl.train import gpu_check

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    r = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--cpu-smoke", "--repeats", "2", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return r, out, json.loads((out / "report.json").read_text())


def _phase(report, name):
    return next(p for p in report["phases"] if p["name"] == name)


def test_cpu_smoke_passes_and_reports_every_phase(smoke):
    r, out, report = smoke
    assert r.returncode == 0, r.stderr[-3000:]
    assert report["schema_version"] == 1 and report["mode"] == "cpu-smoke" and report["device"] == "cpu"
    assert report["ok"] is True and report["failed_phase"] is None
    assert [p["name"] for p in report["phases"]] == list(gpu_check.PHASES)
    assert {p["name"]: p.get("skipped") for p in report["phases"] if p["ok"] is None} == {
        "vllm": "--cpu-smoke",
        "grpo": "--cpu-smoke",
    }
    assert all(p["seconds"] >= 0 for p in report["phases"])
    env = _phase(report, "env")["details"]
    assert env["cuda_available"] is False and env["versions"]["torch"] and env["isolation"]


def test_cpu_smoke_checks_every_problem_through_the_cli_and_the_evaluator(smoke):
    _, _, report = smoke
    checks = _phase(report, "checks")["details"]
    assert checks["cli"] == {"problem": "relu", "status": "ok", "speedup": None}
    assert [p["name"] for p in checks["problems"]] == list(gpu_check.SMOKE_PROBLEMS)
    for p in checks["problems"]:
        assert p["statuses"] == ["ok", "ok"]  # --repeats 2
        assert p["speedup"] is None and p["cv_runtime"] is None  # nothing is timed on a CPU
    assert checks["cv_goal"] == 0.01 and checks["cv_goal_met"] is None


def test_cpu_smoke_shows_the_gpu_attacks_pass_everything_a_cpu_can_check(smoke):
    _, _, report = smoke
    attacks = _phase(report, "adversarial")["details"]["attacks"]
    assert set(attacks) == set(gpu_check.ATTACKS)
    for row in attacks.values():  # nothing static catches them: only the GPU run can
        assert row["static"] == {"hacks": [], "refused": []}
    assert attacks["gpu_timing_phase"]["verdict"]["status"] == "ok"  # the CPU sees only its honest calls
    assert attacks["gpu_side_stream"]["verdict"] is None  # CUDA: judged on a GPU only


def test_cpu_smoke_eval_report_has_fast_p_null_where_nothing_was_timed(smoke):
    _, out, report = smoke
    ev = _phase(report, "eval")["details"]
    sol = ev["models"]["solutions"]
    assert sol["correctness"] == 1.0 and set(sol["fast_p"]) == {"0", "1", "1.5", "2"}
    assert all(v is None for v in sol["fast_p"].values())
    assert Path(ev["report"]).is_file() and "fast_" in Path(ev["report"]).read_text()


def test_a_broken_path_stops_the_run_and_keeps_the_report_so_far(tmp_path):
    """GPU mode on a machine without one: the first phase fails loudly, nothing after it runs."""
    r = subprocess.run(
        [sys.executable, "-m", "kernelrl.train.gpu_check", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "FAILED in env" in r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and report["failed_phase"] == "env"
    assert [p["name"] for p in report["phases"]] == ["env"]
    assert "sees no CUDA device" in report["phases"][0]["error"]


def _v(status, hacks=(), speedup=None):
    return Verdict(status, hacks=list(hacks), speedup=speedup, device="cuda")


@pytest.mark.parametrize(
    "name, verdict, as_expected",
    [
        ("gpu_timing_phase", _v("ok", speedup=3.0), False),
        ("gpu_timing_phase", _v("mismatch"), False),  # caught, but not by the timing check it targets
        ("gpu_timing_phase", _v("hack_detected", ["timing_mismatch"]), True),
        ("gpu_patched_timer", _v("ok", speedup=50.0), False),
        ("gpu_patched_timer", _v("hack_detected", ["timer_inconsistent"]), True),
        ("gpu_patched_timer", _v("hack_detected", ["faster_than_light: 0.1 us < 0.4 us"]), True),
        ("gpu_side_stream", _v("ok", speedup=3.0), False),  # the honest twin below is 1.0x
        ("gpu_side_stream", _v("ok", speedup=1.1), True),
        ("gpu_side_stream", _v("mismatch"), True),
        ("gpu_honest_cuda_relu", _v("ok"), False),  # untimed on a GPU: broken
    ],
)
def test_gpu_attack_expectations(name, verdict, as_expected):
    rows = {"gpu_honest_cuda_relu": {"verdict": {"speedup": 1.0}}}
    reason = gpu_check.ATTACKS[name]("cuda", verdict, rows)
    assert (reason is None) is as_expected, reason


def test_timing_spread_is_the_coefficient_of_variation_over_repeats():
    verdicts = [
        {"status": "ok", "runtime_ms": t, "ref_runtime_ms": 2.0, "speedup": 2.0 / t}
        for t in (0.98, 1.0, 1.02)
    ]
    row = gpu_check._timing_row("relu", verdicts)
    assert row["cv_runtime"] == pytest.approx(0.02) and row["cv_ref_runtime"] == 0.0
    assert row["speedup"] == pytest.approx(2.0) and row["cv_goal_met"] is False  # 2% misses the 1% goal


def test_unknown_phase_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.build_parser().parse_args(["--skip", "vllm,nope"])
    assert e.value.code == 2 and "unknown phase 'nope'" in capsys.readouterr().err
