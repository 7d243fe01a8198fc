"""The naive baseline's per-candidate check: one fresh Python process per candidate, no sandbox.

This is what most KernelBench-style pipelines do: start Python, import torch, exec the problem and the
candidate in this very process, compare outputs, print a verdict. The benchmark driver runs it once per
candidate with `subprocess.run(..., timeout=...)` under TRITON_INTERPRET=1; a timeout is the driver's verdict.

It does the same checking work as one sandbox verdict: for every shape-variant source, `len(seeds)` input
sets, each fed twice to the candidate on cloned inputs and compared with the reference output.

    python bench/naive_check.py CANDIDATE.py VARIANT.py [VARIANT.py ...] [--seeds 1 2 3]
    python bench/naive_check.py --probe     # import only: the start-up cost the driver adds to the timeout

Prints one JSON line: {"status": ok|mismatch|compile_error|runtime_error, "error": ..., "forward_s": ...}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
import types
from typing import Any

import torch
import triton  # noqa: F401 - every Triton candidate needs it; paid here as in any naive harness
import triton.language  # noqa: F401


def load(path: str, name: str) -> types.ModuleType:
    """Import a file as a module (Triton's @jit needs real source files, so no bare exec of a string)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def close(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """fp32 allclose at 1e-4 with atol scaled by the reference's RMS, as the sandbox's judge does."""
    if out.shape != ref.shape or out.dtype != ref.dtype:
        return False
    if not ref.is_floating_point():
        return torch.equal(out, ref)
    scale = max(1.0, float(ref.double().pow(2).mean().sqrt())) if ref.numel() else 1.0
    return torch.allclose(out, ref, atol=1e-4 * scale, rtol=1e-4, equal_nan=True)


def as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def clone(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def check(candidate: str, variants: list[str], seeds: list[int]) -> dict[str, Any]:
    torch.set_num_threads(1)
    forward_s = 0.0
    try:
        cand = load(candidate, "candidate")
    except Exception as e:  # noqa: BLE001 - a candidate that does not load is a finding
        return {"status": "compile_error", "error": f"{type(e).__name__}: {e}", "forward_s": 0.0}
    for vi, path in enumerate(variants):
        problem = load(path, f"problem_{vi}")
        init = list(problem.get_init_inputs())
        torch.manual_seed(seeds[0] ^ 0x5EED)
        model = problem.Model(*init)
        try:
            torch.manual_seed(seeds[0] ^ 0x5EED)
            new = cand.ModelNew(*init)
        except Exception as e:  # noqa: BLE001
            return {"status": "compile_error", "error": f"{type(e).__name__}: {e}", "forward_s": forward_s}
        for seed in seeds:
            torch.manual_seed(seed)
            inputs = list(problem.get_inputs())
            with torch.no_grad():
                refs = as_list(model(*clone(inputs)))
                for _ in range(2):
                    t0 = time.perf_counter()
                    try:
                        outs = as_list(new(*clone(inputs)))
                    except Exception as e:  # noqa: BLE001
                        tb = traceback.format_exc(limit=3)
                        return {
                            "status": "runtime_error",
                            "error": f"{type(e).__name__}: {e}",
                            "traceback": tb,
                            "forward_s": forward_s,
                        }
                    forward_s += time.perf_counter() - t0
                    if len(outs) != len(refs) or not all(
                        isinstance(o, torch.Tensor) and close(o, r) for o, r in zip(outs, refs, strict=False)
                    ):
                        return {
                            "status": "mismatch",
                            "error": f"variant {vi} seed {seed}: outputs differ",
                            "forward_s": forward_s,
                        }
    return {"status": "ok", "error": None, "forward_s": forward_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("candidate", nargs="?")
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--probe", action="store_true", help="import torch and triton, then exit")
    args = ap.parse_args()
    if args.probe:
        print(json.dumps({"status": "probe"}))
        return 0
    if not args.candidate or not args.variants:
        ap.error("need a candidate and at least one variant source")
    print(json.dumps(check(args.candidate, args.variants, args.seeds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
