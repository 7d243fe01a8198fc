"""Shape variants of every KernelBench v0.1 problem (levels 1-3), on CPU (element budget) and for a GPU.

Runs what `kernelrl variants` runs over the problems in `$KERNELBENCH_DIR` (default: the shared data folder
next to the checkout, `../shared/data/kernelbench/problems/v0.1`), prints its summary tables and the
planning time, and compares with the previous planner as the baseline, loaded from git history
(`--baseline-commit`) and run in the same process on a sample of the same problems (every
`--baseline-every`-th; it takes minutes on a recurrent one, so each has a `--baseline-timeout`).

    .venv/bin/python bench/variants_plan.py [--baseline-commit b550925] [--baseline-every 10] [--json out.json]

Honesty figures on CPU (does a scaled problem still exercise the same code paths?): how full the budget is
(program instances), whether some variant has a changed size that is not a multiple of 32 (masks), how
many sizes collapsed to 1 (none may), and how many plans fit under the issue's first definition of the
budget (inputs + outputs only; ours also counts weights, which the interpreter pays for).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kernelrl.sandbox.problem import Problem, bundled_problems, load_problems
from kernelrl.sandbox.variants import apply_overrides, find_slots, measure
from kernelrl.sandbox.variants_cli import DEFAULT_BUDGET, plan_problem, summarize, table

REPO = Path(__file__).resolve().parents[1]
LEVELS = ("level1", "level2", "level3")


def kernelbench_root() -> Path | None:
    env = os.environ.get("KERNELBENCH_DIR")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared/data/kernelbench/problems/v0.1" for p in (REPO.parent, REPO.parent.parent)]
    return next((p for p in candidates if (p / "level1").is_dir()), None)


def honesty(reports: list[dict[str, Any]], problems: dict[str, Problem], budget: int) -> dict[str, Any]:
    planned = [r for r in reports if r["variants"]]
    fitting = [r for r in planned if all(v["elements"] <= budget for v in r["variants"])]
    fill = [r["variants"][0]["elements"] / budget for r in fitting if r["variants"][0]["name"] == "scaled"]
    masks = collapsed = io_fit = 0
    for r in planned:
        changed = [val for v in r["variants"] for val in v["overrides"].values()]
        masks += any(val % 32 for val in changed)
        slots = find_slots(problems[r["problem"]].source)
        collapsed += any(val < 2 and slots[k] > 1 for v in r["variants"] for k, val in v["overrides"].items())
        source = problems[r["problem"]].source
        parts = [measure(apply_overrides(source, v["overrides"])) for v in r["variants"]]
        io_fit += all(m.inputs + m.outputs <= budget for m in parts)
    return {
        "planned": len(planned),
        "fill_median": statistics.median(fill) if fill else None,
        "fill_p10": sorted(fill)[len(fill) // 10] if fill else None,
        "masks": masks,
        "collapsed_to_1": collapsed,
        "fit_inputs_outputs_only": io_fit,
    }


def load_baseline(commit: str) -> types.ModuleType | None:
    """The planner as it was at `commit` (kernelrl/sandbox/variants.py, self-contained), or None."""
    try:
        code = subprocess.run(
            ["git", "show", f"{commit}:kernelrl/sandbox/variants.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"baseline: cannot read the planner at {commit}: {e}", file=sys.stderr)
        return None
    module = types.ModuleType("baseline_variants")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, f"<variants.py@{commit}>", "exec"), module.__dict__)
    return module


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def baseline_compare(
    old: types.ModuleType, problems: list[tuple[str, Problem]], timeout: int
) -> dict[str, Any]:
    """The old and the new planner on the same problems, CPU budget, in this process."""
    from kernelrl.sandbox.variants import plan_variants

    rows = []
    signal.signal(signal.SIGALRM, _alarm)
    for name, p in tqdm(problems, desc="baseline vs new (cpu)", file=sys.stderr):
        row: dict[str, Any] = {"problem": name}
        for label, plan, count_io in (
            ("old", old.plan_variants, old.measure_elements),
            ("new", plan_variants, None),
        ):
            start = time.perf_counter()
            signal.alarm(timeout)
            try:
                variants, _ = plan(p.source, element_budget=DEFAULT_BUDGET, count=2, seed=0)
                sizes = [count_io(v.source) if count_io else v.elements for v in variants]
                row[label] = {"variants": len(variants), "fits": all(s <= DEFAULT_BUDGET for s in sizes)}
            except _Timeout:
                row[label] = {"variants": 0, "fits": False, "timeout": True}
            except Exception as e:  # noqa: BLE001 - a planning error is a result
                row[label] = {"variants": 0, "fits": False, "error": f"{type(e).__name__}: {e}"[:200]}
            finally:
                signal.alarm(0)
            row[label]["seconds"] = time.perf_counter() - start
        rows.append(row)
    out: dict[str, Any] = {"problems": len(rows), "rows": rows}
    for label in ("old", "new"):
        out[label] = {
            "seconds_total": sum(r[label]["seconds"] for r in rows),
            "two_variants": sum(r[label]["variants"] >= 2 for r in rows),
            "fits": sum(r[label]["fits"] for r in rows),
            "timeouts": sum(bool(r[label].get("timeout")) for r in rows),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-commit", default="b550925", help="git commit of the baseline planner")
    ap.add_argument("--baseline-every", type=int, default=10, help="baseline on every n-th problem (0: none)")
    ap.add_argument("--baseline-timeout", type=int, default=120, help="seconds per baseline problem")
    ap.add_argument("--json", default=None, help="write every report and summary here")
    args = ap.parse_args(argv)
    root = kernelbench_root()
    if root is None:
        print("KernelBench v0.1 problems not found (set KERNELBENCH_DIR): nothing to plan")
        return 0
    problems: dict[str, Problem] = {}
    for level in LEVELS:
        for p in load_problems(root / level):
            problems[str(Path(p.path).relative_to(root))] = p
    load_avg = os.getloadavg()
    start = time.perf_counter()
    plan_problem(bundled_problems()["relu"], device="cpu", budget=DEFAULT_BUDGET)
    warmup = time.perf_counter() - start  # torch's meta-device decompositions load on first use
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "root": str(root),
        "problems": len(problems),
        "warmup_seconds": warmup,
        "load_average_before": load_avg,
    }
    for device, budget in (("cpu", DEFAULT_BUDGET), ("cuda", None)):
        reports = []
        for name, p in tqdm(problems.items(), desc=f"planning ({device})", file=sys.stderr):
            reports.append(plan_problem(p, device=device, budget=budget, name=name))
        rows = summarize(reports)
        total = sum(r["seconds"] for r in reports)
        results[device] = {"summary": rows, "seconds_total": total, "reports": reports}
        label = f"budget {budget} elements (inputs + weights + outputs)" if budget else "GPU: no budget"
        print(f"\n## {device}: {label}\n\n{table(rows, budget)}\n")
        print(f"planning: {total:.1f} s for {len(reports)} problems = {total / len(reports):.3f} s/problem")
        for r in reports:
            if r["status"] != "planned":
                print(f"  {r['status']:<11} {r['problem']}: {(r['error'] or r['notes'][-1])[:160]}")
        if budget:
            h = honesty(reports, problems, budget)
            results[device]["honesty"] = h
            print(
                f"honesty: scaled variant fills the budget median {h['fill_median']:.2f} (p10 {h['fill_p10']:.2f}); "
                f"some size not a multiple of 32 in {h['masks']}/{h['planned']}; sizes collapsed to 1: "
                f"{h['collapsed_to_1']}; fits with inputs + outputs only: {h['fit_inputs_outputs_only']}/{h['planned']}"
            )
    print(f"\nstart-up: first plan in a process {warmup:.2f} s (included in neither total)")
    if args.baseline_every > 0:
        old = load_baseline(args.baseline_commit)
        if old is not None:
            sample = list(problems.items())[:: args.baseline_every]
            cmp = baseline_compare(old, sample, args.baseline_timeout)
            results["baseline"] = {"commit": args.baseline_commit, **cmp}
            o, n = cmp["old"], cmp["new"]
            print(
                f"\nbaseline ({args.baseline_commit}) vs new on {cmp['problems']} problems (every "
                f"{args.baseline_every}th), CPU budget {DEFAULT_BUDGET}:\n"
                f"  planning   {o['seconds_total']:.1f} s vs {n['seconds_total']:.1f} s = "
                f"{o['seconds_total'] / max(n['seconds_total'], 1e-9):.1f}x faster"
                f" (baseline timeouts at {args.baseline_timeout} s: {o['timeouts']})\n"
                f"  >= 2 variants {o['two_variants']} vs {n['two_variants']}; every variant within the budget "
                f"{o['fits']} (inputs + outputs) vs {n['fits']} (inputs + weights + outputs)"
            )
    results["load_average_after"] = os.getloadavg()
    print(f"load average before {load_avg[0]:.1f}, after {results['load_average_after'][0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
