"""`kernelrl check`: score one candidate against one problem in the sandbox and print the verdict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernelrl.sandbox.problem import ProblemError, bundled_problems, load_problem
from kernelrl.sandbox.verdict import Verdict


def _fail(msg: str) -> int:
    print(f"kernelrl: error: {msg}", file=sys.stderr)
    return 2


def summary(v: Verdict) -> str:
    lines = [f"status     {v.status}" + (f"  ({', '.join(v.hacks)})" if v.hacks else "")]
    lines.append(f"backend    {v.backend}   compiled={v.compiled} executed={v.executed} correct={v.correct}")
    lines.append(f"device     {v.device}   isolation={v.isolation}")
    if v.speedup is not None:
        sol = f"  ({v.sol_fraction:.0%} of the speed of light)" if v.sol_fraction is not None else ""
        lines.append(
            f"speed      {v.runtime_ms:.4f} ms vs reference {v.ref_runtime_ms:.4f} ms  ->  {v.speedup:.2f}x{sol}"
        )
    else:
        lines.append("speed      not measured" + (" (CPU: Triton interpreter)" if v.device == "cpu" else ""))
    for c in v.checks:
        err = f"max abs {c.max_abs_error:.2e}" if c.max_abs_error is not None else ""
        lines.append(
            f"  check {c.variant:<10} seed {c.seed_index} {c.distribution:<8} {'pass' if c.passed else 'FAIL'}  {err}  {c.message or ''}".rstrip()
        )
    for d in v.hack_details:
        lines.append(f"hack       {d}")
    if v.error:
        lines.append(f"error      {v.error}")
    for n in v.notes:
        lines.append(f"note       {n}")
    if v.log_tail.strip() and v.status != "ok":
        lines.append("log tail:\n" + "\n".join("  " + ln for ln in v.log_tail.strip().splitlines()[-15:]))
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        if args.problem.startswith("bundled:"):
            name = args.problem.split(":", 1)[1]
            problems = bundled_problems()
            if name not in problems:
                return _fail(f"no bundled problem {name!r}; choose from {', '.join(problems)}")
            problem = problems[name]
        else:
            problem = load_problem(Path(args.problem))
    except ProblemError as e:
        return _fail(str(e))
    path = Path(args.candidate)
    if not path.is_file():
        return _fail(f"candidate file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        return _fail(f"cannot read candidate {path}: {e}")
    from kernelrl.sandbox.supervisor import Evaluator

    try:
        with Evaluator(
            device=args.device, isolation_profile=args.isolation, run_timeout_s=args.timeout
        ) as ev:
            verdict = ev.evaluate(problem, text)
    except ProblemError as e:
        return _fail(str(e))
    print(verdict.to_json(indent=2) if args.json else summary(verdict))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check", help="run one candidate against one problem in the sandbox and print the verdict"
    )
    check.add_argument("--problem", required=True, help="KernelBench-format problem file, or bundled:<name>")
    check.add_argument(
        "--candidate", required=True, help="a .py file defining ModelNew, or a completion with a fenced block"
    )
    check.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    check.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "process-only"])
    check.add_argument(
        "--timeout", type=float, default=60.0, help="run budget in seconds (compile has its own)"
    )
    check.add_argument("--json", action="store_true", help="print the verdict as the JSON contract")
    check.set_defaults(func=cmd_check)
