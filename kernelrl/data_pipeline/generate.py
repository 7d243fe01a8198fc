"""Procedural PyTorch problems in KernelBench format, seeded and reproducible.

Why: teacher samples are scarce and public sets are small and contaminated; varying op chains, shapes, dims,
parameters and input distributions gives thousands of distinct tasks near a model's ability. Each problem
carries a JSON `spec` so `kernelrl.data_pipeline.synthesize` can write a correct Triton answer without a teacher.

Sizes are module-level int literals (the sandbox scales and perturbs them), axes and kernel sizes are ints
<= 8 (the sandbox never changes those), and every problem's output depends on all of its inputs.

Spec (JSON): every spec has `category`, `constants` {name: value}, `init_args`, `init_body` (the lines of
Model.__init__ after super().__init__(), so an answer can create the same parameters in the same order) and
`forward_args`. An op chain is a list of {"op": name, **params} (see UNARY_TORCH, BINARY_TORCH, PARAM_TORCH).
Per category:
  elementwise    dtype ("float32"|"float16"), ops, inputs (["x"] or ["x", "y"]),
                 broadcast (None | "last" | "channel": how the bias/weight parameter broadcasts), distribution
  reduction      op (sum|mean|max|min|l2norm|logsumexp), dim, ndim, keepdim, distribution
  softmax        op (softmax|log_softmax), dim, ndim, scale (None or the factor applied first), distribution
  normalization  norm (layer_norm|rms_norm|l2_normalize), eps, affine, ops (epilogue), distribution
  matmul         form (matmul|linear|bmm), ops (epilogue, may hold add_bias/mul_weight), linear_bias
  pooling        pool (max|avg), nd (1|2), kernel_size, stride, padding, count_include_pad, distribution
  loss           loss (mse|l1|smooth_l1|huber|bce_with_logits|cross_entropy), reduction (mean|sum), beta|delta
  cumulative     op (cumsum|cumprod|reverse_cumsum), dim, ndim, distribution
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CATEGORIES = (
    "elementwise",
    "reduction",
    "softmax",
    "normalization",
    "matmul",
    "pooling",
    "loss",
    "cumulative",
)


@dataclass(frozen=True)
class GeneratedProblem:
    name: str  # unique within a generated set, e.g. "matmul_bias_gelu_0042"
    category: str  # one of CATEGORIES
    source: str  # KernelBench-format problem file
    spec: dict[str, Any]  # JSON-serialisable description read by data_pipeline.synthesize


# ---------------------------------------------------------------- elementwise op vocabulary

# Unary ops: PyTorch expression on `{x}` plus a sampler for their parameters. Binary ops use the second input
# `y`; `add_bias` / `mul_weight` use a broadcast parameter. data_pipeline.synthesize mirrors this table.
UNARY_TORCH = {
    "relu": "torch.relu({x})",
    "leaky_relu": "F.leaky_relu({x}, negative_slope={slope})",
    "gelu": "F.gelu({x})",
    "gelu_tanh": 'F.gelu({x}, approximate="tanh")',
    "silu": "F.silu({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "elu": "F.elu({x}, alpha={alpha})",
    "softplus": "F.softplus({x})",
    "mish": "F.mish({x})",
    "hardtanh": "F.hardtanh({x}, min_val={min}, max_val={max})",
    "clamp": "torch.clamp({x}, min={min}, max={max})",
    "hardsigmoid": "F.hardsigmoid({x})",
    "hardswish": "F.hardswish({x})",
    "relu6": "F.relu6({x})",
    "scale": "{x} * {value}",
    "shift": "{x} + {value}",
    "square": "{x} * {x}",
    "abs": "torch.abs({x})",
}
BINARY_TORCH = {"add_input": "{x} + y", "mul_input": "{x} * y", "sub_input": "{x} - y"}
PARAM_TORCH = {"add_bias": "{x} + self.bias", "mul_weight": "{x} * self.weight"}
SHORT = {
    "add_input": "add",
    "mul_input": "mul",
    "sub_input": "sub",
    "add_bias": "bias",
    "mul_weight": "weight",
}


def _unary_params(op: str, rng: random.Random) -> dict[str, float]:
    if op == "leaky_relu":
        return {"slope": rng.choice([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])}
    if op == "elu":
        return {"alpha": rng.choice([0.5, 1.0, 1.5, 2.0])}
    if op in ("hardtanh", "clamp"):
        # Ranges always straddle 0, so chained clamps or a clamp after a non-negative op never give a constant.
        return {
            "min": rng.choice([-3.0, -2.0, -1.5, -1.0, -0.5, -0.25]),
            "max": rng.choice([0.25, 0.5, 1.0, 2.0, 3.0]),
        }
    if op == "scale":
        return {"value": rng.choice([0.1, 0.25, 0.5, 0.75, 1.5, 2.0, 3.0, -0.5, -2.0])}
    if op == "shift":
        return {"value": rng.choice([-1.0, -0.5, -0.25, 0.1, 0.5, 1.0, 2.0])}
    return {}


# Ops with a bounded output and slope ~1 somewhere: after a GEMM of two inputs (which the sandbox's `wide`
# distribution scales 10x each) fp32 summation-order error of ~1e-4 lands unscaled in a small-RMS output, so a
# correct kernel could fail the 1e-4 tolerance. Such epilogues are drawn only where one operand is a weight.
BOUNDED = frozenset({"sigmoid", "tanh", "hardsigmoid", "relu6", "hardtanh", "clamp"})


def _unary_chain(rng: random.Random, n: int, exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """n unary ops, no op twice in a row and at most one square (chains of squares overflow)."""
    ops: list[dict[str, Any]] = []
    choices = [op for op in UNARY_TORCH if op not in exclude]
    while len(ops) < n:
        op = rng.choice(choices)
        if (ops and ops[-1]["op"] == op) or (op == "square" and any(o["op"] == "square" for o in ops)):
            continue
        ops.append({"op": op, **_unary_params(op, rng)})
    return ops


def torch_op(op: dict[str, Any], x: str = "x") -> str:
    """The PyTorch expression of one chain op applied to variable `x`."""
    table = {**UNARY_TORCH, **BINARY_TORCH, **PARAM_TORCH}
    return table[op["op"]].format(x=x, **{k: v for k, v in op.items() if k != "op"})


def _short(op: dict[str, Any]) -> str:
    return SHORT.get(op["op"], op["op"])


# ---------------------------------------------------------------- sizes and inputs

_SIZES = sorted(
    {b * 2**k for b in (1, 3, 5, 7) for k in range(0, 16) if b * 2**k <= 65536}
    | {10, 18, 36, 50, 100, 127, 200, 250, 255, 300, 500, 513, 600, 1000, 1023, 1500, 2000, 2500, 3000, 6000}
)
NOT_SIZES = {"reduce_dim", "softmax_dim", "scan_dim", "kernel_size", "stride", "padding"}
FLOOR_LIMIT = 2048  # largest product of the shape sizes at the smallest values the sandbox can scale them to
MATMUL_FLOOR_LIMIT = 1 << 15  # the same for matmul, where the product is batch * M * K * N


def scaled_floor(constants: dict[str, Any], min_sizes: dict[str, int] | None = None) -> int:
    """Product of the shape sizes at the smallest values the sandbox's CPU variants can reach (roughly).

    The sandbox keeps each size (> 8) a multiple of its power-of-two part up to 16, of the small constants
    that divide it, and of the *new* value of any smaller size dividing it. So (16, 32, 64, 64) cannot shrink
    below 16**4 elements, and (40, 600, 100) gets stuck because halving 40 or 100 forces 600 up; the generator
    redraws such shapes (sizes coupled this way count as unbounded), as they would crawl under the interpreter.
    """
    ints = {k: v for k, v in constants.items() if type(v) is int}
    small = [v for v in ints.values() if 1 < v < 9]
    floors: dict[int, int] = {}
    for v in sorted(v for v in ints.values() if v >= 9):  # divisors first
        deps = [d for d in floors if d < v and v % d == 0 and (d <= 64 or d & (d - 1))]
        if any(floors[d] != d for d in deps):
            return 1 << 62
        floors[v] = min(v, math.lcm(min(v & -v, 16), *(d for d in small if v % d == 0), *deps))
    low = min_sizes or {}
    return math.prod(max(floors.get(v, v), low.get(k, 1)) for k, v in ints.items() if k not in NOT_SIZES)


def _size(rng: random.Random, lo: int, hi: int) -> int:
    return rng.choice([s for s in _SIZES if lo <= s <= hi] or [next(s for s in _SIZES if s >= lo)])


def _shape(
    rng: random.Random, dims: list[tuple[str, int, int]], lo: int = 1 << 14, hi: int = 1 << 22
) -> list[tuple[str, int]]:
    """Named sizes (each in its own [min, max]) with their product in [lo, hi] where the ranges allow.

    Dims are drawn in random order, each capped by what the budget leaves for the rest, so no dim is
    always the large one.
    """
    for _ in range(50):
        values: dict[str, int] = {}
        for i in rng.sample(range(len(dims)), len(dims)):
            name, a, b = dims[i]
            rest = math.prod(values.get(n, d_lo) for n, d_lo, _ in dims if n != name)
            values[name] = _size(rng, a, max(a, min(b, hi // rest)))
        if lo <= math.prod(values.values()):
            break
    return [(name, values[name]) for name, _, _ in dims]


# Input distributions (the sandbox adds its own shifted and wide ones); `{s}` is the shape argument list.
DISTRIBUTIONS = {
    "normal": "torch.randn({s})",
    "normal_x3": "torch.randn({s}) * 3.0",
    "normal_x0.5": "torch.randn({s}) * 0.5",
    "uniform_pm2": "torch.rand({s}) * 4.0 - 2.0",
    "uniform": "torch.rand({s})",
}


def _input(dist: str, names: list[str], dtype: str = "float32") -> str:
    s = ", ".join(names) + (", dtype=torch.float16" if dtype == "float16" else "")
    return DISTRIBUTIONS[dist].format(s=s) if dist in DISTRIBUTIONS else dist.format(s=s)


def _layout(rng: random.Random) -> list[tuple[str, int]]:
    kind = rng.choice(["2d", "3d", "4d"])
    if kind == "2d":
        return _shape(rng, [("batch_size", 16, 1024), ("dim", 100, 16384)])
    if kind == "3d":
        return _shape(rng, [("batch_size", 2, 128), ("seq_len", 16, 1024), ("hidden", 64, 4096)])
    return _shape(rng, [("batch_size", 2, 64), ("channels", 3, 256), ("height", 16, 128), ("width", 16, 128)])


def _reduce_shape(rng: random.Random, ndim: int) -> list[tuple[str, int]]:
    names = [("batch_size", 2, 256), ("dim1", 16, 4096), ("dim2", 16, 4096), ("dim3", 16, 256)][:ndim]
    if ndim == 2:
        names = [("batch_size", 9, 1024), ("dim", 16, 16384)]
    return _shape(rng, names, hi=1 << 21)


def _dim_arg(rng: random.Random, ndim: int, allow_first: bool = True) -> int:
    d = rng.randrange(0 if allow_first else 1, ndim)
    return d - ndim if d == ndim - 1 and rng.random() < 0.4 else d  # sometimes -1


# ---------------------------------------------------------------- problem pieces


@dataclass
class _Parts:
    stem: str  # descriptive name before the index
    doc: str
    init_args: list[str]
    init_body: list[str]  # lines after super().__init__()
    forward_args: list[str]
    forward_body: list[str]
    constants: list[tuple[str, int | float]]
    inputs: list[str]
    init_inputs: list[str]
    spec: dict[str, Any]
    min_sizes: dict[str, int] | None = None  # sizes the reference needs at least (pooling windows)


def _render(p: _Parts) -> str:
    ind = "        "
    lines = [
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "",
        "",
        "class Model(nn.Module):",
        f'    """{p.doc}"""',
        "",
        f"    def __init__({', '.join(['self', *p.init_args])}):",
        f"{ind}super().__init__()",
        *(ind + line for line in p.init_body),
        "",
        f"    def forward({', '.join(['self', *p.forward_args])}):",
        *(ind + line for line in p.forward_body),
        "",
        "",
        *(f"{k} = {v!r}" for k, v in p.constants),
        "",
        "",
        "def get_inputs():",
        f"    return [{', '.join(p.inputs)}]",
        "",
        "",
        "def get_init_inputs():",
        f"    return [{', '.join(p.init_inputs)}]",
        "",
    ]
    return "\n".join(lines)


def _elementwise(rng: random.Random) -> _Parts:
    dtype = "float16" if rng.random() < 0.2 else "float32"
    shape = _layout(rng)
    names = [n for n, _ in shape]
    ops = _unary_chain(rng, rng.randint(1, 4))
    args = ["x"]
    if rng.random() < 0.35:
        args.append("y")
        ops.insert(rng.choice([0, 0, rng.randint(0, len(ops))]), {"op": rng.choice(list(BINARY_TORCH))})
    init_args: list[str] = []
    init_body: list[str] = []
    broadcast = None
    if dtype == "float32" and rng.random() < 0.4:  # fp16 problems take no fp32 parameter (it would promote)
        op = rng.choice(list(PARAM_TORCH))
        broadcast = "channel" if len(shape) == 4 else "last"
        pname = "channels" if broadcast == "channel" else names[-1]
        pshape = f"{pname}, 1, 1" if broadcast == "channel" else pname
        init = f"torch.randn({pshape}) * 0.1" if op == "add_bias" else f"1.0 + 0.1 * torch.randn({pshape})"
        init_args.append(pname)
        init_body.append(f"self.{'bias' if op == 'add_bias' else 'weight'} = nn.Parameter({init})")
        ops.insert(rng.randint(0, len(ops)), {"op": op})
    dist = rng.choice(list(DISTRIBUTIONS))
    body = [f"x = {torch_op(o)}" for o in ops] + ["return x"]
    prefix = "fp16_" if dtype == "float16" else ""
    chain = "; ".join(f"x = {torch_op(o)}" for o in ops)
    return _Parts(
        stem=prefix + "_".join(_short(o) for o in ops),
        doc=f"Elementwise chain on a {len(shape)}-D {dtype} tensor: {chain}.",
        init_args=init_args,
        init_body=init_body,
        forward_args=args,
        forward_body=body,
        constants=shape,
        inputs=[_input(dist, names, dtype) for _ in args],
        init_inputs=list(init_args),
        spec={"dtype": dtype, "ops": ops, "inputs": args, "broadcast": broadcast, "distribution": dist},
    )


_REDUCE_TORCH = {
    "sum": ["torch.sum(x, dim=self.dim, keepdim={k})"],
    "mean": ["torch.mean(x, dim=self.dim, keepdim={k})"],
    "max": ["torch.amax(x, dim=self.dim, keepdim={k})", "torch.max(x, dim=self.dim, keepdim={k})[0]"],
    "min": ["torch.amin(x, dim=self.dim, keepdim={k})", "torch.min(x, dim=self.dim, keepdim={k}).values"],
    "l2norm": [
        "torch.linalg.vector_norm(x, dim=self.dim, keepdim={k})",
        "torch.norm(x, p=2, dim=self.dim, keepdim={k})",
    ],
    "logsumexp": ["torch.logsumexp(x, dim=self.dim, keepdim={k})"],
}


def _reduction(rng: random.Random) -> _Parts:
    op = rng.choice(list(_REDUCE_TORCH))
    ndim = rng.choice([2, 3, 3, 4])
    shape = _reduce_shape(rng, ndim)
    dim = _dim_arg(rng, ndim)
    keepdim = rng.random() < 0.4
    expr = rng.choice(_REDUCE_TORCH[op]).format(k=keepdim)
    dist = rng.choice(["normal", "normal_x3", "uniform_pm2", "uniform"])
    return _Parts(
        stem=f"{op}_dim{dim % ndim}" + ("_keepdim" if keepdim else ""),
        doc=f"{op} over dimension {dim} of a {ndim}-D tensor (keepdim={keepdim}): {expr}.",
        init_args=["dim"],
        init_body=["self.dim = dim"],
        forward_args=["x"],
        forward_body=[f"return {expr}"],
        constants=[*shape, ("reduce_dim", dim)],
        inputs=[_input(dist, [n for n, _ in shape])],
        init_inputs=["reduce_dim"],
        spec={"op": op, "dim": dim, "ndim": ndim, "keepdim": keepdim, "distribution": dist},
    )


def _softmax(rng: random.Random) -> _Parts:
    op = rng.choice(["softmax", "log_softmax"])
    ndim = rng.choice([2, 2, 3, 4])
    shape = _reduce_shape(rng, ndim)
    dim = _dim_arg(rng, ndim, allow_first=False) if rng.random() < 0.4 else ndim - 1
    scale = rng.choice([None, None, 0.5, 2.0, 0.125, -1.0, 1.0 / 3.0])
    arg = "x" if scale is None else f"x * {scale!r}"
    expr = f"torch.softmax({arg}, dim=self.dim)" if op == "softmax" else f"F.log_softmax({arg}, dim=self.dim)"
    dist = rng.choice(["normal", "normal_x3", "uniform_pm2", "uniform"])
    return _Parts(
        stem=f"{op}_dim{dim % ndim}" + ("" if scale is None else "_scaled"),
        doc=f"{op} over dimension {dim} of a {ndim}-D tensor: {expr}.",
        init_args=["dim"],
        init_body=["self.dim = dim"],
        forward_args=["x"],
        forward_body=[f"return {expr}"],
        constants=[*shape, ("softmax_dim", dim)],
        inputs=[_input(dist, [n for n, _ in shape])],
        init_inputs=["softmax_dim"],
        spec={"op": op, "dim": dim, "ndim": ndim, "scale": scale, "distribution": dist},
    )


def _normalization(rng: random.Random) -> _Parts:
    norm = rng.choice(["layer_norm", "layer_norm", "rms_norm", "l2_normalize"])
    if rng.random() < 0.5:
        shape = _shape(rng, [("batch_size", 9, 4096), ("hidden", 64, 8192)])
    else:
        shape = _shape(rng, [("batch_size", 2, 64), ("seq_len", 16, 1024), ("hidden", 64, 4096)])
    names = [n for n, _ in shape]
    eps = rng.choice([1e-5, 1e-6, 1e-8, 1e-3]) if norm != "l2_normalize" else rng.choice([1e-12, 1e-8, 1e-6])
    epilogue = _unary_chain(rng, rng.choice([0, 0, 1, 2]))
    affine = norm != "layer_norm" or rng.random() < 0.7
    if norm == "layer_norm":
        init_args, init_inputs = ["hidden", "eps"], ["hidden", "eps"]
        init_body = [
            f"self.norm = nn.LayerNorm(hidden, eps=eps{'' if affine else ', elementwise_affine=False'})"
        ]
        body = ["x = self.norm(x)"]
        what = f"LayerNorm over the last dim (eps={eps}, affine={affine})"
    elif norm == "rms_norm":
        init_args, init_inputs = ["hidden", "eps"], ["hidden", "eps"]
        init_body = ["self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(hidden))", "self.eps = eps"]
        body = ["x = x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + self.eps) * self.weight"]
        what = f"RMSNorm over the last dim with a learnable weight (eps={eps})"
    else:
        init_args, init_inputs = ["eps"], ["eps"]
        init_body = ["self.eps = eps"]
        body = ["x = F.normalize(x, p=2.0, dim=-1, eps=self.eps)"]
        what = f"L2 normalisation of the last dim (eps={eps})"
    body += [f"x = {torch_op(o)}" for o in epilogue] + ["return x"]
    if epilogue:
        what += ", then " + "; ".join(f"x = {torch_op(o)}" for o in epilogue)
    dist = rng.choice(["normal", "normal_x3", "uniform_pm2", "uniform", "torch.randn({s}) * 2.0 + 1.0"])
    return _Parts(
        stem="_".join([norm, *(_short(o) for o in epilogue)]),
        doc=what + ".",
        init_args=init_args,
        init_body=init_body,
        forward_args=["x"],
        forward_body=body,
        constants=[*shape, ("eps", eps)],
        inputs=[_input(dist, names)],
        init_inputs=init_inputs,
        spec={"norm": norm, "eps": eps, "affine": affine, "ops": epilogue, "distribution": dist},
    )


def _matmul(rng: random.Random) -> _Parts:
    form = rng.choice(["matmul", "matmul", "linear", "linear", "bmm"])
    ops = _unary_chain(rng, rng.choice([0, 1, 1, 2, 3]), BOUNDED if form != "linear" else frozenset())
    init_args: list[str] = []
    init_body: list[str] = []
    if form == "bmm":
        batch = ("batch", rng.choice([2, 3, 4, 5, 6, 8, 10, 12, 20]))
        shape = [batch, *_shape(rng, [("M", 32, 1024), ("K", 32, 1024), ("N", 32, 1024)], 1 << 16, 1 << 27)]
        args = ["a", "b"]
        inputs = ["torch.randn(batch, M, K)", "torch.randn(batch, K, N)"]
        mm = "torch.bmm(a, b)"
        n_name = "N"
    elif form == "matmul":
        shape = _shape(rng, [("M", 64, 4096), ("K", 64, 4096), ("N", 64, 4096)], lo=1 << 18, hi=1 << 31)
        args, inputs = ["a", "b"], ["torch.randn(M, K)", "torch.randn(K, N)"]
        mm = rng.choice(["torch.matmul(a, b)", "a @ b"])
        n_name = "N"
    else:
        shape = _shape(
            rng,
            [("batch_size", 16, 2048), ("in_features", 64, 4096), ("out_features", 64, 4096)],
            1 << 18,
            1 << 31,
        )
        has_bias = rng.random() < 0.75
        args, inputs = ["x"], ["torch.randn(batch_size, in_features)"]
        init_args = ["in_features", "out_features"]
        init_body = [
            f"self.linear = nn.Linear(in_features, out_features{'' if has_bias else ', bias=False'})"
        ]
        mm = "self.linear(x)"
        n_name = "out_features"
    if rng.random() < 0.45:
        op = rng.choice(list(PARAM_TORCH))
        init = f"torch.randn({n_name}) * 0.1" if op == "add_bias" else f"1.0 + 0.1 * torch.randn({n_name})"
        if n_name not in init_args:
            init_args.append(n_name)
        init_body.append(f"self.{'bias' if op == 'add_bias' else 'weight'} = nn.Parameter({init})")
        ops.insert(rng.randint(0, len(ops)), {"op": op})
    body = [f"x = {mm}"] + [f"x = {torch_op(o)}" for o in ops] + ["return x"]
    dist_scale = rng.choice(["", "", " * 0.5", " * 2.0"])
    inputs = [i + dist_scale for i in inputs]
    spec = {"form": form, "ops": ops, "linear_bias": form == "linear" and "bias=False" not in init_body[0]}
    epi = "; ".join(f"x = {torch_op(o)}" for o in ops)
    return _Parts(
        stem="_".join([form, *(_short(o) for o in ops)]),
        doc=f"{mm} with a fused epilogue" + (f": {epi}." if ops else " (none)."),
        init_args=init_args,
        init_body=init_body,
        forward_args=args,
        forward_body=body,
        constants=shape,
        inputs=inputs,
        init_inputs=list(init_args),
        spec=spec,
    )


def _pooling(rng: random.Random) -> _Parts:
    kind = rng.choice(["max", "avg"])
    nd = rng.choice([1, 2, 2, 2])  # 2-D shapes are redrawn more often (scaling floor), so draw them more
    k = rng.choice([2, 3, 4, 5]) if nd == 2 else rng.choice([2, 3, 4, 5, 7, 8])
    stride = rng.choice([1, 2, k, k]) if k > 1 else 1
    padding = rng.randint(0, k // 2)
    count_include_pad = kind == "max" or padding == 0 or rng.random() < 0.6
    if nd == 1:
        shape = _shape(rng, [("batch_size", 2, 64), ("channels", 3, 256), ("length", 64, 16384)])
    else:
        shape = _shape(
            rng, [("batch_size", 2, 32), ("channels", 3, 128), ("height", 16, 256), ("width", 16, 256)]
        )
    cls = f"{'MaxPool' if kind == 'max' else 'AvgPool'}{nd}d"
    extra = "" if count_include_pad or kind == "max" else ", count_include_pad=False"
    init_body = [f"self.pool = nn.{cls}(kernel_size=kernel_size, stride=stride, padding=padding{extra})"]
    dist = rng.choice(["normal", "normal_x3", "uniform_pm2", "uniform"])
    return _Parts(
        stem=f"{kind}_pool{nd}d_k{k}s{stride}p{padding}" + ("" if count_include_pad else "_excl"),
        doc=f"nn.{cls}(kernel_size={k}, stride={stride}, padding={padding}{extra}) on a {nd + 2}-D input.",
        init_args=["kernel_size", "stride", "padding"],
        init_body=init_body,
        forward_args=["x"],
        forward_body=["return self.pool(x)"],
        constants=[*shape, ("kernel_size", k), ("stride", stride), ("padding", padding)],
        inputs=[_input(dist, [n for n, _ in shape])],
        init_inputs=["kernel_size", "stride", "padding"],
        min_sizes={name: 2 * k for name in ("length", "height", "width")},
        spec={
            "pool": kind,
            "nd": nd,
            "kernel_size": k,
            "stride": stride,
            "padding": padding,
            "count_include_pad": count_include_pad,
            "distribution": dist,
        },
    )


def _loss(rng: random.Random) -> _Parts:
    loss = rng.choice(
        ["mse", "l1", "smooth_l1", "huber", "bce_with_logits", "cross_entropy", "cross_entropy"]
    )
    reduction = rng.choice(["mean", "mean", "sum"])
    red = "" if reduction == "mean" else ', reduction="sum"'
    param: dict[str, float] = {}
    if loss == "cross_entropy":
        shape = _shape(rng, [("batch_size", 16, 4096), ("num_classes", 10, 32768)], hi=1 << 23)
        args = ["logits", "targets"]
        scale = rng.choice(["", " * 2.0", " * 5.0"])
        inputs = [
            f"torch.randn(batch_size, num_classes){scale}",
            "torch.randint(0, num_classes, (batch_size,))",
        ]
        expr = f"F.cross_entropy(logits, targets{red})"
    else:
        shape = _shape(rng, [("batch_size", 16, 1024), ("dim", 64, 32768)], hi=1 << 23)
        names = [n for n, _ in shape]
        args = ["predictions", "targets"]
        if loss == "bce_with_logits":
            inputs = [_input(rng.choice(["normal", "normal_x3"]), names), _input("uniform", names)]
        else:
            inputs = [_input(rng.choice(["normal", "normal_x3", "uniform_pm2"]), names) for _ in args]
        fn = {
            "mse": "F.mse_loss",
            "l1": "F.l1_loss",
            "smooth_l1": "F.smooth_l1_loss",
            "huber": "F.huber_loss",
            "bce_with_logits": "F.binary_cross_entropy_with_logits",
        }[loss]
        if loss == "smooth_l1":
            param = {"beta": rng.choice([0.5, 1.0, 2.0, 0.25])}
        elif loss == "huber":
            param = {"delta": rng.choice([0.5, 1.0, 1.5, 3.0])}
        kw = "".join(f", {k}={v}" for k, v in param.items())
        expr = f"{fn}(predictions, targets{red}{kw})"
    return _Parts(
        stem=f"{loss}_loss" + ("_sum" if reduction == "sum" else ""),
        doc=f"{loss} loss with {reduction} reduction to a 0-dim tensor: {expr}.",
        init_args=[],
        init_body=[],
        forward_args=args,
        forward_body=[f"return {expr}"],
        constants=shape,
        inputs=inputs,
        init_inputs=[],
        spec={"loss": loss, "reduction": reduction, **param},
    )


def _cumulative(rng: random.Random) -> _Parts:
    op = rng.choice(["cumsum", "cumsum", "cumprod", "reverse_cumsum"])
    ndim = rng.choice([2, 2, 3])
    shape = _reduce_shape(rng, ndim)
    dim = _dim_arg(rng, ndim, allow_first=False) if rng.random() < 0.4 else ndim - 1
    if op == "cumsum":
        expr = "torch.cumsum(x, dim=self.dim)"
    elif op == "cumprod":
        expr = "torch.cumprod(x, dim=self.dim)"
    else:
        expr = "torch.cumsum(x.flip(self.dim), dim=self.dim).flip(self.dim)"
    if op == "cumprod":  # factors near 1 keep long products finite and informative
        dist = rng.choice(
            ["torch.rand({s}) + 0.5", "torch.rand({s}) * 0.4 + 0.8", "torch.rand({s}) * 0.2 + 0.9"]
        )
    else:
        dist = rng.choice(["normal", "normal_x3", "uniform_pm2", "uniform"])
    return _Parts(
        stem=f"{op}_dim{dim % ndim}",
        doc=f"{op} along dimension {dim} of a {ndim}-D tensor: {expr}.",
        init_args=["dim"],
        init_body=["self.dim = dim"],
        forward_args=["x"],
        forward_body=[f"return {expr}"],
        constants=[*shape, ("scan_dim", dim)],
        inputs=[_input(dist, [n for n, _ in shape])],
        init_inputs=["scan_dim"],
        spec={"op": op, "dim": dim, "ndim": ndim, "distribution": dist},
    )


_BUILDERS: dict[str, Callable[[random.Random], _Parts]] = {
    "elementwise": _elementwise,
    "reduction": _reduction,
    "softmax": _softmax,
    "normalization": _normalization,
    "matmul": _matmul,
    "pooling": _pooling,
    "loss": _loss,
    "cumulative": _cumulative,
}


def _check_categories(categories: list[str] | None) -> list[str]:
    chosen = list(CATEGORIES) if categories is None else list(categories)
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown or not chosen:
        raise ValueError(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"valid: {', '.join(CATEGORIES)}"
        )
    return chosen


def generate_problems(n: int, seed: int = 0, categories: list[str] | None = None) -> list[GeneratedProblem]:
    """n distinct problems, categories taken in turn; the same (n, seed, categories) gives the same list.

    Problem i depends only on (seed, i, its category), so a longer run extends a shorter one.
    """
    chosen = _check_categories(categories)
    seen: set[str] = set()
    out = []
    for i in range(n):
        category = chosen[i % len(chosen)]
        for attempt in range(1000):
            rng = random.Random(f"{seed}/{i}/{category}/{attempt}")
            parts = _BUILDERS[category](rng)
            source = _render(parts)
            floor = scaled_floor(dict(parts.constants), parts.min_sizes)
            fits = floor <= (MATMUL_FLOOR_LIMIT if category == "matmul" else FLOOR_LIMIT)
            if fits and source not in seen:
                break
        else:
            raise RuntimeError(f"no new {category} problem after 1000 draws")
        seen.add(source)
        spec = {
            "category": category,
            "constants": dict(parts.constants),
            "init_args": parts.init_args,
            "init_body": parts.init_body,
            "forward_args": parts.forward_args,
            **parts.spec,
        }
        out.append(GeneratedProblem(f"{parts.stem}_{i:04d}", category, source, spec))
    return out


def write_problems(problems: list[GeneratedProblem], out_dir: str | Path) -> Path:
    """DIR/<category>/<name>.py (a layout sandbox.problem.load_problems reads) plus DIR/specs.jsonl."""
    root = Path(out_dir)
    for p in problems:
        (root / p.category).mkdir(parents=True, exist_ok=True)
        (root / p.category / f"{p.name}.py").write_text(p.source)
    with open(root / "specs.jsonl", "w") as f:
        for p in problems:
            f.write(json.dumps({k: v for k, v in asdict(p).items() if k != "source"}) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate procedural KernelBench-format problems.")
    ap.add_argument("--n", type=int, required=True, help="number of problems")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--categories", default=None, help=f"comma-separated subset of: {', '.join(CATEGORIES)}")
    args = ap.parse_args(argv)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    try:
        problems = generate_problems(args.n, args.seed, cats)
    except ValueError as e:
        ap.error(str(e))
    root = write_problems(problems, args.out)
    print(f"wrote {len(problems)} problems to {root} (specs in {root / 'specs.jsonl'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
