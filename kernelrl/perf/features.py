"""Static features of a problem: FLOPs, bytes and ops of one forward pass, counted without a GPU.

One implementation for every caller: the sandbox's reference process profiles the real model on its own
device with `profile`; curation and `kernelrl perf` build the problem on the `meta` device (shapes only,
no memory, no GPU) with `problem_features`, falling back to `FakeTensorMode` for code that meta tensors
cannot run (explicit `device="cuda"`, ops without a meta kernel).

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`'s formula registry (matmul, conv, attention),
extended with formulas for what it misses:

- recurrent layers: `nn.LSTM`/`nn.GRU`/`nn.RNN` run as one fused op on a device (`_cudnn_rnn` on CUDA,
  `mkldnn_rnn_layer` on CPU) that has no FLOP formula, and decompose into per-step cell ops on `meta`, so the
  count and the op count would depend on the device. They are counted as one `rnn` op per module call, with
  2·T·B·G·H·(in + H) FLOPs per layer and direction (G = 4 LSTM, 3 GRU, 1 RNN), and as the kernels it
  launches in `n_ops`: cuDNN's standard algorithm runs, per layer and direction, one GEMM over all T steps
  and then, step by step, a GEMM and a pointwise kernel (1 + 2·T). The steps are sequential, so a
  recurrent layer costs launches and kernel latency, not FLOPs: 6 layers of 512 steps are 6150 kernels;
- matrix-vector and batched-reduce products (`mv`, `addmv`, `dot`, `vdot`, `addbmm`, `addr`);
- FlopCounterMode counts only multiply-accumulate ops: elementwise, reduction and normalisation work is
  left at 0 FLOPs and shows up as bytes (`pointwise_elems` keeps the elementwise element count).

Convolutions (including transposed and grouped ones) use FlopCounterMode's formula unchanged: it counts
2·Cout·(Cin/groups)·prod(kernel)·prod(output spatial) per sample (input spatial for transposed
convolutions), padding included; `tests/test_perf.py` checks it against hand-computed values.

Bytes: `compulsory_bytes` = inputs + parameters and buffers + outputs (what any implementation must read
and write once); `unfused_bytes` = the sum over executed ops of the bytes each reads and writes (what
eager PyTorch moves, one kernel per op). View and metadata ops move nothing and are not counted as ops.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
FEATURES_VERSION = 2

MATMUL = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot", "addr", "_scaled_mm"}
ATTENTION_PREFIX = ("_scaled_dot_product", "_flash_attention", "_efficient_attention")
NORM = {
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_batch_norm_with_update",
    "_batch_norm_no_update",
    "cudnn_batch_norm",
    "native_layer_norm",
    "native_group_norm",
    "_fused_rms_norm",
}
SOFTMAX = {"_softmax", "_log_softmax", "softmax", "log_softmax"}
SCAN = {"cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "_cummax_helper", "_cummin_helper"}
LOSS = {
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "nll_loss_forward",
    "nll_loss2d_forward",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "soft_margin_loss",
    "multilabel_margin_loss_forward",
    "multi_margin_loss",
}
COPY = {
    "copy_",
    "_to_copy",
    "clone",
    "cat",
    "stack",
    "constant_pad_nd",
    "reflection_pad1d",
    "reflection_pad2d",
    "replication_pad2d",
    "flip",
    "roll",
    "repeat",
    "index",
    "index_select",
    "gather",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "index_put_",
    "index_add",
    "embedding",
    "masked_select",
    "_unsafe_index",
    "tril",
    "triu",
    "contiguous",
}
# Allocation and query ops: no kernel, nothing moved.
FREE = {"empty", "empty_strided", "new_empty", "new_empty_strided", "empty_like", "lift_fresh", "detach"}
CLASSES = ("matmul", "conv", "attention", "rnn", "norm", "softmax", "pool", "reduction", "scan", "loss")
CLASSES += ("copy", "elementwise", "other")
LOWP = {torch.float16, torch.bfloat16}
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def op_class(func: Any) -> str:
    """The class of an aten op overload, for per-class FLOPs and bytes (and the device roofline)."""
    name = func._overloadpacket.__name__
    if name in MATMUL:
        return "matmul"
    if "conv" in name and "convert" not in name:
        return "conv"
    if name.startswith(ATTENTION_PREFIX):
        return "attention"
    if name in NORM:
        return "norm"
    if name in SOFTMAX:
        return "softmax"
    if "pool" in name:
        return "pool"
    if name in SCAN:
        return "scan"
    if name in LOSS:
        return "loss"
    if name in COPY:
        return "copy"
    if torch.Tag.reduction in func.tags:
        return "reduction"
    if torch.Tag.pointwise in func.tags:
        return "elementwise"
    return "other"


def _mv_flop(a_shape: Any, b_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * math.prod(a_shape)


def _addmv_flop(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    return 2 * math.prod(a_shape)


def _dot_flop(a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    return 2 * math.prod(a_shape)


def _addbmm_flop(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    b, m, k = a_shape
    return 2 * b * m * k * b_shape[-1]


def _addr_flop(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    return 2 * math.prod(a_shape) * math.prod(b_shape)


EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.mv: _mv_flop,
    aten.addmv: _addmv_flop,
    aten.dot: _dot_flop,
    aten.vdot: _dot_flop,
    aten.addbmm: _addbmm_flop,
    aten.addr: _addr_flop,
}


def flop_registry() -> dict[Any, Callable[..., int]]:
    """FlopCounterMode's own registry (shape-wrapped) plus the formulas above, keyed by op packet."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS).flop_registry


def rnn_flops(module: torch.nn.RNNBase, x: torch.Tensor) -> int:
    """Multiply-accumulate FLOPs of one call of a recurrent layer on input `x` (packed input: its data)."""
    data = x.data if hasattr(x, "batch_sizes") else x
    # Packed (total steps, features), unbatched (steps, features) or batched (2 leading dims).
    steps_x_batch = data.shape[0] if data.dim() == 2 else data.shape[0] * data.shape[1]
    gates = _RNN_GATES.get(module.mode, 1)
    hidden = module.hidden_size
    out = module.proj_size or hidden
    dirs = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        in_size = module.input_size if layer == 0 else out * dirs
        per_step = gates * hidden * (in_size + out) + (hidden * out if module.proj_size else 0)
        total += 2 * steps_x_batch * per_step * dirs
    return total


def rnn_launches(module: torch.nn.RNNBase, x: torch.Tensor) -> int:
    """Kernels one call of a recurrent layer launches (cuDNN's standard algorithm, see the module docstring)."""
    if hasattr(x, "batch_sizes"):  # packed: one step per batch size
        steps = len(x.batch_sizes)
    elif x.dim() == 2:  # unbatched (steps, features)
        steps = x.shape[0]
    else:
        steps = x.shape[1] if module.batch_first else x.shape[0]
    return module.num_layers * (2 if module.bidirectional else 1) * (1 + 2 * steps)


def _nbytes(t: Any) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


@dataclass
class Features:
    """What one forward pass of a problem costs, independent of any device."""

    flops: float = 0.0
    flops_lowp: float = 0.0  # the part computed in fp16/bf16 (tensor cores)
    input_bytes: int = 0
    param_bytes: int = 0
    output_bytes: int = 0
    unfused_bytes: int = 0
    n_ops: int = 0  # kernel launches: one per aten op, a recurrent layer's per-step kernels (rnn_launches)
    pointwise_elems: int = 0
    classes: dict[str, dict[str, float]] = field(default_factory=dict)  # class -> {n, flops, bytes}
    dtype: str = "float32"  # the floating dtype most bytes are in
    method: str = "meta"  # meta | fake | <device>
    version: int = FEATURES_VERSION

    @property
    def compulsory_bytes(self) -> int:
        return self.input_bytes + self.param_bytes + self.output_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Features:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class OpProfiler(TorchDispatchMode):
    """Records every aten op a forward runs: FLOPs (FlopCounterMode's formulas), bytes in and out, class.

    Ops without a FLOP formula that have a decomposition are decomposed first, exactly as FlopCounterMode
    does, so the totals agree with it. Inside a recurrent module, the module is recorded as one `rnn` op.
    """

    def __init__(self) -> None:
        super().__init__()
        self.registry = flop_registry()
        self.classes: dict[str, dict[str, float]] = {}
        self.flops = self.flops_lowp = 0.0
        self.n_ops = self.unfused = self.pointwise = 0
        self.dtype_bytes: dict[str, int] = {}
        self._rnn_depth = 0

    def add(self, cls: str, flops: float, nbytes: int, dtype: torch.dtype | None, launches: int = 1) -> None:
        c = self.classes.setdefault(cls, {"n": 0, "flops": 0.0, "bytes": 0})
        c["n"] += 1
        c["flops"] += flops
        c["bytes"] += nbytes
        self.n_ops += launches
        self.flops += flops
        if dtype in LOWP:
            self.flops_lowp += flops
        self.unfused += nbytes
        if dtype is not None and dtype.is_floating_point:
            key = str(dtype).removeprefix("torch.")
            self.dtype_bytes[key] = self.dtype_bytes.get(key, 0) + nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self._rnn_depth or func.namespace != "aten":  # inside a recurrent module, or prim/custom ops
            return func(*args, **kwargs)
        packet = func._overloadpacket
        if packet not in self.registry and func._can_decompose():
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if func.is_view or packet.__name__ in FREE:
            return out
        ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        if not outs and not ins:
            return out
        flops = float(self.registry[packet](*args, **kwargs, out_val=out)) if packet in self.registry else 0.0
        cls = op_class(func)
        if cls == "elementwise":
            self.pointwise += sum(o.numel() for o in outs)
        first = (ins or outs)[0]
        self.add(cls, flops, sum(map(_nbytes, ins)) + sum(map(_nbytes, outs)), first.dtype)
        return out

    # Recurrent modules: one `rnn` op, its FLOPs and launches counted by formula (see the module docstring).
    def rnn_pre(self, module: Any, args: Any) -> None:
        self._rnn_depth += 1

    def rnn_post(self, module: Any, args: Any, output: Any) -> None:
        self._rnn_depth -= 1
        if self._rnn_depth or not args:
            return
        x = args[0]
        ins = [a for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)]
        ins += list(module.parameters())
        outs = [o for o in tree_flatten(output)[0] if isinstance(o, torch.Tensor)]
        nbytes = sum(map(_nbytes, ins)) + sum(map(_nbytes, outs))
        dtype = x.data.dtype if hasattr(x, "batch_sizes") else x.dtype
        self.add("rnn", float(rnn_flops(module, x)), nbytes, dtype, launches=rnn_launches(module, x))


def _shape_only(x: Any) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(x, torch.Tensor) and (x.is_meta or isinstance(x, FakeTensor))


def _rnn_shapes(module: torch.nn.RNNBase, real_forward: Callable[..., Any]) -> Callable[..., Any]:
    """A recurrent layer's forward that only makes outputs of the right shapes on shape-only tensors.

    On `meta`, a recurrent layer decomposes into per-step cell ops that take tens of seconds to
    dispatch; the shapes are all the profiler needs (its FLOPs come from `rnn_flops`).
    """

    def forward(input: Any, hx: Any = None) -> Any:
        if not _shape_only(input):
            return real_forward(input, hx)
        batched = input.dim() == 3
        steps, batch = (input.shape[1], input.shape[0]) if module.batch_first else input.shape[:2]
        if not batched:
            steps, batch = input.shape[0], 1
        dirs = 2 if module.bidirectional else 1
        out_size = module.proj_size or module.hidden_size
        seq = (batch, steps) if module.batch_first else (steps, batch)
        output = input.new_empty((*seq, dirs * out_size) if batched else (steps, dirs * out_size))
        state = (module.num_layers * dirs, batch) if batched else (module.num_layers * dirs,)
        h_n = input.new_empty((*state, out_size))
        if module.mode == "LSTM":
            return output, (h_n, input.new_empty((*state, module.hidden_size)))
        return output, h_n

    return forward


def profile(model: Any, inputs: list[Any], method: str | None = None) -> Features:
    """Run `model(*inputs)` once under the profiler (no grad) and return its features.

    Works on any device, `meta` and fake tensors included; the model and inputs are used as given.
    """
    prof = OpProfiler()
    hooks, patched = [], []
    for m in model.modules() if isinstance(model, torch.nn.Module) else []:
        if isinstance(m, torch.nn.RNNBase):
            hooks.append(m.register_forward_pre_hook(prof.rnn_pre))
            hooks.append(m.register_forward_hook(prof.rnn_post))
            if "forward" not in m.__dict__:
                m.forward = _rnn_shapes(m, m.forward)
                patched.append(m)
    try:
        with torch.no_grad(), prof:
            out = model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        for m in patched:
            del m.forward
    outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
    tensors = [v for v in tree_flatten(inputs)[0] if isinstance(v, torch.Tensor)]
    params: dict[int, torch.Tensor] = {}
    if isinstance(model, torch.nn.Module):
        for t in [*model.parameters(), *model.buffers()]:
            params.setdefault(id(t), t)
    dtype = max(prof.dtype_bytes, key=prof.dtype_bytes.__getitem__) if prof.dtype_bytes else "float32"
    device = (tensors or outs or [torch.empty(0)])[0].device.type
    return Features(
        flops=prof.flops,
        flops_lowp=prof.flops_lowp,
        input_bytes=sum(map(_nbytes, tensors)),
        param_bytes=sum(map(_nbytes, params.values())),
        output_bytes=sum(map(_nbytes, outs)),
        unfused_bytes=prof.unfused,
        n_ops=prof.n_ops,
        pointwise_elems=prof.pointwise,
        classes={k: prof.classes[k] for k in CLASSES if k in prof.classes},
        dtype=dtype,
        method=method or device,
    )


def looks_like_problem(source: str) -> bool:
    """Whether a file defines `class Model`, `get_inputs` and `get_init_inputs` (read, never executed)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    return {"Model", "get_inputs", "get_init_inputs"} <= names


def load_source(source: str, name: str = "problem") -> types.ModuleType:
    """Execute a problem file's source into a fresh module. Runs problem code: call it in a worker process."""
    import hashlib

    name = (
        f"_kernelrl_{name}_{hashlib.sha256(source.encode()).hexdigest()[:12]}"  # never a real module's name
    )
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # the user's own problem, not a candidate
    for attr in ("Model", "get_inputs", "get_init_inputs"):
        if not hasattr(module, attr):
            raise ValueError(f"not a KernelBench problem: it defines no {attr}")
    return module


def _build_and_profile(module: types.ModuleType, real_init: bool = False) -> Features:
    torch.manual_seed(0)
    init = list(module.get_init_inputs())
    if real_init:  # __init__ reads values (`.item()`): build on the CPU, then keep only the shapes
        with torch.device("cpu"):
            model = module.Model(*init)
        model = model.to("meta") if isinstance(model, torch.nn.Module) else model
    else:
        model = module.Model(*init)
    inputs = list(module.get_inputs())
    if isinstance(model, torch.nn.Module):
        model.eval()
    return profile(model, inputs)


def problem_features(source: str) -> Features:
    """Features of a problem at its file's sizes, without allocating its tensors or touching a GPU.

    Tries, in order: the `meta` device; `FakeTensorMode` (which also fakes `device="cuda"` tensors and ops
    without a meta kernel); the model built for real on the CPU and moved to `meta` (for an `__init__`
    that reads values, e.g. `.item()` on a `linspace`). Raises with every reason when none can run the
    problem (data-dependent forward, files or downloads in `__init__`, Triton kernels in the reference).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    module = load_source(source)
    errors = []
    for method in ("meta", "fake", "cpu-init"):
        try:
            if method == "fake":
                with FakeTensorMode(allow_non_fake_inputs=True):
                    feats = _build_and_profile(module)
            else:
                with torch.device("meta"):
                    feats = _build_and_profile(module, real_init=method == "cpu-init")
        except Exception as e:  # noqa: BLE001 - each way fails on some code; the next may not
            errors.append(f"{method}: {type(e).__name__}: {str(e)[:200]}")
            continue
        feats.method = method
        return feats
    raise RuntimeError("cannot count this problem without running it (" + "; ".join(errors) + ")")


def features_of_files(
    paths: list[Path] | list[str], cache: Path | None = None, timeout_s: float = 600.0, chunk: int = 8
) -> dict[str, dict[str, Any]]:
    """{path: features row (`ok`, ...) or error row} for problem files, counted in worker subprocesses.

    Problem files are code: they run in `python -m kernelrl.perf.features` children (offline, no GPU), a
    few files per child, each child under `timeout_s`. `cache` (JSONL) is reused and extended, so a long
    run resumes. Shows a progress bar.
    """
    import json
    import os
    import subprocess

    from tqdm import tqdm

    done: dict[str, dict[str, Any]] = {}
    if cache and Path(cache).exists():
        for line in Path(cache).read_text().splitlines():
            row = json.loads(line)
            done[row["path"]] = row
    todo = [str(p) for p in paths if str(p) not in done]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    with tqdm(total=len(paths), initial=len(paths) - len(todo), desc="features", unit="problem") as bar:
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "kernelrl.perf.features", *part],
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"path"')]
                got = {r["path"]: r for r in map(json.loads, lines)}
            except (subprocess.TimeoutExpired, json.JSONDecodeError):
                got = {}
            for p in part:
                row = got.get(
                    p, {"path": p, "ok": False, "error": f"the worker timed out ({timeout_s:g} s) or crashed"}
                )
                done[p] = row
                if cache:
                    with open(cache, "a") as f:
                        f.write(json.dumps(row) + "\n")
            bar.update(len(part))
    return {str(p): done[str(p)] for p in paths}


def main() -> int:
    """`python -m kernelrl.perf.features FILE...`: each problem's features as one JSON line on stdout."""
    import json
    import os

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # problem code may print: keep the result channel clean
    for path in sys.argv[1:]:
        try:
            with open(path) as f:
                source = f.read()
            row = {"path": path, "ok": True, **problem_features(source).to_dict()}
        except Exception as e:  # noqa: BLE001 - one bad file is reported, the rest still counted
            row = {"path": path, "ok": False, "error": f"{type(e).__name__}: {e}"[:600]}
        out.write(json.dumps(row) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
