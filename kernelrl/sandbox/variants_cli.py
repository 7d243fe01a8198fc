"""`kernelrl variants`: the shape variants the sandbox would check for each problem of a directory.

Per problem: the variants (their size overrides, input shapes, elements against the budget) and the planner's
notes, as the reference process would answer a plan request; then a summary table per level. Planning runs
the problems' own code (on the meta device) in this process, like `kernelrl check` runs the user's files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kernelrl.sandbox.problem import Problem, ProblemError, load_problems
from kernelrl.sandbox.variants import measure, plan_request

DEFAULT_BUDGET = 1 << 14  # the Evaluator's default element_budget on CPU


def plan_problem(
    problem: Problem,
    *,
    device: str,
    budget: int | None,
    count: int = 2,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """One problem's plan as a JSON-able report: status `planned`, `unavailable` or `error`."""
    cuda = device == "cuda"

    def elements(source: str) -> int:
        return measure(source, cuda_available=cuda).elements

    start = time.perf_counter()
    try:
        reply = plan_request(problem.source, element_budget=budget, count=count, seed=seed, measure=elements)
        error = None
    except Exception as e:  # noqa: BLE001 - a problem the planner cannot handle is reported, not fatal
        reply, error = {"variants": [], "notes": []}, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    seconds = time.perf_counter() - start
    variants = []
    for v in reply["variants"]:
        try:
            shapes = [list(s) for s in measure(v["source"], cuda_available=cuda).shapes]
        except Exception:  # noqa: BLE001 - shapes are for display only
            shapes = None
        variants.append(
            {"name": v["name"], "overrides": v["overrides"], "elements": v["elements"], "inputs": shapes}
        )
    status = "error" if error else "unavailable" if reply.get("unavailable") else "planned"
    return {
        "problem": name or problem.name,
        "level": problem.level,
        "status": status,
        "budget": budget,
        "variants": variants,
        "notes": reply["notes"],
        "timeout_scale": reply.get("timeout_scale", 1.0),
        "error": error,
        "seconds": round(seconds, 4),
    }


def _over(report: dict[str, Any]) -> float:
    """How far the largest variant is over the budget (0 when it fits or there is no budget)."""
    budget = report["budget"]
    largest = max((v["elements"] or 0 for v in report["variants"]), default=0)
    return largest / budget if budget and largest > budget else 0.0


def summarize(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level (and `all`): problems, planned, unavailable, errors, with >= 2 variants, every variant
    within the budget, how far over the others are, and planning seconds per problem."""
    levels: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        levels.setdefault(r["level"] or "-", []).append(r)
    if len(levels) > 1:
        levels["all"] = reports
    rows = []
    for level, rs in levels.items():
        over = sorted(_over(r) for r in rs if _over(r))
        rows.append(
            {
                "level": level,
                "problems": len(rs),
                "planned": sum(r["status"] == "planned" for r in rs),
                "unavailable": sum(r["status"] == "unavailable" for r in rs),
                "errors": sum(r["status"] == "error" for r in rs),
                "two_variants": sum(len(r["variants"]) >= 2 for r in rs),
                "within_budget": sum(bool(r["variants"]) and not _over(r) for r in rs),
                "over_median": statistics.median(over) if over else None,
                "over_p90": over[min(len(over) - 1, int(0.9 * len(over)))] if over else None,
                "over_max": over[-1] if over else None,
                "seconds_mean": statistics.fmean(r["seconds"] for r in rs),
            }
        )
    return rows


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


def table(rows: list[dict[str, Any]], budget: int | None) -> str:
    """The summary as a Markdown table."""
    head = (
        "| level | problems | planned | unavailable | errors | >= 2 variants | every variant within "
        f"{'the budget of ' + str(budget) if budget else 'budget (no budget: GPU)'} | over budget: "
        "median / p90 / max | planning s/problem |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        over = f"{_x(r['over_median'])} / {_x(r['over_p90'])} / {_x(r['over_max'])}"
        lines.append(
            f"| {r['level']} | {r['problems']} | {r['planned']} | {r['unavailable']} | {r['errors']} | "
            f"{r['two_variants']} | {r['within_budget']} | {over} | {r['seconds_mean']:.3f} |"
        )
    return "\n".join(lines)


def describe(report: dict[str, Any]) -> str:
    """One problem, human-readable."""
    budget = report["budget"]
    head = f"{report['problem']}  [{report['status']}]" + (f"  budget {budget}" if budget else "  no budget")
    lines = [head + f"  planned in {report['seconds']:.2f} s"]
    for v in report["variants"]:
        fits = "" if not budget else ("  within budget" if v["elements"] <= budget else "  OVER budget")
        sizes = " ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "the file's sizes"
        lines.append(
            f"  {v['name']:<11} {v['elements']:>12,} elements{fits}  inputs {v['inputs']}  ({sizes})"
        )
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    lines += [f"  note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def cmd_variants(args: argparse.Namespace) -> int:
    try:
        problems = load_problems(Path(args.problems))
    except ProblemError as e:
        print(f"kernelrl: error: {e}", file=sys.stderr)
        return 2
    if not problems:
        print(f"kernelrl: error: no KernelBench problem files under {args.problems}", file=sys.stderr)
        return 2
    budget = (args.budget or DEFAULT_BUDGET) if args.device == "cpu" else None
    reports = []
    root = Path(args.problems)
    for i, problem in enumerate(problems):
        name = str(Path(problem.path).relative_to(root)) if problem.path else problem.name
        reports.append(
            plan_problem(
                problem, device=args.device, budget=budget, count=args.count, seed=args.seed, name=name
            )
        )
        if args.json:
            print(f"\rplanned {i + 1}/{len(problems)}", end="", file=sys.stderr, flush=True)
        else:
            print(describe(reports[-1]), flush=True)
    rows = summarize(reports)
    if args.json:
        print(file=sys.stderr)
        print(
            json.dumps(
                {"device": args.device, "budget": budget, "problems": reports, "summary": rows}, indent=1
            )
        )
    else:
        print("\n" + table(rows, budget))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "variants", help="show the shape variants the sandbox would check for each problem of a directory"
    )
    p.add_argument("--problems", required=True, help="directory of KernelBench-format problems (recursive)")
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="cpu: scale to the element budget (Triton interpreter); cuda: the file's sizes, no budget",
    )
    p.add_argument(
        "--budget", type=_positive, default=None, help=f"CPU element budget (default {DEFAULT_BUDGET})"
    )
    p.add_argument(
        "--count", type=_positive, default=2, help="variants per problem, the first included (default 2)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the perturbed variants (the sandbox's is secret)"
    )
    p.add_argument("--json", action="store_true", help="print every report and the summary as JSON")
    p.set_defaults(func=cmd_variants)
