"""Problem filters (robust-kbench style): drop problems a wrong kernel could pass, before any teacher sees them.

A problem is rejected when its reference fails or times out, gives non-finite outputs, is non-deterministic
(the same inputs twice differ), when its outputs are near zero or near constant (a kernel returning zeros or
the mean would pass the checker's tolerances), insensitive to the inputs (two input draws give the same
output) or to the initialisation (two init seeds, when the parameters differ), equal to an input (ReLU on
`torch.rand`), or when its runtime is outside a window: the probe's own time, or with `target_gpu` the
problem's eager time on that GPU as `kernelrl.perf` expects it (the shipped measurement of a KernelBench
file, else the latency model's prediction from the features the worker counted), without running it
there. Degeneracy is judged with the sandbox's own tolerances (`kernelrl.sandbox.judge.compare`), so
"passes the checker" means exactly that.

The reference is user-provided PyTorch (trusted, not candidate code), but it still runs in a worker
subprocess with a timeout and (on CPU) a memory limit, never in the curation process: one problem's hang or
crash costs that problem, not the run. Shapes come from `kernelrl.sandbox.variants` (scaled to an element budget on
CPU), the same way the sandbox plans its checks.
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PKG_PARENT = str(Path(__file__).resolve().parents[2])

# Checked in this order; a problem's `reason` is the first that applies, `reasons` lists them all.
REASONS = (
    "reference_failed",
    "reference_timeout",
    "non_finite_output",
    "nondeterministic",
    "near_zero_output",
    "constant_output",
    "input_insensitive",
    "init_insensitive",
    "identity_output",
    "runtime_out_of_window",
)


class FilterConfig(BaseModel):
    """How problems are probed. `skip` names reasons that are recorded but do not reject."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    device: str = "cpu"  # cpu | cuda | auto
    workers: int = Field(default=2, ge=1)
    element_budget: int | None = 1 << 14  # None: the file's own shapes (the GPU default)
    timeout_s: float = Field(default=60.0, gt=0)  # per problem, worker start-up excluded
    memory_mb: int = Field(default=8192, ge=256)  # CPU only: never set RLIMIT_AS where CUDA initialises
    runtime_ms: tuple[float, float] = (0.0, 30_000.0)  # [min, max] median forward time on the probed shapes
    target_gpu: str | None = None  # judge runtime_ms on this GPU's expected time (kernelrl perf devices)
    trials: int = Field(default=3, ge=1)
    skip: list[str] = Field(default_factory=list)

    def model_post_init(self, _: Any) -> None:
        unknown = sorted(set(self.skip) - set(REASONS))
        if unknown:
            raise ValueError(f"skip: unknown reason {', '.join(unknown)}; choose from {', '.join(REASONS)}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        lo, hi = self.runtime_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"runtime_ms must be [min, max] with 0 <= min <= max, got {[lo, hi]}")
        if self.target_gpu is not None:
            from kernelrl.perf.devices import get_device

            get_device(self.target_gpu)  # an unknown GPU is a config error that lists the known ones


@dataclass
class FilterResult:
    id: str
    name: str
    reason: str | None  # None: kept
    reasons: list[str] = field(default_factory=list)
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- worker side


def _probe(source: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run the reference a few ways and report which degeneracies it shows (in the worker process)."""
    import torch

    from kernelrl.sandbox.judge import compare
    from kernelrl.sandbox.reference import load_module
    from kernelrl.sandbox.variants import plan_variants

    device = opts["device"]
    stats: dict[str, Any] = {}
    try:
        variants, _ = plan_variants(source, element_budget=opts["element_budget"], count=1, seed=0)
        stats["variant"] = variants[0].name
        module = load_module(variants[0].source)
        init = list(module.get_init_inputs())

        def build(seed: int) -> Any:
            torch.manual_seed(seed)
            return module.Model(*init).to(device)

        def draw(seed: int) -> list[Any]:
            torch.manual_seed(seed)
            return [v.to(device) if isinstance(v, torch.Tensor) else v for v in module.get_inputs()]

        def run(model: Any, inputs: list[Any]) -> list[Any]:
            with torch.no_grad():  # no reseeding between calls: RNG use in forward shows as non-determinism
                out = model(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs])
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
                raise TypeError("forward returned something other than a tensor or a tuple of tensors")
            return outs

        model = build(1)
        x1, x2 = draw(11), draw(22)
        y1 = run(model, x1)
        y1_again = run(model, x1)
        y2 = run(model, x2)
        model_b = build(2)
        params_differ = any(
            a.is_floating_point() and a.shape == b.shape and not torch.equal(a, b)
            for a, b in zip(model.state_dict().values(), model_b.state_dict().values(), strict=False)
        )
        y1_b = run(model_b, x1) if params_differ else None
        times = []
        for _ in range(opts["trials"] + 1):  # the first call warms up
            start = time.perf_counter()
            run(model, x1)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    except Exception as e:  # noqa: BLE001 - a failing reference is a rejection, with its message
        return {"reasons": ["reference_failed"], "detail": f"{type(e).__name__}: {e}"[:500], "stats": stats}

    def same(a: list[Any], b: list[Any]) -> bool:
        return len(a) == len(b) and all(compare(o, r)[0] for o, r in zip(a, b, strict=True))

    floats = [y for y in y1 if y.is_floating_point()]
    reasons, detail = [], []
    if not all(bool(torch.isfinite(y).all()) for y in floats):
        reasons.append("non_finite_output")
    if not same(y1_again, y1):
        reasons.append("nondeterministic")
        detail.append("the same inputs twice gave different outputs")
    if floats and len(floats) == len(y1) and all(_below_atol(y) for y in y1):
        reasons.append("near_zero_output")
        detail.append("every output value is below the dtype's absolute tolerance")
    many = [y for y in y1 if y.numel() > 1]  # a scalar (a loss) is constant by nature: input check covers it
    if many and len(many) == len(y1) and all(_near_constant(y, compare) for y in y1):
        reasons.append("constant_output")
        detail.append("a constant output passes the tolerances")
    if same(y2, y1):
        reasons.append("input_insensitive")
        detail.append("two input draws gave the same output")
    if y1_b is not None and same(y1_b, y1):
        reasons.append("init_insensitive")
        detail.append("two initialisation seeds gave the same output")
    tensors = [x for x in x1 if isinstance(x, torch.Tensor)]
    if all(any(x.shape == y.shape and x.dtype == y.dtype and compare(x, y)[0] for x in tensors) for y in y1):
        reasons.append("identity_output")
        detail.append("the output equals an input")
    median = sorted(times[1:])[len(times[1:]) // 2]
    lo, hi = opts["runtime_ms"]
    if opts.get("features"):  # the window is judged on the target GPU by the parent (kernelrl.perf)
        from kernelrl.perf.features import problem_features

        try:
            stats["features"] = problem_features(source).to_dict()  # the file's own shapes, on meta
        except Exception as e:  # noqa: BLE001 - no features: the parent says the time is unknown
            stats["features_error"] = f"{type(e).__name__}: {e}"[:300]
    elif not lo <= median <= hi:
        reasons.append("runtime_out_of_window")
        detail.append(f"median forward {median:.3g} ms outside [{lo}, {hi}] ms")
    stats.update(
        runtime_ms=round(median, 4),
        params_random=params_differ,
        outputs=[
            {
                "shape": list(y.shape),
                "dtype": str(y.dtype).removeprefix("torch."),
                "max_abs": float(y.abs().max()) if y.numel() and y.is_floating_point() else None,
                "std": float(y.double().std()) if y.numel() > 1 and y.is_floating_point() else None,
            }
            for y in y1
        ],
    )
    return {"reasons": reasons, "detail": "; ".join(detail), "stats": stats}


def _below_atol(y: Any) -> bool:
    """All values smaller than the absolute tolerance of their dtype (the judge scales its tolerance down for
    such outputs, but a problem whose answer is ~0 everywhere is degenerate for training)."""
    import torch

    from kernelrl.sandbox.judge import TOLERANCES

    atol = TOLERANCES.get(y.dtype, (1e-4, 1e-4))[0]
    return not y.numel() or float(torch.nan_to_num(y.double()).abs().max()) <= atol


def _near_constant(y: Any, compare: Any) -> bool:
    import torch

    if not y.is_floating_point():
        return bool((y == y.flatten()[0]).all())
    return compare(torch.full_like(y, float(y.double().mean())), y)[0]


def serve(handle: Callable[[str, dict[str, Any]], dict[str, Any]]) -> int:
    """The worker loop: "ready", then one JSON reply line per request line; problem prints go to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    out.write(json.dumps({"event": "ready"}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        out.write(json.dumps(handle(req["source"], req["opts"])) + "\n")
        out.flush()
    return 0


def worker_main() -> int:
    import torch

    import kernelrl.sandbox.judge
    import kernelrl.sandbox.reference
    import kernelrl.sandbox.variants  # noqa: F401 - imported before "ready": start-up is not the problem's time

    torch.set_num_threads(1)
    torch.relu(torch.ones(2))
    return serve(_probe)


# ------------------------------------------------------------------------------------------- client side


class TrustedWorker:
    """A `python -m <module> --worker` subprocess running trusted problem code, one JSON line per request.

    Replaced after a timeout or a crash. Shared with the Inductor teacher (`kernelrl.data_pipeline.teachers`).
    """

    def __init__(
        self, device: str, memory_mb: int | None, module: str = "kernelrl.data_pipeline.filters"
    ) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": PKG_PARENT,
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "HOME": tempfile.gettempdir(),
            "LANG": "C.UTF-8",
        }
        for key in ("CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH"):
            if key in os.environ:
                env[key] = os.environ[key]
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""

        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,
        )
        if device == "cpu" and memory_mb:  # set from outside: preexec_fn is unsafe with threads
            resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        if self._read(180.0).get("event") != "ready":
            self.close()
            raise RuntimeError(f"the {module} worker did not start (is torch importable?)")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError
        return json.loads(line)

    def request(self, source: str, opts: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The worker's reply; TimeoutError past `timeout`, EOFError if it died."""
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"source": source, "opts": opts}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()


class ProblemFilter:
    """Probes problems on `workers` subprocesses in parallel; results stream back as they finish."""

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.config = config or FilterConfig()
        device = self.config.device
        if device == "auto":
            from kernelrl.sandbox.supervisor import detect_device

            device = detect_device("auto")
        self.device = device
        self._local = threading.local()
        self._workers: list[TrustedWorker] = []
        self._lock = threading.Lock()
        self._closed = False

    def _worker(self) -> TrustedWorker:
        if self._closed:
            raise RuntimeError("the problem filter is closed")
        w = getattr(self._local, "worker", None)
        if w is None or w.proc.poll() is not None:
            w = TrustedWorker(self.device, self.config.memory_mb)
            self._local.worker = w
            with self._lock:
                self._workers.append(w)
        return w

    def check(self, task_id: str, name: str, source: str) -> FilterResult:
        """One problem's result; a hung or crashed reference costs this problem only."""
        c = self.config
        opts = {
            "device": self.device,
            "element_budget": c.element_budget,
            "runtime_ms": list(c.runtime_ms),
            "trials": c.trials,
            "features": c.target_gpu is not None,
        }
        worker = self._worker()
        try:
            reply = worker.request(source, opts, c.timeout_s)
        except TimeoutError:
            worker.close()
            reply = {"reasons": ["reference_timeout"], "detail": f"no result within {c.timeout_s:g} s"}
        except (EOFError, OSError, ValueError):
            code = worker.proc.wait()
            worker.close()
            reply = {"reasons": ["reference_failed"], "detail": f"the reference process died (exit {code})"}
        reasons = [r for r in reply["reasons"] if r in REASONS]
        detail, stats = reply.get("detail", ""), reply.get("stats", {})
        if c.target_gpu is not None and "reference_failed" not in reasons:
            window = self._target_window(source, stats)
            if window:
                reasons.append("runtime_out_of_window")
            detail = "; ".join(d for d in (detail, window or stats.get("target_note", "")) if d)
        reasons = [r for r in REASONS if r in reasons]
        rejecting = [r for r in reasons if r not in c.skip]
        return FilterResult(task_id, name, rejecting[0] if rejecting else None, reasons, detail, stats)

    def _target_window(self, source: str, stats: dict[str, Any]) -> str | None:
        """Why the problem's expected time on `target_gpu` is outside the window (None: inside, or unknown)."""
        from kernelrl.perf.features import Features
        from kernelrl.perf.predict import reference_ms

        c = self.config
        feats = Features.from_dict(stats["features"]) if isinstance(stats.get("features"), dict) else None
        ms, basis = reference_ms(source, feats, c.target_gpu or "")
        stats.update(
            target_gpu=c.target_gpu, target_ms=None if ms is None else round(ms, 6), target_basis=basis
        )
        lo, hi = c.runtime_ms
        if ms is None:
            stats["target_note"] = (
                f"runtime on {c.target_gpu} unknown ({stats.get('features_error', 'no features')}): kept"
            )
            return None
        if not lo <= ms <= hi:
            return f"{basis} eager time on {c.target_gpu} {ms:.3g} ms outside [{lo}, {hi}] ms"
        return None

    def run(self, tasks: Iterable[Any]) -> Iterator[FilterResult]:
        """Results for tasks (anything with id, name, source), in completion order."""
        ex = ThreadPoolExecutor(self.config.workers, thread_name_prefix="problem-filter")
        try:
            futures = [ex.submit(self.check, t.id, t.name, t.source) for t in tasks]
            for f in as_completed(futures):
                yield f.result()
        finally:  # an interrupted caller must not wait for the rest of the queue
            ex.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for w in self._workers:
                w.close()
            self._workers = []

    def __enter__(self) -> ProblemFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(worker_main())
    print(
        "usage: python -m kernelrl.data_pipeline.filters --worker (internal); run `kernelrl curate` instead",
        file=sys.stderr,
    )
    sys.exit(2)
