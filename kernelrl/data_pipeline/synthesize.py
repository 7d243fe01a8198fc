"""Teacher-free Triton answers for generated problems: a short design note plus one ```python block.

Why: SFT needs correct (problem, reasoning, kernel) triples before RL can find positive rewards, and for
procedural problems the spec says exactly what to compute, so per-category templates write them without a
teacher model. Templates are shape-generic (masks everywhere, sizes read from the tensors), fuse elementwise
epilogues into the main kernel, and keep program counts low (2-D tiles of up to 4096 elements) so the
answers also verify quickly under the CPU Triton interpreter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kernelrl.data_pipeline.generate import GeneratedProblem, torch_op

TILE = 4096  # elements per program tile in row-wise kernels

# ---------------------------------------------------------------- fused elementwise ops

_TRITON_OPS = {
    "relu": "{x} = tl.maximum({x}, 0.0)",
    "leaky_relu": "{x} = tl.where({x} > 0, {x}, {x} * {slope})",
    "gelu": "{x} = 0.5 * {x} * (1.0 + tl.erf({x} * 0.7071067811865476))",
    "gelu_tanh": "{x} = 0.5 * {x} * (1.0 + _tanh(0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x})))",
    "silu": "{x} = {x} * tl.sigmoid({x})",
    "sigmoid": "{x} = tl.sigmoid({x})",
    "tanh": "{x} = _tanh({x})",
    "elu": "{x} = tl.where({x} > 0, {x}, {alpha} * (tl.exp(tl.minimum({x}, 0.0)) - 1.0))",
    "softplus": "{x} = _softplus({x})",
    "mish": "{x} = {x} * _tanh(_softplus({x}))",
    "hardtanh": "{x} = tl.minimum(tl.maximum({x}, {min}), {max})",
    "clamp": "{x} = tl.minimum(tl.maximum({x}, {min}), {max})",
    "hardsigmoid": "{x} = tl.minimum(tl.maximum({x} + 3.0, 0.0), 6.0) / 6.0",
    "hardswish": "{x} = {x} * tl.minimum(tl.maximum({x} + 3.0, 0.0), 6.0) / 6.0",
    "relu6": "{x} = tl.minimum(tl.maximum({x}, 0.0), 6.0)",
    "scale": "{x} = {x} * {value}",
    "shift": "{x} = {x} + {value}",
    "square": "{x} = {x} * {x}",
    "abs": "{x} = tl.abs({x})",
    "add_input": "{x} = {x} + y",
    "mul_input": "{x} = {x} * y",
    "sub_input": "{x} = {x} - y",
    "add_bias": "{x} = {x} + {bias}",
    "mul_weight": "{x} = {x} * {weight}",
}
PARAM_OPS = {"add_bias": "bias", "mul_weight": "weight"}  # op -> the Model attribute holding the parameter

_HELPERS = {
    "_tanh": """@triton.jit
def _tanh(x):
    # exp of -2|x| never overflows, so large |x| saturates cleanly to +-1.
    t = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - t) / (1.0 + t)
    return tl.where(x >= 0, y, -y)
""",
    "_softplus": """@triton.jit
def _softplus(x):
    # PyTorch's threshold: above 20, softplus(x) == x in fp32.
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))
""",
}


def _op_lines(ops: list[dict[str, Any]], x: str, params: dict[str, str] | None = None) -> list[str]:
    """Triton statements applying the op chain to variable `x`; `params` names the loaded parameters."""
    params = params or {}
    out = []
    for op in ops:
        args = {k: repr(v) for k, v in op.items() if k != "op"}
        out.append(_TRITON_OPS[op["op"]].format(x=x, **args, **params))
    return out


def _helpers(ops: list[dict[str, Any]]) -> list[str]:
    names = {o["op"] for o in ops}
    need = []
    if names & {"softplus", "mish"}:
        need.append("_softplus")
    if names & {"tanh", "gelu_tanh", "mish"}:
        need.append("_tanh")
    return [_HELPERS[n] for n in sorted(need)]


def _describe_ops(ops: list[dict[str, Any]]) -> str:
    return "; ".join(f"x = {torch_op(o)}" for o in ops)


# ---------------------------------------------------------------- assembling the answer


def _indent(lines: list[str], n: int) -> list[str]:
    return [(" " * n + line) if line else "" for line in lines]


def _call(head: str, args: list[str], suffix: str = "", indent: int = 8, width: int = 100) -> list[str]:
    """`head(args)suffix` on one line when it fits, else the arguments packed into indented lines."""
    one = f"{head}({', '.join(args)}){suffix}"
    if indent + len(one) <= width:
        return [one]
    lines = [""]
    for a in args:
        if lines[-1] and indent + 4 + len(lines[-1]) + len(a) + 2 > width:
            lines.append("")
        lines[-1] += f"{a}, "
    return [f"{head}(", *(f"    {line.rstrip(' ')}" for line in lines), f"){suffix}"]


def _module(
    spec: dict[str, Any],
    kernels: list[str],
    forward: list[str],
    init_body: list[str] | None = None,
    imports: tuple[str, ...] = (),
) -> str:
    """The answer file: imports, helper and main kernels, then ModelNew with the reference's constructor.

    The constructor body is the reference's own (same parameters, created in the same order from the same
    seeded RNG), unless a category supplies a simpler one that creates no parameters.
    """
    body = spec["init_body"] if init_body is None else init_body
    head = [*(f"import {m}" for m in imports), *([""] if imports else [])]
    head += ["import torch", "import torch.nn as nn", "import triton", "import triton.language as tl"]
    cls = [
        "class ModelNew(nn.Module):",
        f"    def __init__({', '.join(['self', *spec['init_args']])}):",
        "        super().__init__()",
        *_indent(body, 8),
        "",
        f"    def forward({', '.join(['self', *spec['forward_args']])}):",
        *_indent(forward, 8),
    ]
    sections = ["\n".join(head), *(k.strip("\n") for k in kernels), "\n".join(cls)]
    return "\n\n\n".join(sections) + "\n"


def _fmt(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else (f"{n / 1e3:.0f}K" if n >= 10_000 else str(n))


# ---------------------------------------------------------------- elementwise


def _elementwise(spec: dict[str, Any]) -> tuple[str, str]:
    ops, fp16 = spec["ops"], spec["dtype"] == "float16"
    has_y = "y" in spec["inputs"]
    params = [PARAM_OPS[o["op"]] for o in ops if o["op"] in PARAM_OPS]
    channel = spec.get("broadcast") == "channel"
    up = ".to(tl.float32)" if fp16 else ""
    sig = ["x_ptr"] + (["y_ptr"] if has_y else []) + [f"{p}_ptr" for p in params] + ["out_ptr", "n_elements"]
    if params:
        sig += ["inner", "n_param"] if channel else ["n_param"]
    body = [
        "pid = tl.program_id(axis=0)",
        "offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)",
        "mask = offsets < n_elements",
        *(["# fp16 in memory, fp32 in registers; the store converts back."] if fp16 else []),
        f"x = tl.load(x_ptr + offsets, mask=mask, other=0.0){up}",
    ]
    if has_y:
        body.append(f"y = tl.load(y_ptr + offsets, mask=mask, other=0.0){up}")
    if params:
        idx = "(offsets // inner) % n_param" if channel else "offsets % n_param"
        where = "one value per channel" if channel else "one value per position of the last dim"
        body += [f"# The parameter broadcasts with {where}.", f"param_idx = {idx}"]
        body += [f"{p} = tl.load({p}_ptr + param_idx, mask=mask, other=0.0)" for p in params]
    for op, line in zip(ops, _op_lines(ops, "x", {p: p for p in params}), strict=True):
        body += [f"# x = {torch_op(op)}", line]  # each step of the chain beside the op it replaces
    body.append("tl.store(out_ptr + offsets, x, mask=mask)")
    kernel = _kernel(
        "fused_elementwise_kernel",
        ", ".join([*sig, "BLOCK_SIZE: tl.constexpr"]),
        "One program per BLOCK_SIZE contiguous elements; the whole chain stays in registers.",
        body,
    )
    launch = ["x"] + (["y"] if has_y else []) + [f"self.{p}" for p in params] + ["out", "n_elements"]
    forward = ["x = x.contiguous()"] + (["y = y.contiguous()"] if has_y else [])
    forward += ["out = torch.empty_like(x)", "n_elements = x.numel()"]
    if params:
        forward.append(f"n_param = self.{params[0]}.numel()")
        if channel:
            forward.append("inner = x.numel() // (x.shape[0] * x.shape[1])  # height * width")
            launch += ["inner", "n_param"]
        else:
            launch += ["n_param"]
    forward += [
        "BLOCK_SIZE = 1024",
        "grid = (triton.cdiv(n_elements, BLOCK_SIZE),)",
        *_call("fused_elementwise_kernel[grid]", [*launch, "BLOCK_SIZE=BLOCK_SIZE"]),
        "return out",
    ]
    # One sentence of the same shape for every chain: the broadcast, fp16 and tanh details are comments in
    # the code, where they apply, so a small model learns one place where the reasoning ends.
    n = math.prod(spec["constants"].values())
    reasoning = (
        f"Elementwise chain over {_fmt(n)} {spec['dtype']} elements: {_describe_ops(ops)}. Memory-bound, so one "
        "fused kernel reads each input once and writes the output once; a 1-D grid of 1024-element blocks "
        "with a tail mask covers any size."
    )
    return reasoning, _module(spec, [*_helpers(ops), kernel], forward)


# ---------------------------------------------------------------- row-wise layouts


class _Layout:
    """How a kernel walks a reduced axis: `rows` when it is the last (contiguous) dim, `strided` otherwise.

    rows: x is (n_rows, n_cols); a program owns BLOCK_M rows and streams BLOCK_N-wide column chunks.
    strided: x is (outer, R, inner); a program owns BLOCK_J of the outer*inner positions and streams
    BLOCK_R-long chunks of the reduced axis, so neighbouring lanes read neighbouring addresses.
    """

    def __init__(self, strided: bool) -> None:
        self.strided = strided
        self.axis = 0 if strided else 1  # the tile axis that runs along the reduced dim
        if strided:
            self.args = "R, inner, n_out, BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr"
            self.tile, self.vec, self.bc = "[BLOCK_R, BLOCK_J]", "[BLOCK_J]", "[None, :]"
            self.out, self.out_mask = "j", "j_mask"
            self.head = [
                "j = tl.program_id(axis=0) * BLOCK_J + tl.arange(0, BLOCK_J)",
                "j_mask = j < n_out",
                "base = (j // inner) * R * inner + j % inner",
            ]
            self.lane = "tl.arange(0, BLOCK_R)[:, None] == BLOCK_R - 1"
        else:
            self.args = "n_rows, n_cols, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr"
            self.tile, self.vec, self.bc = "[BLOCK_M, BLOCK_N]", "[BLOCK_M]", "[:, None]"
            self.out, self.out_mask = "rows", "row_mask"
            self.head = [
                "rows = tl.program_id(axis=0) * BLOCK_M + tl.arange(0, BLOCK_M)",
                "row_mask = rows < n_rows",
            ]
            self.lane = "tl.arange(0, BLOCK_N)[None, :] == BLOCK_N - 1"

    def loop(self, reverse: bool = False) -> list[str]:
        """The chunk loop header plus the lines defining `mask` and `ptrs` (element offsets) of the chunk."""
        if self.strided:
            idx = "R - 1 - (r0 + tl.arange(0, BLOCK_R))" if reverse else "r0 + tl.arange(0, BLOCK_R)"
            bound = "r[:, None] >= 0" if reverse else "r[:, None] < R"
            return [
                "for r0 in range(0, R, BLOCK_R):",
                f"    r = {idx}",
                f"    mask = ({bound}) & j_mask[None, :]",
                "    ptrs = base[None, :] + r[:, None] * inner",
            ]
        idx = "n_cols - 1 - (c0 + tl.arange(0, BLOCK_N))" if reverse else "c0 + tl.arange(0, BLOCK_N)"
        bound = "cols[None, :] >= 0" if reverse else "cols[None, :] < n_cols"
        return [
            "for c0 in range(0, n_cols, BLOCK_N):",
            f"    cols = {idx}",
            f"    mask = row_mask[:, None] & ({bound})",
            "    ptrs = rows[:, None] * n_cols + cols[None, :]",
        ]

    @property
    def length(self) -> str:
        return "R" if self.strided else "n_cols"

    def host(self, kernel: str, tensors: str, extra: str = "") -> list[str]:
        """Host lines computing the view sizes and blocks, then the launch (strided: after `d` is set)."""
        extra = f", {extra}" if extra else ""
        if self.strided:
            return [
                "R = x.shape[d]",
                "inner = math.prod(x.shape[d + 1 :])",
                "n_out = x.numel() // R",
                "BLOCK_J = min(triton.next_power_of_2(n_out), 256)",
                f"BLOCK_R = min(triton.next_power_of_2(R), max(1, {TILE} // BLOCK_J))",
                "grid = (triton.cdiv(n_out, BLOCK_J),)",
                *_call(
                    f"{kernel}[grid]",
                    f"{tensors}, R, inner, n_out{extra}, BLOCK_R=BLOCK_R, BLOCK_J=BLOCK_J".split(", "),
                ),
            ]
        return [
            "n_cols = x.shape[-1]",
            "n_rows = x.numel() // n_cols",
            f"BLOCK_N = min(triton.next_power_of_2(n_cols), {TILE})",
            f"BLOCK_M = min(triton.next_power_of_2(n_rows), max(1, {TILE} // BLOCK_N))",
            "grid = (triton.cdiv(n_rows, BLOCK_M),)",
            *_call(
                f"{kernel}[grid]",
                f"{tensors}, n_rows, n_cols{extra}, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N".split(", "),
            ),
        ]

    def explain(self) -> str:
        if self.strided:
            return (
                "The reduced axis is not the innermost one, so I view the input as (outer, R, inner) and give each "
                "program up to 256 of the outer*inner output positions, streaming the reduced axis in chunks; "
                "neighbouring lanes then read neighbouring addresses (coalesced) and no transpose is needed."
            )
        return (
            "The reduced axis is the contiguous last one, so each program owns a block of rows and streams them in "
            f"column chunks; tiles hold up to {TILE} elements, so short rows are packed several per program "
            "instead of leaving most lanes idle."
        )


def _online_lse(lay: _Layout, scale: float | None) -> list[str]:
    """Pass computing per-slice max `row_max` and sum of exp(x - max) `row_sum` with the online recurrence."""
    scaled = "x" if scale is None else f"x * {scale!r}"
    return [
        f'm = tl.full({lay.tile}, float("-inf"), dtype=tl.float32)',
        f"s = tl.zeros({lay.tile}, dtype=tl.float32)",
        *lay.loop(),
        "    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)",
        f'    x = tl.where(mask, {scaled}, float("-inf"))',
        "    m_new = tl.maximum(m, x)",
        "    # Lanes that have only seen padding keep m_new = -inf; shift them by 0 to avoid inf - inf.",
        '    shift = tl.where(m_new == float("-inf"), 0.0, m_new)',
        "    s = s * tl.exp(m - shift) + tl.exp(x - shift)",
        "    m = m_new",
        f"row_max = tl.max(m, axis={lay.axis})",
        f"row_sum = tl.sum(s * tl.exp(m - row_max{lay.bc}), axis={lay.axis})",
    ]


def _kernel(name: str, args: str, comment: str, body: list[str]) -> str:
    head = _call(f"def {name}", args.split(", "), ":", indent=0)
    return "\n".join(["@triton.jit", *head, f"    # {comment}", *_indent(body, 4)])


def _is_last(spec: dict[str, Any]) -> bool:
    return spec["dim"] % spec["ndim"] == spec["ndim"] - 1


def _dim(lay: _Layout) -> list[str]:
    return ["d = self.dim % x.dim()"] if lay.strided else []


def _out_shape(keepdim: bool) -> str:
    return "x.shape[:d] + (1,) + x.shape[d + 1 :]" if keepdim else "x.shape[:d] + x.shape[d + 1 :]"


# ---------------------------------------------------------------- reduction

_REDUCE = {  # identity (initial and padding value), lane-wise accumulate, final cross-lane reduce
    "sum": ("0.0", "acc += x", "tl.sum(acc, axis={a})"),
    "mean": ("0.0", "acc += x", "tl.sum(acc, axis={a}) / {n}"),
    "max": ('float("-inf")', "acc = tl.maximum(acc, x)", "tl.max(acc, axis={a})"),
    "min": ('float("inf")', "acc = tl.minimum(acc, x)", "tl.min(acc, axis={a})"),
    "l2norm": ("0.0", "acc += x * x", "tl.sqrt(tl.sum(acc, axis={a}))"),
}


def _reduction(spec: dict[str, Any]) -> tuple[str, str]:
    op = spec["op"]
    lay = _Layout(strided=not _is_last(spec))
    name = f"{op}_{'strided' if lay.strided else 'rows'}_kernel"
    if op == "logsumexp":
        body = [*lay.head, *_online_lse(lay, None), "result = row_max + tl.log(row_sum)"]
        note = "online logsumexp: running max and rescaled sum of exponentials, one pass over the input"
    else:
        init, acc, fin = _REDUCE[op]
        body = [
            *lay.head,
            f"acc = tl.zeros({lay.tile}, dtype=tl.float32)"
            if init == "0.0"
            else f"acc = tl.full({lay.tile}, {init}, dtype=tl.float32)",
            *lay.loop(),
            f"    x = tl.load(x_ptr + ptrs, mask=mask, other={init})",
            f"    {acc}",
            f"result = {fin.format(a=lay.axis, n=lay.length)}",
        ]
        note = f"{op} over the reduced axis, accumulated lane-wise in fp32 and combined once at the end"
    body.append(f"tl.store(out_ptr + {lay.out}, result, mask={lay.out_mask})")
    kernel = _kernel(name, f"x_ptr, out_ptr, {lay.args}", note, body)
    forward = [
        "x = x.contiguous()",
        "d = self.dim % x.dim()",
        f"out = torch.empty({_out_shape(spec['keepdim'])}, dtype=x.dtype, device=x.device)",
        *lay.host(name, "x, out"),
        "return out",
    ]
    n = math.prod(v for k, v in spec["constants"].items() if k != "reduce_dim")
    what = {
        "sum": "a sum",
        "mean": "a mean (sum, then one division by the axis length)",
        "max": "a max (padding lanes load -inf so they never win)",
        "min": "a min (padding lanes load +inf so they never win)",
        "l2norm": "an L2 norm (sum of squares, square root at the end)",
        "logsumexp": "a logsumexp, computed with a running max so exp never overflows (inputs can be large)",
    }[op]
    reasoning = (
        f"This is {what} over dim {spec['dim']} of a {spec['ndim']}-D tensor of {_fmt(n)} elements: every input "
        "is read once and each output needs a whole slice, so the kernel is memory-bound and should read the "
        f"input exactly once with no intermediate tensors. {lay.explain()} Accumulating into a full tile of "
        "lane-wise partials and reducing it once at the end keeps the inner loop free of cross-lane work. "
        f"Masks cover ragged tails, the output is allocated {'with' if spec['keepdim'] else 'without'} the "
        "reduced dim as the reference returns it, and sizes come from the tensor, never from the file."
    )
    return reasoning, _module(spec, [kernel], forward, imports=("math",) if lay.strided else ())


# ---------------------------------------------------------------- softmax


def _softmax(spec: dict[str, Any]) -> tuple[str, str]:
    op, scale = spec["op"], spec.get("scale")
    lay = _Layout(strided=not _is_last(spec))
    name = f"{op}_{'strided' if lay.strided else 'rows'}_kernel"
    scaled = "x" if scale is None else f"x * {scale!r}"
    if op == "softmax":
        final = ["inv_sum = 1.0 / row_sum", f"    y = tl.exp({scaled} - row_max{lay.bc}) * inv_sum{lay.bc}"]
    else:
        final = [
            "log_sum = tl.log(row_sum)",
            f"    y = {scaled} - row_max{lay.bc} - log_sum{lay.bc}",
        ]
    body = [
        *lay.head,
        "# Pass 1: per-slice max and sum of exp(x - max), online over the chunks.",
        *_online_lse(lay, scale),
        "# Pass 2: write the normalised values.",
        final[0],
        *lay.loop(),
        "    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)",
        final[1],
        "    tl.store(out_ptr + ptrs, y, mask=mask)",
    ]
    kernel = _kernel(name, f"x_ptr, out_ptr, {lay.args}", f"{op} in two passes over each slice", body)
    forward = [
        "x = x.contiguous()",
        "out = torch.empty_like(x)",
        *_dim(lay),
        *lay.host(name, "x, out"),
        "return out",
    ]
    n = math.prod(v for k, v in spec["constants"].items() if k != "softmax_dim")
    reasoning = (
        f"{op} over dim {spec['dim']} of a {spec['ndim']}-D tensor ({_fmt(n)} elements) is memory-bound: the "
        "goal is the fewest passes over the data with no intermediate tensors. Each slice needs its max and "
        "its sum of exponentials before any output can be written, so pass 1 streams the slice once with the "
        "online recurrence (a per-lane running max, and the running sum rescaled by exp(old_max - new_max) "
        "whenever the max grows), then pass 2 re-reads it and writes the result. Subtracting the max keeps exp "
        f"in range for any input scale. {lay.explain()}"
    )
    if op == "log_softmax":
        reasoning += " log_softmax is written as x - max - log(sum) directly, never as log(softmax), which would lose precision."
    if scale is not None:
        reasoning += (
            f" The input scale {scale!r} is fused into both loads; padding lanes are set to -inf after scaling "
            "so a negative scale cannot turn them into +inf."
        )
    return reasoning, _module(spec, [kernel], forward, imports=("math",) if lay.strided else ())


# ---------------------------------------------------------------- normalization


def _normalization(spec: dict[str, Any]) -> tuple[str, str]:
    norm, ops, affine = spec["norm"], spec["ops"], spec["affine"]
    lay = _Layout(strided=False)
    name = f"{norm}_kernel"
    load = ["    x = tl.load(x_ptr + ptrs, mask=mask, other=0.0)"]
    stats: list[str]
    if norm == "layer_norm":
        stats = [
            "# Pass 1: mean.",
            f"acc = tl.zeros({lay.tile}, dtype=tl.float32)",
            *lay.loop(),
            *load,
            "    acc += x",
            "mean = tl.sum(acc, axis=1) / n_cols",
            "# Pass 2: biased variance of the centred values (no E[x^2] - mean^2 cancellation).",
            f"acc = tl.zeros({lay.tile}, dtype=tl.float32)",
            *lay.loop(),
            *load,
            "    diff = tl.where(mask, x - mean[:, None], 0.0)",
            "    acc += diff * diff",
            "rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / n_cols + eps)",
        ]
        y = "    y = (x - mean[:, None]) * rstd[:, None]"
        params = ["w_ptr", "b_ptr"] if affine else []
        affine_lines = [
            "    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0)",
            "    b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0)",
            "    y = y * w[None, :] + b[None, :]",
        ]
        launch_params = ["self.norm.weight", "self.norm.bias"] if affine else []
        eps_arg = "self.norm.eps"
    else:
        stats = [
            "# Pass 1: sum of squares.",
            f"acc = tl.zeros({lay.tile}, dtype=tl.float32)",
            *lay.loop(),
            *load,
            "    acc += x * x",
        ]
        if norm == "rms_norm":
            stats.append("rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / n_cols + eps)")
            y = "    y = x * rstd[:, None]"
            params = ["w_ptr"]
            affine_lines = [
                "    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0)",
                "    y = y * w[None, :]",
            ]
            launch_params = ["self.weight"]
        else:
            stats.append("denom = tl.maximum(tl.sqrt(tl.sum(acc, axis=1)), eps)")
            y = "    y = x / denom[:, None]"
            params, affine_lines, launch_params = [], [], []
        eps_arg = "self.eps"
    body = [
        *lay.head,
        *stats,
        "# Last pass: normalise"
        + (", apply the affine parameters" if params else "")
        + (", the fused epilogue" if ops else "")
        + " and store.",
        *lay.loop(),
        *load,
        y,
        *(affine_lines if params else []),
        *_indent(_op_lines(ops, "y"), 4),
        "    tl.store(out_ptr + ptrs, y, mask=mask)",
    ]
    args = ", ".join(
        ["x_ptr", *params, "out_ptr", "n_rows, n_cols, eps, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr"]
    )
    kernel = _kernel(name, args, f"{norm} over the last dim; each program owns BLOCK_M rows", body)
    forward = [
        "x = x.contiguous()",
        "out = torch.empty_like(x)",
        *lay.host(name, ", ".join(["x", *launch_params, "out"]), eps_arg),
        "return out",
    ]
    n = math.prod(v for k, v in spec["constants"].items() if isinstance(v, int))
    hidden = spec["constants"].get("hidden")
    what = {
        "layer_norm": "LayerNorm (mean, biased variance, then (x - mean) * rstd"
        + (" * weight + bias)" if affine else ")"),
        "rms_norm": "RMSNorm (x * rsqrt(mean(x^2) + eps) * weight)",
        "l2_normalize": "L2 normalisation (x / max(||x||, eps))",
    }[norm]
    reasoning = (
        f"{what} over rows of {hidden} elements ({_fmt(n)} in all) is memory-bound. Each row needs its "
        "statistics before any output can be written, so the kernel makes a statistics pass"
        f"{'es' if norm == 'layer_norm' else ''} and a final normalising pass over the row in chunks of up to "
        f"{TILE}, in fp32; for rows that fit one chunk the later passes hit cache. {lay.explain()} "
        f"eps ({spec['eps']}) and the parameters are read from the module, so they match the reference exactly."
    )
    if norm == "layer_norm":
        reasoning += (
            " The variance is computed from centred values, which avoids the cancellation of E[x^2] - mean^2."
        )
    if ops:
        reasoning += f" The epilogue ({_describe_ops(ops)}) is fused into the final store instead of running as separate passes."
    helpers = _helpers(ops)
    return reasoning, _module(spec, [*helpers, kernel], forward)


# ---------------------------------------------------------------- matmul


def _matmul(spec: dict[str, Any]) -> tuple[str, str]:
    form, ops = spec["form"], spec["ops"]
    lin_bias = spec.get("linear_bias", False)
    params = [PARAM_OPS[o["op"]] for o in ops if o["op"] in PARAM_OPS]
    batched = form == "bmm"
    sig = ["a_ptr", "b_ptr"] + (["lin_bias_ptr"] if lin_bias else []) + [f"{p}_ptr" for p in params]
    sig += ["c_ptr", "M", "N", "K"]
    strides = ["stride_am", "stride_ak", "stride_bk", "stride_bn", "stride_cm", "stride_cn"]
    if batched:
        strides = ["stride_ab", *strides[:2], "stride_bb", *strides[2:4], "stride_cb", *strides[4:]]
    sig += strides + ["BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "BLOCK_K: tl.constexpr"]
    body = ["pid_m = tl.program_id(axis=0)", "pid_n = tl.program_id(axis=1)"]
    if batched:
        body += [
            "pid_b = tl.program_id(axis=2)",
            "a_ptr += pid_b * stride_ab",
            "b_ptr += pid_b * stride_bb",
            "c_ptr += pid_b * stride_cb",
        ]
    body += [
        "offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)",
        "offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)",
        "offs_k = tl.arange(0, BLOCK_K)",
        "mask_m = offs_m < M",
        "mask_n = offs_n < N",
        "acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)",
        "for k0 in range(0, K, BLOCK_K):",
        "    k = k0 + offs_k",
        "    a = tl.load(",
        "        a_ptr + offs_m[:, None] * stride_am + k[None, :] * stride_ak,",
        "        mask=mask_m[:, None] & (k[None, :] < K),",
        "        other=0.0,",
        "    )",
        "    b = tl.load(",
        "        b_ptr + k[:, None] * stride_bk + offs_n[None, :] * stride_bn,",
        "        mask=(k[:, None] < K) & mask_n[None, :],",
        "        other=0.0,",
        "    )",
        "    # ieee: true fp32 products (TF32 would miss the fp32 tolerance).",
        '    acc += tl.dot(a, b, input_precision="ieee")',
    ]
    if lin_bias or ops:
        body.append("# Fused epilogue on the accumulator tile, before the single store.")
    if lin_bias:
        body += [
            "lin_bias = tl.load(lin_bias_ptr + offs_n, mask=mask_n, other=0.0)",
            "acc = acc + lin_bias[None, :]",
        ]
    for p in params:
        body.append(f"{p} = tl.load({p}_ptr + offs_n, mask=mask_n, other=0.0)")
    body += _op_lines(ops, "acc", {p: f"{p}[None, :]" for p in params})
    body += [
        "tl.store(",
        "    c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn,",
        "    acc,",
        "    mask=mask_m[:, None] & mask_n[None, :],",
        ")",
    ]
    kernel = _kernel(
        "matmul_epilogue_kernel",
        ", ".join(sig),
        "One program computes a BLOCK_M x BLOCK_N tile of C"
        + (" for one batch" if batched else "")
        + ", marching over K.",
        body,
    )
    if form == "linear":
        forward = [
            "x = x.contiguous()",
            "w = self.linear.weight  # (N, K): read as B = W^T through its strides, no transpose copy",
            "M, K = x.shape",
            "N = w.shape[0]",
            "c = torch.empty((M, N), dtype=x.dtype, device=x.device)",
        ]
        a, b = "x", "w"
        stride_args = ["x.stride(0), x.stride(1)", "w.stride(1), w.stride(0)", "c.stride(0), c.stride(1)"]
    elif batched:
        forward = [
            "batch, M, K = a.shape",
            "N = b.shape[2]",
            "c = torch.empty((batch, M, N), dtype=a.dtype, device=a.device)",
        ]
        a, b = "a", "b"
        stride_args = [f"{t}.stride(0), {t}.stride(1), {t}.stride(2)" for t in "abc"]
    else:
        forward = [
            "M, K = a.shape",
            "N = b.shape[1]",
            "c = torch.empty((M, N), dtype=a.dtype, device=a.device)",
        ]
        a, b = "a", "b"
        stride_args = [f"{t}.stride(0), {t}.stride(1)" for t in "abc"]
    tensors = [a, b] + (["self.linear.bias"] if lin_bias else []) + [f"self.{p}" for p in params] + ["c"]
    forward += [
        "BLOCK_M, BLOCK_N, BLOCK_K = 64, 64, 32",
        "grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(N, BLOCK_N)" + (", batch)" if batched else ")"),
        "matmul_epilogue_kernel[grid](",
        f"    {', '.join(tensors)},",
        "    M, N, K,",
        *(f"    {group}," for group in stride_args),
        "    BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,",
        ")",
        "return c",
    ]
    c = spec["constants"]
    m, k, n = (
        c.get("M") or c.get("batch_size"),
        c.get("K") or c.get("in_features"),
        c.get("N") or c.get("out_features"),
    )
    batch = f"{c['batch']} x " if batched else ""
    reasoning = (
        f"A {batch}{m} x {k} x {n} GEMM does about {k} multiply-adds per output element against one read of each "
        "operand tile, so it is compute-bound and the work is in the tiling: each program owns a 64 x 64 output "
        'tile and marches over K in 32-wide steps, accumulating tl.dot in fp32 with input_precision="ieee" '
        "because TF32 would not meet the fp32 tolerance. M, N and K masks (other=0 on the K tail) make any "
        "shape exact, and strides are passed rather than assumed."
    )
    if form == "linear":
        reasoning += (
            " nn.Linear stores W as (out, in); I read it as W^T through its strides instead of copying a transpose, "
            "and keep the module itself so its seeded initialisation matches the reference."
        )
    if batched:
        reasoning += " The batch is a third grid axis with its own strides."
    if lin_bias or ops:
        parts = (["the Linear bias"] if lin_bias else []) + ([_describe_ops(ops)] if ops else [])
        reasoning += (
            f" The epilogue ({'; then '.join(parts)}) is applied to the accumulator tile in registers before the "
            "single store, saving a full read and write of the output per op."
        )
    return reasoning, _module(spec, [*_helpers(ops), kernel], forward)


# ---------------------------------------------------------------- pooling


def _pooling(spec: dict[str, Any]) -> tuple[str, str]:
    kind, nd, include_pad = spec["pool"], spec["nd"], spec["count_include_pad"]
    pad_value = 'float("-inf")' if kind == "max" else "0.0"
    init = (
        'tl.full([BLOCK_P, BLOCK_Q], float("-inf"), dtype=tl.float32)'
        if kind == "max"
        else "tl.zeros([BLOCK_P, BLOCK_Q], dtype=tl.float32)"
    )
    combine = "acc = tl.maximum(acc, v)" if kind == "max" else "acc += v"
    count = kind == "avg" and not include_pad
    name = f"{kind}_pool{nd}d_kernel"
    body = [
        "planes = tl.program_id(axis=0) * BLOCK_P + tl.arange(0, BLOCK_P)",
        "q = tl.program_id(axis=1) * BLOCK_Q + tl.arange(0, BLOCK_Q)",
    ]
    if nd == 1:
        body += [
            "out_mask = (planes[:, None] < n_planes) & (q[None, :] < L_out)",
            f"acc = {init}",
            *(["count = tl.zeros([BLOCK_Q], dtype=tl.float32)"] if count else []),
            "for k in tl.static_range(KERNEL):",
            "    pos = q * stride - padding + k",
            "    valid = (pos >= 0) & (pos < L)",
            "    v = tl.load(",
            "        x_ptr + planes[:, None] * L + pos[None, :],",
            "        mask=out_mask & valid[None, :],",
            f"        other={pad_value},",
            "    )",
            f"    {combine}",
            *(["    count += valid.to(tl.float32)"] if count else []),
        ]
        store = "out_ptr + planes[:, None] * L_out + q[None, :]"
        dims = "n_planes, L, L_out"
    else:
        body += [
            "oh = q // W_out",
            "ow = q % W_out",
            "out_mask = (planes[:, None] < n_planes) & (q[None, :] < H_out * W_out)",
            f"acc = {init}",
            *(["count = tl.zeros([BLOCK_Q], dtype=tl.float32)"] if count else []),
            "for kh in tl.static_range(KERNEL):",
            "    ih = oh * stride - padding + kh",
            "    for kw in tl.static_range(KERNEL):",
            "        iw = ow * stride - padding + kw",
            "        valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)",
            "        v = tl.load(",
            "            x_ptr + planes[:, None] * (H * W) + (ih * W + iw)[None, :],",
            "            mask=out_mask & valid[None, :],",
            f"            other={pad_value},",
            "        )",
            f"        {combine}",
            *(["        count += valid.to(tl.float32)"] if count else []),
        ]
        store = "out_ptr + planes[:, None] * (H_out * W_out) + q[None, :]"
        dims = "n_planes, H, W, H_out, W_out"
    if kind == "avg":
        window = "KERNEL" if nd == 1 else "(KERNEL * KERNEL)"
        body.append("acc = acc / count[None, :]" if count else f"acc = acc / {window}")
    body.append(f"tl.store({store}, acc, mask=out_mask)")
    args = f"x_ptr, out_ptr, {dims}, stride, padding, KERNEL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr"
    kernel = _kernel(
        name,
        args,
        "Each program computes a BLOCK_P (batch*channel planes) x BLOCK_Q (output positions) tile.",
        body,
    )
    k, s, p = "self.kernel_size", "self.stride", "self.padding"
    if nd == 1:
        forward = [
            "x = x.contiguous()",
            "B, C, L = x.shape",
            f"L_out = (L + 2 * {p} - {k}) // {s} + 1",
            "out = torch.empty((B, C, L_out), dtype=x.dtype, device=x.device)",
            "n_planes, n_q = B * C, L_out",
        ]
    else:
        forward = [
            "x = x.contiguous()",
            "B, C, H, W = x.shape",
            f"H_out = (H + 2 * {p} - {k}) // {s} + 1",
            f"W_out = (W + 2 * {p} - {k}) // {s} + 1",
            "out = torch.empty((B, C, H_out, W_out), dtype=x.dtype, device=x.device)",
            "n_planes, n_q = B * C, H_out * W_out",
        ]
    forward += [
        "BLOCK_Q = min(triton.next_power_of_2(n_q), 256)",
        "BLOCK_P = min(triton.next_power_of_2(n_planes), max(1, 2048 // BLOCK_Q))",
        "grid = (triton.cdiv(n_planes, BLOCK_P), triton.cdiv(n_q, BLOCK_Q))",
        *_call(
            f"{name}[grid]",
            f"x, out, {dims}, {s}, {p}, KERNEL={k}, BLOCK_P=BLOCK_P, BLOCK_Q=BLOCK_Q".split(", "),
        ),
        "return out",
    ]
    init_body = ["self.kernel_size = kernel_size", "self.stride = stride", "self.padding = padding"]
    ks = spec["kernel_size"]
    window = f"{ks}" if nd == 1 else f"{ks}x{ks}"
    reads = (ks / spec["stride"]) ** nd
    reuse = (
        "at most once" if reads <= 1 else f"about {reads:.1f} times (overlapping windows, mostly from cache)"
    )
    reasoning = (
        f"{kind.capitalize()} pooling with a {window} window, stride {spec['stride']} and padding {spec['padding']} "
        f"reads each input element {reuse} and does one op per tap, so it is memory-bound. I flatten batch and channels into independent planes and give each program a tile "
        "of planes x output positions; the window loop is unrolled with tl.static_range because the kernel size "
        "is a compile-time constant, and each tap is one masked, vectorised load. "
    )
    if kind == "max":
        reasoning += "Out-of-bounds taps load -inf, which is how PyTorch treats max-pool padding."
    elif include_pad:
        reasoning += (
            "Padding taps load 0 and the sum is divided by the full window size (count_include_pad=True)."
        )
    else:
        reasoning += (
            "Padding taps load 0 and the sum is divided by the number of in-bounds taps, counted in the same loop "
            "(count_include_pad=False)."
        )
    reasoning += " Output sizes use PyTorch's floor formula; the module's kernel size, stride and padding are read at run time."
    return reasoning, _module(spec, [kernel], forward, init_body=init_body)


# ---------------------------------------------------------------- losses

_FINISH = """@triton.jit
def finish_kernel(partial_ptr, out_ptr, n, denom, BLOCK_SIZE: tl.constexpr):
    # Stage 2: one program adds the partial sums in a fixed order (deterministic), then applies the reduction.
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for start in range(0, n, BLOCK_SIZE):
        offs = start + tl.arange(0, BLOCK_SIZE)
        acc += tl.load(partial_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0) / denom)
"""

_LOSS_TERMS = {
    "mse": ["d = p - t", "term = d * d"],
    "l1": ["term = tl.abs(p - t)"],
    "smooth_l1": [
        "d = p - t",
        "ad = tl.abs(d)",
        "term = tl.where(ad < {beta}, 0.5 * d * d / {beta}, ad - 0.5 * {beta})",
    ],
    "huber": [
        "d = p - t",
        "ad = tl.abs(d)",
        "term = tl.where(ad <= {delta}, 0.5 * d * d, {delta} * (ad - 0.5 * {delta}))",
    ],
    "bce_with_logits": [
        "# Stable form: max(x, 0) - x * t + log(1 + exp(-|x|)); exp never sees a positive argument.",
        "term = tl.maximum(p, 0.0) - p * t + tl.log(1.0 + tl.exp(-tl.abs(p)))",
    ],
}


def _loss(spec: dict[str, Any]) -> tuple[str, str]:
    loss, mean = spec["loss"], spec["reduction"] == "mean"
    if loss == "cross_entropy":
        lay = _Layout(strided=False)
        body = [
            *lay.head,
            "targets = tl.load(targets_ptr + rows, mask=row_mask, other=0)",
            "picked = tl.zeros([BLOCK_M], dtype=tl.float32)",
            'm = tl.full([BLOCK_M, BLOCK_N], float("-inf"), dtype=tl.float32)',
            "s = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)",
            *lay.loop(),
            '    x = tl.load(x_ptr + ptrs, mask=mask, other=float("-inf"))',
            "    # The target logit is picked up in the same pass (no separate gather).",
            "    picked += tl.sum(tl.where(cols[None, :] == targets[:, None], x, 0.0), axis=1)",
            "    m_new = tl.maximum(m, x)",
            "    # Lanes that have only seen padding keep m_new = -inf; shift them by 0 to avoid inf - inf.",
            '    shift = tl.where(m_new == float("-inf"), 0.0, m_new)',
            "    s = s * tl.exp(m - shift) + tl.exp(x - shift)",
            "    m = m_new",
            "row_max = tl.max(m, axis=1)",
            "lse = row_max + tl.log(tl.sum(s * tl.exp(m - row_max[:, None]), axis=1))",
            "loss = tl.where(row_mask, lse - picked, 0.0)",
            "tl.store(partial_ptr + tl.program_id(axis=0), tl.sum(loss, axis=0))",
        ]
        kernel = _kernel(
            "cross_entropy_rows_kernel",
            "x_ptr, targets_ptr, partial_ptr, n_rows, n_cols, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr",
            "Stage 1: each program writes the summed loss logsumexp(row) - row[target] of its BLOCK_M rows.",
            body,
        )
        forward = [
            "x = logits.contiguous()",
            "targets = targets.contiguous()",
            "n_cols = x.shape[-1]",
            "n_rows = x.numel() // n_cols",
            f"BLOCK_N = min(triton.next_power_of_2(n_cols), {TILE})",
            f"BLOCK_M = min(triton.next_power_of_2(n_rows), max(1, {TILE} // BLOCK_N))",
            "n_blocks = triton.cdiv(n_rows, BLOCK_M)",
            "partials = torch.empty(n_blocks, dtype=torch.float32, device=x.device)",
            *_call(
                "cross_entropy_rows_kernel[(n_blocks,)]",
                ["x", "targets", "partials", "n_rows", "n_cols", "BLOCK_M=BLOCK_M", "BLOCK_N=BLOCK_N"],
            ),
            "out = torch.empty((), dtype=x.dtype, device=x.device)",
            f"finish_kernel[(1,)](partials, out, n_blocks, {'n_rows' if mean else '1.0'}, BLOCK_SIZE=1024)",
            "return out",
        ]
        c = spec["constants"]
        reasoning = (
            f"Cross-entropy over {c['batch_size']} x {c['num_classes']} logits is memory-bound: per row the loss is "
            "logsumexp(row) - row[target], and I never materialise softmax or log-probabilities. Stage 1 packs "
            f"several rows per program (tiles of up to {TILE} elements) and streams each row once with the online "
            "logsumexp recurrence (running max, rescaled sum of exponentials; padding lanes load -inf and are shifted "
            "by 0 to avoid inf - inf), picking up the target logit in the same pass by comparing column indices with "
            "the target, so no separate gather is needed. Each program writes one partial sum; stage 2 is a single "
            f"program that adds the partials in a fixed order (deterministic, no atomics) and "
            f"{'divides by the batch size' if mean else 'returns the sum'}, writing a 0-dim result as the reference does."
        )
        return reasoning, _module(spec, [kernel, _FINISH], forward)
    params = {k: repr(spec[k]) for k in ("beta", "delta") if k in spec}
    terms = [line.format(**params) for line in _LOSS_TERMS[loss]]
    body = [
        "pid = tl.program_id(axis=0)",
        "offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)",
        "mask = offsets < n_elements",
        "p = tl.load(p_ptr + offsets, mask=mask, other=0.0)",
        "t = tl.load(t_ptr + offsets, mask=mask, other=0.0)",
        *terms,
        "term = tl.where(mask, term, 0.0)",
        "tl.store(partial_ptr + pid, tl.sum(term, axis=0))",
    ]
    kernel = _kernel(
        f"{loss}_partial_kernel",
        "p_ptr, t_ptr, partial_ptr, n_elements, BLOCK_SIZE: tl.constexpr",
        "Stage 1: each program writes the sum of the loss terms of one block.",
        body,
    )
    forward = [
        "p = predictions.contiguous()",
        "t = targets.contiguous()",
        "n_elements = p.numel()",
        "BLOCK_SIZE = 4096",
        "n_blocks = triton.cdiv(n_elements, BLOCK_SIZE)",
        "partials = torch.empty(n_blocks, dtype=torch.float32, device=p.device)",
        f"{loss}_partial_kernel[(n_blocks,)](p, t, partials, n_elements, BLOCK_SIZE=BLOCK_SIZE)",
        "out = torch.empty((), dtype=p.dtype, device=p.device)",
        f"finish_kernel[(1,)](partials, out, n_blocks, {'n_elements' if mean else '1.0'}, BLOCK_SIZE=1024)",
        "return out",
    ]
    n = math.prod(spec["constants"].values())
    term = {
        "mse": "(p - t)^2",
        "l1": "|p - t|",
        "smooth_l1": f"the smooth-L1 term (quadratic below beta={spec.get('beta')}, linear above)",
        "huber": f"the Huber term (quadratic up to delta={spec.get('delta')}, linear beyond)",
        "bce_with_logits": "the logits-form binary cross-entropy max(x, 0) - x*t + log(1 + exp(-|x|)), which never overflows",
    }[loss]
    reasoning = (
        f"The loss reads two {_fmt(n)}-element tensors and reduces {term} to one scalar ({spec['reduction']}), so it "
        "is memory-bound and the only hard part is the global reduction. Stage 1 computes the per-element term in "
        "registers (no difference tensor is materialised) and each 4096-element block writes one partial sum; "
        "masked tail lanes are zeroed explicitly, since a padded term need not be 0. Stage 2 is a single program that "
        "adds the partials in a fixed order (deterministic, no atomics) and "
        f"{'divides by the element count' if mean else 'keeps the sum'}, writing a 0-dim tensor like the reference."
    )
    return reasoning, _module(spec, [kernel, _FINISH], forward)


# ---------------------------------------------------------------- cumulative


def _cumulative(spec: dict[str, Any]) -> tuple[str, str]:
    op = spec["op"]
    lay = _Layout(strided=not _is_last(spec))
    prod = op == "cumprod"
    reverse = op == "reverse_cumsum"
    identity = "1.0" if prod else "0.0"
    scan = (
        f"tl.cumprod(x, axis={lay.axis}) * carry{lay.bc}"
        if prod
        else f"tl.cumsum(x, axis={lay.axis}) + carry{lay.bc}"
    )
    name = f"{op}_{'strided' if lay.strided else 'rows'}_kernel"
    body = [
        *lay.head,
        f"carry = tl.full({lay.vec}, {identity}, dtype=tl.float32)",
        f"last = {lay.lane}",
        *lay.loop(reverse=reverse),
        f"    x = tl.load(x_ptr + ptrs, mask=mask, other={identity})",
        f"    y = {scan}",
        "    tl.store(out_ptr + ptrs, y, mask=mask)",
        "    # The last lane of this chunk's scan (padding is the identity) carries into the next chunk.",
        f"    carry = tl.sum(tl.where(last, y, 0.0), axis={lay.axis})",
    ]
    comment = "scan each slice chunk by chunk" + (", walking it from the end" if reverse else "")
    kernel = _kernel(name, f"x_ptr, out_ptr, {lay.args}", comment, body)
    forward = [
        "x = x.contiguous()",
        "out = torch.empty_like(x)",
        *_dim(lay),
        *lay.host(name, "x, out"),
        "return out",
    ]
    n = math.prod(v for k, v in spec["constants"].items() if k != "scan_dim")
    what = {
        "cumsum": "A cumulative sum",
        "cumprod": "A cumulative product",
        "reverse_cumsum": "A reverse cumulative sum",
    }[op]
    reasoning = (
        f"{what} along dim {spec['dim']} of a {spec['ndim']}-D tensor ({_fmt(n)} elements) reads and writes each "
        "element once, so it is memory-bound; the dependency along the scanned axis is handled with a "
        f"{'tl.cumprod' if prod else 'tl.cumsum'} inside each chunk plus a per-slice carry from one chunk to the next, "
        "so a long axis never has to fit one block and no second pass is needed. "
        f"Padding lanes load the identity ({identity}), so the last lane of each chunk's scan is exactly the running "
        f"{'product' if prod else 'total'} that seeds the next chunk. {lay.explain()}"
    )
    if reverse:
        reasoning += (
            " The reverse scan needs no flip copies: the chunk indices simply run from the end of the axis, and "
            "results are stored back to the same mirrored addresses."
        )
    return reasoning, _module(spec, [kernel], forward, imports=("math",) if lay.strided else ())


_SYNTHESIZERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "elementwise": _elementwise,
    "reduction": _reduction,
    "softmax": _softmax,
    "normalization": _normalization,
    "matmul": _matmul,
    "pooling": _pooling,
    "loss": _loss,
    "cumulative": _cumulative,
}


def synthesize(problem: GeneratedProblem) -> str:
    """A full completion for a generated problem: the design reasoning, then one ```python block."""
    reasoning, code = _SYNTHESIZERS[problem.spec["category"]](problem.spec)
    return f"{reasoning}\n\n```python\n{code}```\n"
