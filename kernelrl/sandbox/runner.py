"""The candidate's side of the protocol: runs inside the sandboxed child, forked from the zygote.

Everything here shares a process with hostile code, so nothing it reports is trusted: it only ships raw
outputs, the inputs as they were left, and what its hooks observed. The supervisor decides the verdict.
Hooks are installed, and the functions the protocol needs are bound, before the candidate is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import traceback
from collections import Counter
from typing import Any

import torch

from kernelrl.sandbox import timing, wire
from kernelrl.sandbox.frames import read_all_frames, write_frame
from kernelrl.sandbox.ops import OpRecorder, is_plain_tensor

CUDA_FATAL = (
    "illegal memory access",
    "unspecified launch failure",
    "device-side assert",
    "misaligned address",
)


class NotExecuted(Exception):
    """Raised by the compile-only load_inline: a CUDA source compiled, but there is no GPU to run it."""


def classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text:
        return "oom"
    if any(s in text for s in CUDA_FATAL):
        return "cuda_fatal"
    mod = type(exc).__module__ or ""
    if "CompilationError" in type(exc).__name__ or mod.startswith("triton.compiler"):
        return "compile"
    return "exception"


class Hooks:
    """Counts kernel launches and thread starts, and pauses the op recorder while a kernel runs."""

    def __init__(self, recorder: OpRecorder) -> None:
        self.recorder = recorder
        self.launches: Counter[str] = Counter()
        self.configs: dict[str, dict[str, Any]] = {}  # last launch configuration per kernel (timing log)
        self.threads = 0

    def install(self, cuda_compile_only: bool) -> None:
        import triton.runtime.jit as jit

        classes: list[type] = [jit.JITFunction]
        try:
            from triton.runtime.interpreter import InterpretedFunction

            classes.append(InterpretedFunction)
        except ImportError:
            pass
        for cls in classes:
            cls.run = self._counting(
                cls.run, lambda fn: getattr(getattr(fn, "fn", None), "__name__", "kernel")
            )
        import _thread

        # Every Python route to a new thread ends in one of these; threading keeps its own references.
        for module, name in (
            (_thread, "start_new_thread"),
            (_thread, "start_joinable_thread"),
            (threading, "_start_new_thread"),
            (threading, "_start_joinable_thread"),
        ):
            real = getattr(module, name, None)
            if real is not None:
                setattr(module, name, self._counting_thread(real))
        self.tasks_at_start = 0
        self._wrap_load_inline(cuda_compile_only)

    def _counting_thread(self, real: Any) -> Any:
        def start(*args: Any, **kwargs: Any) -> Any:
            self.threads += 1
            return real(*args, **kwargs)

        return start

    def _counting(self, run: Any, name_of: Any) -> Any:
        hooks = self

        def run_counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            config: dict[str, Any] = {}
            if not kwargs.get("warmup", False):
                hooks.launches[name_of(fn)] += 1
                config = _launch_config(kwargs)
                if len(hooks.configs) < 32 or name_of(fn) in hooks.configs:
                    hooks.configs[name_of(fn)] = config
            was, hooks.recorder.active = hooks.recorder.active, False
            grid = kwargs.get("grid")
            if isinstance(grid, tuple):
                config["grid"] = _grid(grid)
            if callable(grid):  # the grid function is candidate code: what it runs in PyTorch still counts

                def recorded_grid(meta: Any) -> Any:
                    hooks.recorder.active = was
                    try:
                        out = grid(meta)
                        config["grid"] = _grid(out)
                        return out
                    finally:
                        hooks.recorder.active = False

                kwargs["grid"] = recorded_grid
            try:
                return run(fn, *args, **kwargs)
            finally:
                hooks.recorder.active = was

        return run_counted

    def _wrap_load_inline(self, compile_only: bool) -> None:
        """Count calls into CUDA extensions; without a GPU, compile the sources with nvcc and stop there."""
        import torch.utils.cpp_extension as ext

        real = ext.load_inline
        hooks = self

        class CountingModule:
            def __init__(self, mod: Any) -> None:
                self._mod = mod

            def __getattr__(self, name: str) -> Any:
                attr = getattr(self._mod, name)
                if not callable(attr):
                    return attr

                def call(*a: Any, **k: Any) -> Any:
                    hooks.launches[f"cuda:{name}"] += 1
                    return attr(
                        *a, **k
                    )  # still recorded: torch::matmul inside the C++ wrapper is a fallback too

                return call

        def load_inline(*args: Any, **kwargs: Any) -> Any:
            if compile_only:
                compile_cuda_sources(*args, **kwargs)
                raise NotExecuted("CUDA sources compiled with nvcc; no GPU here to run them")
            return CountingModule(real(*args, **kwargs))

        ext.load_inline = load_inline


def _launch_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Plain scalars of a launch (num_warps, num_stages, BLOCK_SIZE...), bounded: only for the timing log."""
    return {
        k[:64]: v[:64] if isinstance(v, str) else v
        for k, v in list(kwargs.items())[:32]
        if isinstance(k, str) and type(v) in (int, float, bool, str) and k != "warmup"
    }


def _grid(grid: Any) -> list[int] | None:
    if isinstance(grid, tuple) and len(grid) <= 3 and all(type(x) is int for x in grid):
        return list(grid)
    return None


def _task_count() -> int:
    """OS threads of this process, which also sees threads started below Python."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def compile_cuda_sources(
    name: str = "ext", cpp_sources: Any = None, cuda_sources: Any = None, **kw: Any
) -> None:
    """nvcc -c every CUDA source against torch's headers: real compile errors without a GPU or a link step."""
    import subprocess

    from torch.utils.cpp_extension import include_paths

    sources = [cuda_sources] if isinstance(cuda_sources, str) else list(cuda_sources or [])
    flags = [f"-I{p}" for p in include_paths()]
    flags += [
        f"-I{os.path.join(sys.base_prefix, 'include', f'python{sys.version_info[0]}.{sys.version_info[1]}')}"
    ]
    flags += list(kw.get("extra_cuda_cflags") or [])
    work = os.environ.get("TORCH_EXTENSIONS_DIR", ".")
    for i, src in enumerate(sources):
        path = os.path.join(work, f"{name}_{i}.cu")
        with open(path, "w") as f:
            f.write("#include <torch/extension.h>\n" + src)
        cmd = ["nvcc", "-c", "-std=c++17", "-arch=sm_80", "-o", path + ".o", path, *flags]
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise CudaCompileError(r.stderr[-3000:] or r.stdout[-3000:])


class CudaCompileError(Exception):
    """nvcc rejected the candidate's CUDA source."""


def warm_up(interpreter: bool) -> None:
    """Pay one-time lazy imports (dispatch-mode machinery, the interpreter) in the fork server, not per child.

    Touches only tiny CPU tensors and never CUDA, so forking afterwards stays safe.
    """
    import torch.utils.cpp_extension  # noqa: F401 - the load_inline hook needs it in every child

    recorder = OpRecorder()
    recorder.active = True
    with torch.no_grad(), recorder:
        torch.ones(4) + 1
    if interpreter:
        import triton
        import triton.language as tl

        @triton.jit
        def _copy(src, dst, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)

        x = torch.ones(8)
        _copy[(1,)](x, torch.empty_like(x), 8, BLOCK=8)


def _import_candidate(code: str) -> Any:
    path = os.path.abspath("candidate.py")
    with open(path, "w") as f:
        f.write(code)
    spec = importlib.util.spec_from_file_location("candidate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "ModelNew", None), type):
        raise TypeError("the candidate module defines no class ModelNew")
    return module


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _poison(device: str, nbytes: int) -> None:
    """Fill soon-to-be-recycled memory with NaN so an output that was never written cannot look right."""
    n = max(nbytes // 4, 1024)
    buf = torch.full((n,), float("nan"), device=device)
    del buf


def _to_device(values: list[Any], device: str) -> list[Any]:
    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]


def _clone(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


class Reporter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, header: dict[str, Any], values: list[Any] | None = None) -> None:
        write_frame(self.fd, header, wire.encode(values) if values is not None else b"")


def main(in_fd: int, out_fd: int, seccomp: bool) -> int:
    frames = read_all_frames(in_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, in_fd)  # tools the candidate starts (nvcc, gcc) expect a valid stdin
    os.close(devnull)
    job, payloads = frames[0][0], [wire.decode(p) for _h, p in frames[1:]]
    rep = Reporter(out_fd)
    device = job["device"]
    torch.set_num_threads(int(job.get("threads", 1)))
    recorder = OpRecorder()
    hooks = Hooks(recorder)
    hooks.install(cuda_compile_only=job.get("cuda_compile_only", False))
    # Bound before the candidate runs, so later monkey-patching cannot reach the protocol.
    plain, is_tensor, encode = is_plain_tensor, torch.is_tensor, wire.encode
    rep.send({"event": "started", "seccomp": seccomp, "uid": os.getuid()})

    def call(model: Any, args: list[Any]) -> Any:
        """One forward on NaN-poisoned memory, with the op recorder watching."""
        _poison(device, 1 << 20)
        recorder.active = True
        try:
            with torch.no_grad(), recorder:
                return model(*args)
        finally:
            recorder.active = False

    phase = "compile"
    try:
        module = _import_candidate(job["code"])
        models: dict[int, Any] = {}
        for vi, var in enumerate(job["variants"]):
            torch.manual_seed(var["init_seed"])
            models[vi] = module.ModelNew(*payloads[var["init_frame"]]).to(device)
        rep.send({"event": "compiled"})
        phase = "run"
        hooks.tasks_at_start = _task_count()
        prev_args: dict[int, list[Any]] = {}
        for ci, chk in enumerate(job["checks"]):
            vi = chk["variant"]
            model = models[vi]
            fresh = _to_device(payloads[chk["inputs_frame"]], device)
            reused = False
            prev = prev_args.get(vi)
            if prev is not None and _same_layout(prev, fresh):
                for p, n in zip(prev, fresh, strict=True):  # same buffers, new data: catches pointer caches
                    if isinstance(p, torch.Tensor):
                        p.copy_(n)
                args, reused = prev, True
            else:
                args = _clone(fresh)
            outs1 = _as_list(call(model, args))
            meta = [
                {
                    "type": type(o).__name__,
                    "plain": plain(o),
                    "device": str(o.device) if is_tensor(o) else None,
                }
                for o in outs1
            ]
            if not all(m["plain"] for m in meta):
                rep.send({"event": "check", "index": ci, "meta": meta, "reused": reused})
                continue
            inputs_after = [a for a in args if isinstance(a, torch.Tensor)]
            snapshot = encode(outs1 + inputs_after)
            prev_args[vi] = args
            outs2 = [o for o in _as_list(call(model, _clone(fresh))) if plain(o)]
            header = {
                "event": "check",
                "index": ci,
                "meta": meta,
                "reused": reused,
                "n_out": len(outs1),
                "n_in": len(inputs_after),
            }
            write_frame(out_fd, header, snapshot + encode(outs2))
        if job.get("timing"):
            t = job["timing"]
            model = models[t["variant"]]
            sets = [_to_device(payloads[f], device) for f in t["inputs_frames"]]
            rep.send({"event": "timing_start"})
            result = timing.time_model(model, sets, trials=t["trials"], warmup=t["warmup"])
            rep.send({"event": "timing", **result})
    except NotExecuted as e:
        rep.send({"event": "not_executed", "message": str(e)})
    except BaseException as e:  # noqa: BLE001 - every failure is a finding, reported as data
        recorder.active = False
        kind = "compile" if isinstance(e, CudaCompileError) else classify(e)
        if phase == "compile" and kind == "exception":
            kind = "compile"
        tb = traceback.format_exc(limit=6)
        rep.send(
            {
                "event": "error",
                "phase": phase,
                "kind": kind,
                "type": type(e).__name__,
                "message": str(e)[:2000],
                "traceback": tb[-3000:],
            }
        )
    # OS threads born during the checks; on a GPU the driver starts its own, so only Python's count there.
    extra_tasks = (
        max(_task_count() - hooks.tasks_at_start, 0) if device == "cpu" and hooks.tasks_at_start else 0
    )
    rep.send(
        {
            "event": "done",
            "launches": dict(hooks.launches),
            "launch_configs": hooks.configs,
            "torch_ops": dict(recorder.counts),
            "threads_started": hooks.threads + max(threading.active_count() - 1, 0) + extra_tasks,
        }
    )
    sys.stdout.flush()
    return 0


def _same_layout(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if isinstance(x, torch.Tensor) and (
            x.shape != y.shape or x.dtype != y.dtype or not x.is_contiguous()
        ):
            return False
    return True
