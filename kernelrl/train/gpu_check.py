"""Every GPU path in one run, with a JSON report: what `scripts/gpu_check.sh` calls on a GPU machine.

Phases, in order; the first that fails stops the run (exit 1) and the report so far is on disk (it is
rewritten after every phase):

  env          torch sees CUDA; versions; the sandbox's isolation profile
  checks       every bundled problem's solution: once through `kernelrl check --device cuda --json` (the
               first problem) and `repeats` verdicts in all from one sandbox Evaluator: status, speedup, and
               the coefficient of variation of the timings over the repeats (goal < 1%)
  adversarial  the GPU-only attacks (tests/adversarial/candidates/gpu_*.py), each with the verdict it must get
  vllm         generation with the embedded model through vLLM (a subprocess: its GPU memory goes with it)
  grpo         two GRPO steps with vLLM colocated on the embedded model, rewards from the GPU sandbox
  eval         `kernelrl eval` of the GRPO checkpoint (vLLM) and of the bundled solutions: report with fast_p

    scripts/gpu_check.sh [--out outputs/gpu_check] [--repeats 5] [--skip vllm,grpo]
    python -m kernelrl.train.gpu_check --cpu-smoke [--out DIR]

`--cpu-smoke` runs the CPU-side parts on a machine without a GPU (two problems, the timing-phase attack on the
interpreter and the CUDA attacks' static screening, a completions-only eval; no vLLM, no GRPO), so the report
format and the driver are tested where CI runs. One `kernelrl check` start-up per problem would not fit the
8-minute budget, so the CLI is exercised once and the repeats share one Evaluator (the same code path).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
CANDIDATES = ROOT / "tests" / "adversarial" / "candidates"
PHASES = ("env", "checks", "adversarial", "vllm", "grpo", "eval")
CPU_SMOKE_SKIPS = ("vllm", "grpo")
SMOKE_PROBLEMS = ("relu", "softmax")
EVAL_PROBLEMS = ("relu", "softmax", "layer_norm", "matmul")  # GPU eval: one of each kind, to keep it short
CV_GOAL = 0.01
SCHEMA_VERSION = 1


class CheckFailed(Exception):
    """A GPU path is broken: the message says which and how; the run stops here."""


# ---------------------------------------------------------------- the report


class Report:
    """The JSON report, rewritten after every phase so a crash or a timeout leaves what was learnt."""

    def __init__(self, path: Path, device: str, argv: list[str]) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": argv,
            "device": device,
            "ok": None,
            "failed_phase": None,
            "phases": [],
            "seconds": 0.0,
        }
        self._t0 = time.monotonic()
        self.write()

    def write(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self._t0, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Times a phase and records it; `CheckFailed` (or any error) marks it failed and ends the run."""
        entry: dict[str, Any] = {"name": name, "ok": None, "seconds": None, "details": {}, "error": None}
        self.data["phases"].append(entry)
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            yield entry["details"]
            entry["ok"] = True
        except BaseException as e:
            entry["ok"] = False
            entry["error"] = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
            if not isinstance(e, CheckFailed):
                entry["traceback"] = traceback.format_exc(limit=8)[-4000:]
            self.data["ok"], self.data["failed_phase"] = False, name
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - t0, 1)
            self.write()
            state = {True: "ok", False: "FAILED", None: "?"}[entry["ok"]]
            print(f"gpu_check: {name} {state} ({entry['seconds']} s)", file=sys.stderr, flush=True)

    def skipped(self, name: str, why: str) -> None:
        self.data["phases"].append({"name": name, "ok": None, "skipped": why, "seconds": 0.0, "details": {}})
        self.write()


# ---------------------------------------------------------------- phases


def phase_env(device: str, out: Path, details: dict[str, Any]) -> None:
    """Versions and the device, probed in a subprocess: this process stays CUDA-free like any supervisor."""
    from kernelrl.sandbox import isolation

    details.update(_worker("env", out))
    details["isolation"] = isolation.choose_profile("auto")
    if device == "cuda" and not details["cuda_available"]:
        raise CheckFailed(
            f"torch {details['versions']['torch']} sees no CUDA device (a CPU build of torch, or no driver); "
            "install with a GPU present (scripts/install.sh picks the CUDA build when nvidia-smi works)"
        )


def phase_checks(device: str, problems: list[str], repeats: int, details: dict[str, Any]) -> None:
    """Each bundled solution `repeats` times: ok every time, timed on a GPU, with the spread of its timings."""
    from kernelrl.sandbox import Evaluator, bundled_problems

    bundled = bundled_problems()
    details.update(problems=[], repeats=repeats, cv_goal=CV_GOAL)
    first = problems[0]
    cli = _cli_check(device, first)
    details["cli"] = {"problem": first, "status": cli.get("status"), "speedup": cli.get("speedup")}
    with Evaluator(device=device) as ev:
        for name in problems:
            problem = bundled[name]
            verdicts = [cli] if name == first else []
            while len(verdicts) < repeats:
                verdicts.append(ev.evaluate(problem, problem.extras["solution"]).to_dict())
            row = _timing_row(name, verdicts)
            details["problems"].append(row)
            bad = [v for v in verdicts if v["status"] != "ok"]
            if bad:
                raise CheckFailed(
                    f"bundled {name}: solution judged {bad[0]['status']}: {bad[0].get('error')}"
                )
            if device == "cuda" and row["speedup"] is None:
                raise CheckFailed(f"bundled {name}: correct on the GPU but never timed (speedup null)")
    cvs = [p["cv_runtime"] for p in details["problems"] if p["cv_runtime"] is not None]
    details["cv_runtime_max"] = max(cvs) if cvs else None
    details["cv_runtime_median"] = statistics.median(cvs) if cvs else None
    details["cv_goal_met"] = None if not cvs else all(c < CV_GOAL for c in cvs)


def phase_adversarial(device: str, details: dict[str, Any]) -> None:
    """The GPU-only attacks get the verdicts they must get (on a CPU: what a CPU can and cannot see of them)."""
    from kernelrl.sandbox import Evaluator, bundled_problems
    from kernelrl.sandbox.candidate import extract_candidate
    from kernelrl.sandbox.capabilities import check_source
    from kernelrl.sandbox.static_checks import analyze

    if not CANDIDATES.is_dir():
        raise CheckFailed(f"no adversarial candidates at {CANDIDATES} (run from a checkout of kernelrl)")
    relu = bundled_problems()["relu"]
    details["attacks"] = {}
    with Evaluator(device=device) as ev:
        for name in ATTACKS:
            text = (CANDIDATES / f"{name}.py").read_text()
            code = extract_candidate(text).code or ""
            static = {"hacks": analyze(code).hacks, "refused": [str(v) for v in check_source(code)]}
            row: dict[str, Any] = {"static": static}
            details["attacks"][name] = row
            if static["hacks"] or static["refused"]:  # the runtime defence would never be reached
                raise CheckFailed(f"{name}: caught statically ({static}); the attack must reach the GPU run")
            if device == "cpu" and "cuda" in code and "load_inline" in code:
                row["verdict"] = None  # nvcc compile-only is tested elsewhere; only a GPU can run it
                continue
            v = ev.evaluate(relu, text)
            row["verdict"] = {
                k: v.to_dict()[k] for k in ("status", "hacks", "speedup", "runtime_ms", "error")
            }
            reason = ATTACKS[name](device, v, details["attacks"])
            row["ok"] = reason is None
            if reason:
                raise CheckFailed(f"{name}: {reason} (verdict {v.status} {v.hacks}, speedup {v.speedup})")


def _hack_names(v: Any) -> set[str]:
    return {re.split(r"[\s:(\[]", h, maxsplit=1)[0] for h in v.hacks}


def _expect_honest(device: str, v: Any, rows: dict[str, Any]) -> str | None:
    if device == "cuda" and (v.status != "ok" or v.speedup is None):
        return "the honest CUDA control must be ok and timed"
    return None


def _expect_timing_mismatch(device: str, v: Any, rows: dict[str, Any]) -> str | None:
    if device == "cpu":
        return None if v.status == "ok" else "on a CPU only the honest calls are seen: expected ok"
    if v.status != "hack_detected" or "timing_mismatch" not in _hack_names(v):
        return "less work once timing starts must be caught as timing_mismatch"
    return None


def _expect_timer_caught(device: str, v: Any, rows: dict[str, Any]) -> str | None:
    if v.status != "hack_detected" or not _hack_names(v) & {"timer_inconsistent", "faster_than_light"}:
        return "a patched timer must be caught (timer_inconsistent or faster_than_light)"
    return None


def _expect_no_gain(device: str, v: Any, rows: dict[str, Any]) -> str | None:
    honest = (rows.get("gpu_honest_cuda_relu", {}).get("verdict") or {}).get("speedup")
    if v.status == "ok" and (v.speedup is None or honest is None or v.speedup > 1.5 * honest):
        return f"work on a side stream must not buy speed (honest twin {honest})"
    return None


# candidate -> what its verdict must be (None = as expected, else the reason it is not); run in this order
ATTACKS: dict[str, Callable[[str, Any, dict[str, Any]], str | None]] = {
    "gpu_honest_cuda_relu": _expect_honest,
    "gpu_timing_phase": _expect_timing_mismatch,
    "gpu_patched_timer": _expect_timer_caught,
    "gpu_side_stream": _expect_no_gain,
}


def phase_vllm(out: Path, details: dict[str, Any]) -> None:
    details.update(_worker("vllm", out))
    if details.get("empty"):
        raise CheckFailed(f"vLLM returned {details['empty']} empty completions of {details['completions']}")


def phase_grpo(out: Path, details: dict[str, Any]) -> None:
    """Two GRPO steps, vLLM colocated, on a tiny RL split of bundled prompts; rewards logged for both."""
    from datasets import Dataset, DatasetDict

    from kernelrl.data_pipeline.prompts import build_prompt
    from kernelrl.sandbox import bundled_problems

    data = out / "grpo_data"
    rows = [
        {"prompt": build_prompt(p.source, one_shot=False), "problem": p.source}
        for p in bundled_problems().values()
    ]
    DatasetDict({"rl": Dataset.from_list(rows)}).save_to_disk(str(data))
    run_dir = out / "grpo"
    cmd = [
        sys.executable,
        "-m",
        "kernelrl.train.grpo",
        "--config",
        str(RECIPES / "smollm2-135m" / "grpo_vllm.yaml"),
    ]
    cmd += ["--dataset_name", str(data), "--output_dir", str(run_dir)]
    _run(cmd, out / "grpo.log", timeout=600)
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"))
    if not states:
        raise CheckFailed(
            f"GRPO wrote no checkpoint with a trainer state under {run_dir} (see {out / 'grpo.log'})"
        )
    history = json.loads(states[-1].read_text())["log_history"]
    steps = [h for h in history if "reward" in h]
    details["steps"] = [
        {k: h.get(k) for k in ("step", "reward", "reward_std", "step_time", "kernelrl/format")} for h in steps
    ]
    if len(steps) < 2 or any(h["reward"] is None or h["reward"] != h["reward"] for h in steps):
        raise CheckFailed(f"expected 2 GRPO steps with a logged reward, got {details['steps']}")
    if not (run_dir / "config.json").is_file():
        raise CheckFailed(f"GRPO saved no model at {run_dir}")


def phase_eval(
    device: str, out: Path, problems: list[str], model: str | None, details: dict[str, Any]
) -> None:
    """`kernelrl eval` of the bundled solutions (timed: fast_p is a number on a GPU) and of a model (vLLM)."""
    from kernelrl.sandbox import bundled_problems

    bundled = bundled_problems()
    answers = out / "solutions.jsonl"
    with answers.open("w") as f:
        for name in problems:
            text = f"```python\n{bundled[name].extras['solution']}```"
            f.write(json.dumps({"problem": name, "completion": text}) + "\n")
    eval_dir = out / "eval"
    cmd = [sys.executable, "-m", "kernelrl.cli", "eval", "--completions", str(answers)]
    cmd += ["--problems", "bundled:" + ",".join(problems), "--device", device, "--out", str(eval_dir)]
    cmd += ["--quiet", "--no-one-shot", "--max-new-tokens", "256", "--timeout", "120"]
    if model:
        cmd += ["--model", model]
    _run(cmd, out / "eval.log", timeout=600)
    summary = json.loads((eval_dir / "summary.json").read_text())
    if not (eval_dir / "report.md").is_file():
        raise CheckFailed(f"kernelrl eval wrote no report.md in {eval_dir}")
    details["report"] = str(eval_dir / "report.md")
    details["models"] = {}
    for label, m in summary["models"].items():
        o = m["overall"]
        details["models"][label] = {
            k: o.get(k) for k in ("correctness", "compile_rate", "fast_p", "geomean_speedup", "hack_rate")
        }
    sol = details["models"].get("solutions")
    if sol is None or sol["correctness"] != 1.0:
        raise CheckFailed(f"the bundled solutions must all be correct in the eval, got {sol}")
    timed = [v for v in sol["fast_p"].values() if v is not None]
    if device == "cuda" and len(timed) != len(sol["fast_p"]):
        raise CheckFailed(f"fast_p must be a number for timed GPU answers, got {sol['fast_p']}")
    if device == "cpu" and timed:
        raise CheckFailed(f"fast_p must be null where nothing was timed (CPU), got {sol['fast_p']}")
    if model and len(details["models"]) != 2:
        raise CheckFailed(
            f"expected the model and the solutions in the eval summary, got {list(details['models'])}"
        )


# ---------------------------------------------------------------- workers (subprocesses)


def worker_vllm(out: Path) -> dict[str, Any]:
    """vLLM generation with the embedded model, through the shared generation function."""
    from transformers import AutoTokenizer

    from kernelrl.data_pipeline.embedded_model import resolve_model
    from kernelrl.data_pipeline.generation import generate
    from kernelrl.data_pipeline.prompts import build_prompt
    from kernelrl.sandbox import bundled_problems

    problems = list(bundled_problems().values())[:4]
    prompts = [build_prompt(p.source, one_shot=False) for p in problems]
    t0 = time.monotonic()
    texts = generate("embedded", prompts, n=2, max_new_tokens=128, temperature=0.8, backend="vllm")
    seconds = time.monotonic() - t0
    tok = AutoTokenizer.from_pretrained(resolve_model("embedded"))
    flat = [t for group in texts for t in group]
    tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in flat)
    return {
        "completions": len(flat),
        "empty": sum(not t.strip() for t in flat),
        "tokens": tokens,
        "seconds_with_engine_start": round(seconds, 1),
        "sample": flat[0][:300],
    }


def worker_env(out: Path) -> dict[str, Any]:
    import torch

    details: dict[str, Any] = {
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("torch", "triton", "transformers", "trl", "vllm", "ray")},
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        details.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            nvidia_smi=_run_text(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"]
            ),
        )
    return details


WORKERS = {"env": worker_env, "vllm": worker_vllm}


def _worker(name: str, out: Path) -> dict[str, Any]:
    result = out / f"{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "kernelrl.train.gpu_check", "--worker", name, "--out", str(out)]
    _run(cmd, out / f"{name}.log", timeout=600)
    return json.loads(result.read_text())


# ---------------------------------------------------------------- helpers


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_text(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def _run(cmd: list[str], log: Path, timeout: float) -> None:
    """A subprocess whose output goes to `log`; failure quotes the log's tail."""
    with log.open("w") as f:
        try:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{' '.join(cmd[1:4])} ran past {timeout:.0f} s (log: {log})") from None
    if r.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise CheckFailed(f"{' '.join(cmd[1:4])} exited {r.returncode} (log: {log}):\n{tail}")


def _cli_check(device: str, name: str) -> dict[str, Any]:
    """The user-facing command on one bundled solution; its JSON verdict."""
    path = ROOT / "kernelrl" / "sandbox" / "bundled" / name / "solution.py"
    cmd = [sys.executable, "-m", "kernelrl.cli", "check", "--problem", f"bundled:{name}"]
    cmd += ["--candidate", str(path), "--device", device, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if r.returncode != 0:
        raise CheckFailed(f"kernelrl check exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise CheckFailed(f"kernelrl check --json printed no JSON: {r.stdout[-500:]!r}") from None


def _timing_row(name: str, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> list[float] | None:
        xs = [v.get(key) for v in verdicts]
        return None if any(x is None for x in xs) else [float(x) for x in xs]

    def cv(xs: list[float] | None) -> float | None:
        if not xs or len(xs) < 2 or statistics.fmean(xs) <= 0:
            return None
        return statistics.stdev(xs) / statistics.fmean(xs)

    runtime, ref, speedup = values("runtime_ms"), values("ref_runtime_ms"), values("speedup")
    return {
        "name": name,
        "statuses": [v["status"] for v in verdicts],
        "isolation": verdicts[0].get("isolation"),
        "speedup": statistics.median(speedup) if speedup else None,
        "speedups": speedup,
        "runtime_ms": runtime,
        "ref_runtime_ms": ref,
        "cv_runtime": cv(runtime),
        "cv_ref_runtime": cv(ref),
        "cv_speedup": cv(speedup),
        "cv_goal_met": None if cv(runtime) is None else cv(runtime) < CV_GOAL,
    }


# ---------------------------------------------------------------- entry point


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.cpu_smoke else "cuda"
    skip = set(args.skip) | (set(CPU_SMOKE_SKIPS) if args.cpu_smoke else set())
    problems = list(SMOKE_PROBLEMS) if args.cpu_smoke else _bundled_names()
    report = Report(out / "report.json", device, sys.argv)
    report.data["mode"] = "cpu-smoke" if args.cpu_smoke else "gpu"
    model = None
    try:
        for name in PHASES:
            if name in skip:
                report.skipped(
                    name, "--cpu-smoke" if name in CPU_SMOKE_SKIPS and args.cpu_smoke else "--skip"
                )
                continue
            with report.phase(name) as details:
                if name == "env":
                    phase_env(device, out, details)
                elif name == "checks":
                    phase_checks(device, problems, args.repeats, details)
                elif name == "adversarial":
                    phase_adversarial(device, details)
                elif name == "vllm":
                    phase_vllm(out, details)
                elif name == "grpo":
                    phase_grpo(out, details)
                    model = str(out / "grpo")
                elif name == "eval":
                    phase_eval(
                        device, out, problems if args.cpu_smoke else list(EVAL_PROBLEMS), model, details
                    )
    except Exception:  # noqa: BLE001 - recorded in the report by the phase; the exit code says it failed
        print(f"gpu_check: FAILED in {report.data['failed_phase']}; report: {report.path}", file=sys.stderr)
        return 1
    report.data["ok"] = True
    report.write()
    print(
        f"gpu_check: all phases passed in {report.data['seconds']} s; report: {report.path}", file=sys.stderr
    )
    return 0


def _bundled_names() -> list[str]:
    from kernelrl.sandbox import bundled_problems

    return list(bundled_problems())


def _phase_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase {unknown[0]!r}; phases: {', '.join(PHASES)}")
    return names


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/gpu_check", help="report.json and every phase's logs go here")
    p.add_argument("--repeats", type=_positive, default=5, help="verdicts per bundled problem (timing CV)")
    p.add_argument(
        "--skip", type=_phase_list, default=[], help=f"comma-separated phases from {', '.join(PHASES)}"
    )
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="no GPU: the CPU-side parts on two problems (no vLLM, no GRPO)",
    )
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:  # a phase's subprocess: write its result where the parent reads it
        out = Path(args.out)
        (out / f"{args.worker}.json").write_text(json.dumps(WORKERS[args.worker](out), default=str))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
