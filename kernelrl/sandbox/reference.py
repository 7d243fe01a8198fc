"""The trusted reference process: runs the problem's own PyTorch code, never candidate code.

It builds inputs from secret seeds, computes reference outputs, records which aten ops the reference uses
(so fallbacks can be recognised), counts FLOPs and bytes for the speed-of-light bound (with
`kernelrl.perf.features`, the one implementation the latency model uses too), and times the reference on
the GPU. It lives in its own process so that nothing a candidate does can touch the
reference's memory, RNG or allocator, and so the supervisor never runs problem code itself.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
import types
from typing import Any

import torch

from kernelrl.perf.features import problem_features, profile
from kernelrl.sandbox import timing, wire
from kernelrl.sandbox.frames import FrameReader, write_frame
from kernelrl.sandbox.ops import OpRecorder, all_pointwise

DISTRIBUTIONS = ("file", "shifted", "wide")
_modules: dict[str, types.ModuleType] = {}


def load_module(source: str, name: str = "problem") -> types.ModuleType:
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _modules:
        module = types.ModuleType(f"{name}_{key[:12]}")
        module.__file__ = f"<{name}>"
        sys.modules[module.__name__] = module  # dataclasses and pickling look their module up by name
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # trusted: the user's own problem
        for attr in ("Model", "get_inputs", "get_init_inputs"):
            if not hasattr(module, attr):
                raise ValueError(f"problem defines no {attr}")
        _modules[key] = module
    return _modules[key]


def transform(values: list[Any], distribution: str) -> list[Any]:
    """Vary floating inputs beyond the file's own distribution, so degenerate identities stop passing.

    `shifted` makes non-negative inputs (torch.rand) signed and moves signed ones off zero; `wide`
    multiplies magnitudes by 10 (overflow in naive exp/softmax, absorbed epsilons). Integer inputs
    (indices, class labels) are left alone.
    """
    out = []
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() and distribution != "file":
            nonneg = bool((v >= 0).all())
            if distribution == "shifted":
                v = (v - 0.5) * 2.0 if nonneg else v * 2.0 + 0.5
            elif distribution == "wide":
                v = v * 10.0
        out.append(v)
    return out


def _finite(values: list[Any]) -> bool:
    return all(
        bool(torch.isfinite(v).all()) for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()
    )


def _outputs(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def prepare(req: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """Inputs and reference outputs for one shape variant under several seeds (and fresh timing seeds).

    Payloads: the init inputs, then (inputs, outputs) per check seed, then (inputs, outputs) per timing seed.
    """
    module = load_module(req["source"])
    device = req["device"]
    init = list(module.get_init_inputs())
    torch.manual_seed(req["init_seed"])
    recorder = OpRecorder()
    recorder.phase = "init"
    with recorder:
        model = module.Model(*init).to(device)
    recorder.phase = None
    payloads = [wire.encode(init)]
    checks, ref_ops, feats = [], None, None
    for seed, distribution in zip(req["seeds"], req["distributions"], strict=True):
        inputs, outs, dist, note = _inputs_and_outputs(module, model, seed, distribution, device)
        if ref_ops is None:
            recorder.phase = "forward"
            with torch.no_grad(), recorder:
                model(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs])
            recorder.phase = None
            ref_ops = dict(recorder.counts["forward"])
            feats = _profile(model, inputs)
        checks.append({"seed": seed, "distribution": dist, "note": note})
        payloads += [wire.encode(inputs), wire.encode(outs)]
    header: dict[str, Any] = {
        "ok": True,
        "checks": checks,
        "ref_ops": ref_ops or {},
        "ref_init_ops": dict(recorder.counts["init"]),
        "pointwise": all_pointwise(ref_ops or {}, recorder.pointwise),
        "features": feats,
    }
    if req.get("time"):
        sets = []
        for seed in req["time"]["seeds"]:
            inputs, outs, _dist, _note = _inputs_and_outputs(module, model, seed, "file", device)
            payloads += [wire.encode(inputs), wire.encode(outs)]
            sets.append(inputs)
        header["timing_sets"] = len(sets)
        if device == "cuda":
            header["timing"], _ = timing.time_model(
                lambda args, _recorded: _outputs(model(*args)),
                sets,
                trials=req["time"]["trials"],
                warmup=req["time"]["warmup"],
                device=device,
            )
            header["device_name"] = torch.cuda.get_device_name()
    return header, payloads


def _inputs_and_outputs(
    module: types.ModuleType, model: Any, seed: int, distribution: str, device: str
) -> tuple[list[Any], list[Any], str, str | None]:
    """The inputs of one seed under `distribution` (the file's when that makes the reference non-finite)."""
    note = None
    for dist in (distribution, "file"):
        torch.manual_seed(seed)
        inputs = transform(list(module.get_inputs()), dist)
        inputs = [v.to(device) if isinstance(v, torch.Tensor) else v for v in inputs]
        with torch.no_grad():
            outs = _outputs(model(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]))
        if dist == "file" or _finite(outs) or not _finite(_outputs_file(module, model, seed, device)):
            break
        note = f"distribution {distribution!r} gives non-finite reference outputs; used the file's inputs"
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise TypeError("reference forward returned something other than tensors")
    return inputs, outs, dist, note


def _outputs_file(module: types.ModuleType, model: Any, seed: int, device: str) -> list[Any]:
    torch.manual_seed(seed)
    inputs = [v.to(device) if isinstance(v, torch.Tensor) else v for v in module.get_inputs()]
    with torch.no_grad():
        return _outputs(model(*inputs))


def _profile(model: Any, inputs: list[Any]) -> dict[str, Any] | None:
    try:
        return profile(model, [v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]).to_dict()
    except Exception:  # noqa: BLE001 - an op the profiler cannot follow just means no speed-of-light bound
        return None


def plan(req: dict[str, Any]) -> dict[str, Any]:
    from kernelrl.sandbox.variants import plan_request

    reply = plan_request(req["source"], element_budget=req["budget"], count=req["count"], seed=req["seed"])
    if req.get("device") == "cuda":  # what the GPU run budget is planned from: the file's shapes, on meta
        try:
            reply["features"] = problem_features(req["source"]).to_dict()
        except Exception:  # noqa: BLE001 - no features: the default budget
            reply["features"] = None
        reply["device_name"] = torch.cuda.get_device_name()
    return reply


def main() -> int:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # problem code may print; keep the frame channel clean
    torch.set_num_threads(int(os.environ.get("KERNELRL_REF_THREADS", "1")))
    reader = FrameReader()
    while chunk := os.read(0, 1 << 20):
        for req, _payload in reader.feed(chunk):
            try:
                if req["cmd"] == "prepare":
                    header, payloads = prepare(req)
                elif req["cmd"] == "plan":
                    header, payloads = plan(req), []
                else:
                    header, payloads = {"ok": False, "error": f"unknown command {req['cmd']!r}"}, []
            except Exception as e:  # noqa: BLE001 - a failing reference is reported, not fatal
                header = {
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=4),
                }
                payloads = []
            header["n_payloads"] = len(payloads)
            write_frame(out_fd, header)
            for p in payloads:
                write_frame(out_fd, {}, p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
