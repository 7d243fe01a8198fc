"""Shape variants of a problem: the same code with its sizes rewritten where the file writes them.

Correctness is checked on more than the file's own sizes so that a candidate which hard-codes them, or
assumes powers of two, fails; and under the slow Triton CPU interpreter the problem must first be scaled
down to an element budget. Variants come from rewriting the source (not from patching a loaded module), so
derived constants (`hidden = dim * 4`) and every use of a constant follow naturally.

What can change ("slots"): a module-level constant's integer expression made of literals only (`N = 2048 *
2`, `dim = 1 << 14`), each such element of a tuple or list constant (`input_shape = (8192 * 2,)`,
`layer_sizes = [1024] * 16`), chained and unpacked assignments (`height = width = 128`, `h, w = 224, 224`),
and literal sizes inside `get_inputs` (`torch.rand(batch_size, 3, 224, 224)`). An expression that names
another constant is derived and keeps its relation (`num_channels = embed_dim`, `bias_shape =
(out_channels, 1, 1)`).

Rules, in short: a slot is "size-like" when its value is > 8 (or > 2 for a batch) and its name is not
structure (kernel, stride, padding, dilation, patch, window); the others (axes, kernel sizes, strides,
small group and head counts) never change. A size keeps the divisibility the file shows: it stays a
multiple of the small constants dividing it (groups = 4 | channels = 64; kernel sizes and batch sizes are
coincidences), of a size-like divisor whose name says group or head (with the divisor's *new* value, so
`dim` follows whatever `num_heads` became), and, softly, of its power-of-two part up to 16 (below that, any
multiple of the rest). Sizes with equal values do not constrain each other (M = K = N vary
independently). A proposal the reference rejects (an assert, a shape mismatch) is replaced by another:
equal sizes moved together, one factor for all, each size's odd factor kept, one size at a time.

Scaling to the CPU budget keeps the problem's character: batch sizes shrink first (down to 2), then every
other size by one factor (a reduction axis stays the longest, a small K stays small) down to 16, then
everything down to 2, then one size at a time; each stage takes the largest sizes that fit. The budget
counts the weights: the interpreter pays for what the kernels read. Every planned variant is measured on
the meta device (nothing allocated); a problem that needs what this machine lacks (CUDA, a package) raises
`Unavailable` with a clear message. `count` is the total number of variants, variant 0 included.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import random
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

Value = int | tuple | list
Assignment = dict[str, int]  # slot key -> value

SIZE_MIN = 9  # ints below this are axes, kernel sizes, strides, groups, heads: never changed
POW2_CAP = 16  # the largest power of two kept as a divisor (1024 stays a multiple of 16, 100 of 4)
ATTEMPTS = 8  # shape proposals per perturbed variant before it is skipped: 3 plain, 2 strict, 3 single sizes
GPU_FACTORS = (0.5, 0.9)
CPU_FACTORS = (0.6, 0.9)
BATCH_FLOOR = 2  # a batch never shrinks below 2: one row would hide batch-stride bugs
SIZE_FLOOR = 16  # other sizes first shrink no further than this (or their file value), then to 2
MAX_TIMEOUT_SCALE = 8.0  # a problem further over the budget is not run on the CPU interpreter at all
OVER_FIT_SLACK = 1.25  # a problem over the budget: perturbed variants up to this times its smallest
LADDER = 4  # scaling steps per halving: the scaled variant is within 2**(1/4) per size of the budget's edge
STRUCTURE = re.compile(r"kernel|stride|padding|dilation|patch|window", re.IGNORECASE)
BATCH = re.compile(r"batch", re.IGNORECASE)
RELATION = re.compile(r"group|head", re.IGNORECASE)
FACTORIES = {"rand", "randn", "zeros", "ones", "empty", "randint", "full"}


class Unavailable(RuntimeError):
    """The problem needs what this machine lacks (a CUDA device, a package): it cannot be judged here."""


@dataclass(frozen=True)
class Variant:
    name: str  # "file", "scaled", "perturbed", "perturbed2", ...
    overrides: dict[str, int]  # slot key -> new value; {} for the file's own sizes
    source: str  # the problem source with the overrides applied
    elements: int | None = None  # inputs + weights + outputs, measured on the meta device


# ---------------------------------------------------------------- finding and rewriting sizes


@dataclass(frozen=True)
class Slot:
    """One integer expression of literals that can be rewritten: `N`, `input_shape[0]`, `get_inputs#2`."""

    key: str
    owner: str  # the constant it belongs to ("get_inputs" for literals there): names decide batch/structure
    value: int
    begin: int  # byte span in the UTF-8 source
    end: int


@dataclass(frozen=True)
class _Parsed:
    slots: dict[str, Slot]  # in file order
    constants: dict[str, Value]  # every module-level integer (or int tuple/list) constant, derived included


_INT_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}


def _evaluate(node: ast.expr, env: dict[str, Value]) -> Value | None:
    """The value of an integer expression (or a tuple/list of them) over literals and earlier constants;
    None for anything else (floats, calls, unknown names)."""
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) is int else None  # type() check: bools are not sizes
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _evaluate(node.operand, env)
        return (-v if isinstance(node.op, ast.USub) else v) if isinstance(v, int) else None
    if isinstance(node, (ast.Tuple, ast.List)):
        items: list[int] = []
        for e in node.elts:
            v = _evaluate(e.value if isinstance(e, ast.Starred) else e, env)
            if isinstance(e, ast.Starred) and isinstance(v, (tuple, list)):
                items += v
            elif isinstance(v, int) and not isinstance(e, ast.Starred):
                items.append(v)
            else:
                return None
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, env), _evaluate(node.right, env)
        if isinstance(left, int) and isinstance(right, int) and type(node.op) in _INT_OPS:
            if isinstance(node.op, (ast.Pow, ast.LShift)) and not 0 <= right <= 64:
                return None
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                return None
            value = _INT_OPS[type(node.op)](left, right)
            return value if abs(value) < 1 << 63 else None
        if isinstance(node.op, ast.Mult):  # [1024] * 16
            seq, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (tuple, list)) and isinstance(count, int) and 0 <= count <= 4096:
                return seq * count
        if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(left, (tuple, list)):
            return left + right
    return None


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _module_bindings(tree: ast.Module) -> dict[str, int]:
    """How often each module-level name is bound: a rebound name is ambiguous, so it is not a constant."""
    counts: dict[str, int] = {}

    def bind(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name)  # its body is another scope
            for d in node.decorator_list:
                visit(d)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                bind((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bind(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return counts


def _assignments(stmt: ast.stmt) -> list[tuple[list[str], ast.expr]]:
    """(target names, value) pairs of a module-level statement: `a = v`, `a: T = v`, `a = b = v`, `a, b = v, w`."""
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return [([stmt.target.id], stmt.value)]
    if not isinstance(stmt, ast.Assign):
        return []
    if all(isinstance(t, ast.Name) for t in stmt.targets):
        return [([t.id for t in stmt.targets], stmt.value)]  # type: ignore[attr-defined]
    if (
        len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Tuple)
        and isinstance(stmt.value, ast.Tuple)
        and len(stmt.targets[0].elts) == len(stmt.value.elts)
        and all(isinstance(t, ast.Name) for t in stmt.targets[0].elts)
    ):
        return [([t.id], v) for t, v in zip(stmt.targets[0].elts, stmt.value.elts, strict=True)]  # type: ignore[attr-defined]
    return []


def _final_bindings(tree: ast.Module) -> dict[str, int]:
    """For each name bound only by top-level assignments, the statement whose value it keeps: the last
    one, when nothing between the first and the last mentions it (`height = width = 2048` left dead by a
    later `height, width = 32, 32`); a name bound anywhere else (a loop, a function) is ambiguous."""
    bindings = _module_bindings(tree)
    top: dict[str, list[int]] = {}
    for index, stmt in enumerate(tree.body):
        for targets, _ in _assignments(stmt):
            for t in targets:
                top.setdefault(t, []).append(index)
    final = {}
    for name, at in top.items():
        if bindings.get(name) != len(at):
            continue
        between = (n for stmt in tree.body[at[0] + 1 : at[-1]] for n in ast.walk(stmt))
        if not any(isinstance(n, ast.Name) and n.id == name for n in between):
            final[name] = at[-1]
    return final


@functools.lru_cache(maxsize=64)
def _parse(source: str) -> _Parsed:
    tree = ast.parse(source)
    data = source.encode()
    starts = [0] + [m.end() for m in re.finditer(rb"\r\n|\r|\n", data)]

    def span(node: ast.expr) -> tuple[int, int]:
        # AST columns are UTF-8 byte offsets, so spans index the encoded text.
        return (
            starts[node.lineno - 1] + node.col_offset,
            starts[node.end_lineno - 1] + node.end_col_offset,  # type: ignore[index,operator]
        )

    slots: dict[str, Slot] = {}
    env: dict[str, Value] = {}

    def add(key: str, owner: str, node: ast.expr, value: int) -> None:
        begin, end = span(node)
        slots[key] = Slot(key, owner, value, begin, end)

    def collect(node: ast.expr, key: str, owner: str) -> None:
        """The literal-only integer expressions in value positions of a constant's expression."""
        value = _evaluate(node, env)
        if isinstance(value, int):
            if not _has_name(node):
                add(key, owner, node, value)
        elif isinstance(node, (ast.Tuple, ast.List)):
            index = 0
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    return  # later indices depend on the starred length: stop here
                collect(e, f"{key}[{index}]", owner)
                index += 1
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            seq = node.left if isinstance(node.left, (ast.Tuple, ast.List)) else node.right
            if isinstance(seq, (ast.Tuple, ast.List)):
                collect(seq, key, owner)  # [1024] * 16: the repeated literal is one slot

    final = _final_bindings(tree)
    for index, stmt in enumerate(tree.body):
        for targets, value_node in _assignments(stmt):
            if any(final.get(t) != index for t in targets):
                continue
            value = _evaluate(value_node, env)
            if value is None:
                continue
            collect(value_node, targets[0], targets[0])
            for t in targets:
                env[t] = value
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "get_inputs":
            found = [n for call in ast.walk(stmt) for n in _factory_sizes(call) if not _has_name(n)]
            found = sorted(
                (n for n in found if isinstance(_evaluate(n, {}), int)),
                key=lambda n: (n.lineno, n.col_offset),
            )
            for i, node in enumerate(
                found
            ):  # numbered in source order: get_inputs#0 is the first literal size
                add(f"get_inputs#{i}", "get_inputs", node, _evaluate(node, {}))  # type: ignore[arg-type]
    return _Parsed(slots, env)


def _factory_sizes(node: ast.AST) -> list[ast.expr]:
    """The size arguments of a `torch.rand(...)`-like call (elements of a size tuple included)."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in FACTORIES
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("torch", "th")
    ):
        return []
    args = list(node.args)
    if node.func.attr == "randint":  # randint([low,] high, size): only the size is a size
        args = args[-1:] if len(args) >= 2 else []
    elif node.func.attr == "full":  # full(size, fill_value)
        args = args[:1]
    args += [k.value for k in node.keywords if k.arg == "size"]
    out: list[ast.expr] = []
    for a in args:
        out += list(a.elts) if isinstance(a, (ast.Tuple, ast.List)) else [a]
    return [a for a in out if not isinstance(a, ast.Starred)]


def find_slots(source: str) -> dict[str, int]:
    """Every rewritable size in the source, key -> file value, in file order."""
    return {key: slot.value for key, slot in _parse(source).slots.items()}


def find_constants(source: str) -> dict[str, Value]:
    """The module-level integer (and int tuple/list) constants with their values, derived ones included."""
    return dict(_parse(source).constants)


def apply_overrides(source: str, overrides: dict[str, int]) -> str:
    """Rewrite only the named slots; every other byte of the file is kept."""
    slots = _parse(source).slots
    unknown = [key for key in overrides if key not in slots]
    if unknown:
        raise ValueError(f"not a rewritable size of this problem: {', '.join(map(repr, unknown))}")
    bad = [key for key, v in overrides.items() if type(v) is not int]
    if bad:
        raise ValueError(f"override for {bad[0]!r} must be an int, got {overrides[bad[0]]!r}")
    data = source.encode()
    for key in sorted(overrides, key=lambda k: slots[k].begin, reverse=True):
        slot = slots[key]
        data = data[: slot.begin] + str(overrides[key]).encode() + data[slot.end :]
    return data.decode()


# ---------------------------------------------------------------- measuring on the meta device


def _numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_numel(v) for v in value)
    if isinstance(value, dict):
        return sum(_numel(v) for v in value.values())
    return 0


def _meta_limitation(error: BaseException) -> bool:
    """An op that cannot run on meta (no meta kernel, data-dependent control flow), not a problem error."""
    return isinstance(error, NotImplementedError) or "meta" in str(error).lower()


def _is_cuda(device: Any) -> bool:
    if isinstance(device, int) and not isinstance(device, bool):
        return True  # .to(0) is cuda:0
    try:
        return isinstance(device, (str, torch.device)) and torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


def _recurrent_outputs(func: Any, args: tuple) -> tuple | None:
    """Output shapes of torch.lstm/gru/rnn_* (their input overloads), which meta would step through in time."""
    if len(args) != 9 or not isinstance(args[0], torch.Tensor) or not isinstance(args[2], (list, tuple)):
        return None
    x, hx, batch_first = args[0], args[1], args[8]
    h = hx[0] if isinstance(hx, (list, tuple)) else hx
    if not isinstance(h, torch.Tensor) or x.dim() != 3 or h.dim() != 3:
        return None
    directions = 2 if args[7] else 1
    out = x.new_empty((*x.shape[:2], directions * h.shape[-1]))
    if isinstance(hx, (list, tuple)):
        return (out, *(t.new_empty(t.shape) for t in hx))
    del batch_first  # the time and batch axes keep their places either way
    return out, h.new_empty(h.shape)


class _MetaMode(TorchFunctionMode):
    """Run a problem on the meta device (entered inside `torch.device("meta")`, which gives factories
    without a device meta): an explicit device, a file's device='cuda' included (noted in `cuda`), becomes
    meta too, moves between devices move nothing, and recurrent ops answer with their output shapes instead
    of decomposing through every time step (minutes on meta for a 512-step GRU)."""

    def __init__(self) -> None:
        super().__init__()
        self.cuda = False
        self.recurrent = {torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.cuda, torch.Tensor.cpu):
            self.cuda |= func is torch.Tensor.cuda
            return args[0]
        if func is torch.Tensor.to:
            rest = []
            for a in args[1:]:
                if isinstance(a, (str, torch.device)) or (type(a) is int):
                    self.cuda |= _is_cuda(a)
                else:
                    rest.append(a)
            if "device" in kwargs:
                self.cuda |= _is_cuda(kwargs.pop("device"))
            if not rest and "dtype" not in kwargs:
                return args[0]
            return func(args[0], *rest, **kwargs)
        if "device" in kwargs:  # the rest get meta from the torch.device("meta") context below this mode
            self.cuda |= _is_cuda(kwargs["device"])
            kwargs["device"] = "meta"
        if func in self.recurrent:
            fast = _recurrent_outputs(func, args)
            if fast is not None:
                return fast
        return func(*args, **kwargs)


def _load(source: str) -> types.ModuleType:
    module = types.ModuleType("kernelrl_measured_problem")
    module.__file__ = "<problem>"
    sys.modules[module.__name__] = module  # @dataclass looks its module up there
    try:
        exec(compile(source, "<problem>", "exec"), module.__dict__)  # trusted: the problem's own code
    except ModuleNotFoundError as e:
        if e.name:
            raise Unavailable(
                f"the problem imports {e.name!r}, which is not installed on this machine"
            ) from None
        raise
    finally:
        sys.modules.pop(module.__name__, None)
    return module


@dataclass(frozen=True)
class Measured:
    """What one variant of a problem reads and writes, in elements."""

    inputs: int
    weights: int  # the model's parameters and buffers
    outputs: int
    shapes: tuple[tuple[int, ...], ...]  # of the input tensors

    @property
    def elements(self) -> int:
        return self.inputs + self.weights + self.outputs


def measure(source: str, *, cuda_available: bool | None = None) -> Measured:
    """Run the problem on the meta device (nothing is allocated) and count its inputs, weights, outputs.

    The problem's own errors (a failing get_inputs, an assert on shapes in __init__ or forward, a shape
    mismatch) propagate, so a variant the reference rejects is recognised. Only an op that cannot run on
    meta falls back to counting what was measured before it (no outputs). A problem that asks for a CUDA
    device where there is none (`cuda_available`, default: this machine), or imports a missing package,
    raises `Unavailable`.
    """
    before = torch.get_default_device()
    mode = _MetaMode()
    inputs = weights = outputs = 0
    shapes: tuple[tuple[int, ...], ...] = ()
    try:
        with torch.device("meta"), mode:
            module = _load(source)
            values = list(module.get_inputs())
            inputs = _numel(values)
            shapes = tuple(tuple(v.shape) for v in values if isinstance(v, torch.Tensor))
            try:
                model = module.Model(*module.get_init_inputs())
                if isinstance(model, torch.nn.Module):
                    weights = sum(p.numel() for p in model.parameters()) + sum(
                        b.numel() for b in model.buffers()
                    )
                    model.eval()  # same shapes; batch norm in training mode costs 2x on meta (batch statistics)
                with torch.no_grad():
                    outputs = _numel(model(*values))
            except Exception as e:
                if not _meta_limitation(e):
                    raise
    finally:
        if torch.get_default_device() != before:  # the problem may have set its own default device
            torch.set_default_device(None if before.type == "cpu" else before)
        if mode.cuda and not (torch.cuda.is_available() if cuda_available is None else cuda_available):
            raise Unavailable(
                "the problem puts its tensors on a CUDA device (device='cuda' or .cuda()), "
                "and this machine has none"
            )
    return Measured(inputs, weights, outputs, shapes)


def measure_elements(source: str) -> int:
    """Elements of the inputs, the model's parameters and buffers, and the outputs: what a candidate's
    kernels read and write (under the Triton interpreter a 2 x 4096 @ 4096 x 4096 linear layer, 16384
    input and output elements, takes minutes: its weights count). See `measure`."""
    return measure(source).elements


# ---------------------------------------------------------------- planning


def _pow2_part(value: int) -> int:
    return min(value & -value, POW2_CAP)


@dataclass(frozen=True)
class _Sizes:
    """The size-like slots of a problem and the divisibility each must keep."""

    file: Assignment  # slot -> the file's value, in file order
    order: list[str]  # ascending file value, so a divisor's new value is known before its multiples
    soft: dict[str, int]  # the power-of-two part (<= 16): kept while the size is above it
    hard: dict[str, int]  # lcm of the small constants that divide it: always kept
    deps: dict[str, list[str]]  # smaller size-like slots that divide it in the file
    batch: frozenset[str] = field(default_factory=frozenset)
    # 2 where the file has at least two of its divisor's units (8 channels per group): a shrunk size keeps
    # two, so grouped code stays grouped and a head keeps more than one feature
    units: dict[str, int] = field(default_factory=dict)


def _sizes(slots: dict[str, Slot]) -> _Sizes:
    def size_like(s: Slot) -> bool:
        if STRUCTURE.search(s.owner):
            return False
        return s.value >= SIZE_MIN or (s.value > BATCH_FLOOR and bool(BATCH.search(s.owner)))

    file = {k: s.value for k, s in slots.items() if size_like(s)}
    batch = frozenset(k for k in file if BATCH.search(slots[k].owner))
    # Small constants that may be relations (groups, heads, an upscale factor); kernel sizes, strides and
    # batch sizes that happen to divide a size are coincidences.
    small = {
        k: s.value
        for k, s in slots.items()
        if 1 < s.value and k not in file and not STRUCTURE.search(s.owner) and not BATCH.search(s.owner)
    }

    def relation(divisor: str) -> bool:
        """A size-like divisor is a relation when its name says so (num_heads | dim, num_groups |
        channels); channels 32 | height 64 or batch 512 | features 2048 are coincidences of sizing that
        would lock sizes together (a need the names hide shows as a rejection, and is retried)."""
        return bool(RELATION.search(slots[divisor].owner))

    hard = {
        k: 1 if k in batch else math.lcm(1, *(d for d in small.values() if c % d == 0))
        for k, c in file.items()
    }
    deps = {
        k: []
        if k in batch
        else [t for t, d in file.items() if d < c and c % d == 0 and relation(t) and t not in batch]
        for k, c in file.items()
    }
    units = {}
    for k, c in file.items():
        unit = math.lcm(hard[k], *(file[t] for t in deps[k]))
        units[k] = 2 if unit > 1 and c >= 2 * unit else 1
    return _Sizes(
        file=file,
        order=sorted(file, key=lambda k: file[k]),
        soft={k: _pow2_part(c) for k, c in file.items()},
        hard=hard,
        deps=deps,
        batch=batch,
        units=units,
    )


def _snap(target: float, quantum: int, hard: int, nearest: bool) -> int:
    """A value allowed for a size: a multiple of its quantum, or below that a multiple of its hard
    divisibility; the nearest one, or the largest not above `target` (never below `hard`)."""
    step = quantum if target >= quantum else hard
    return max(hard, math.floor(target / step + (0.5 if nearest else 0.0)) * step)


def _step_up(value: int, quantum: int, hard: int) -> int:
    """The next allowed value above `value`."""
    return value + hard if value + hard < quantum else (value // quantum + 1) * quantum


def _normalize(
    sizes: _Sizes, proposal: dict[str, float], nearest: bool, floor: dict[str, float] | None = None
) -> Assignment:
    """Snap every size to what it allows (never below `floor`), divisors first."""
    out: Assignment = {}
    for s in sizes.order:
        hard = math.lcm(sizes.hard[s], *(out[t] for t in sizes.deps[s]))
        target = max(proposal[s], floor[s] if floor else 0, hard * sizes.units.get(s, 1))
        out[s] = _snap(target, math.lcm(sizes.soft[s], hard), hard, nearest)
    return {s: out[s] for s in sizes.file}


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _shrunk(sizes: _Sizes, before: Assignment, after: Assignment) -> str:
    parts = [f"{k} {before[k]}->{after[k]}" for k in sizes.file if after[k] != before[k]]
    return ", ".join(parts) if parts else "nothing"


def plan_variants(
    source: str,
    *,
    element_budget: int | None,
    count: int = 2,
    seed: int = 0,
    measure: Callable[[str], int] = measure_elements,
) -> tuple[list[Variant], list[str]]:
    """Up to `count` variants with distinct sizes: the file's (or a scaled-down) one, then perturbed ones.

    With a budget (CPU interpreter) variant 0 is the file if it fits, else `scaled`; every variant fits the
    budget unless a note says the problem cannot (then the perturbed ones stay within OVER_FIT_SLACK of it).
    Without one (GPU) variant 0 is the file. Each variant has been measured without error; an error from
    the file itself propagates (`Unavailable` for what the machine lacks). Deterministic for a given seed.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    slots = _parse(source).slots
    sizes = _sizes(slots)
    rng = random.Random(seed)
    notes: list[str] = []
    cache: dict[tuple, int | BaseException] = {}
    moved: set[str] = set()  # slots some valid measured variant changed: known to move

    def overrides(assign: Assignment) -> dict[str, int]:
        return {k: v for k, v in assign.items() if v != sizes.file[k]}

    def check(assign: Assignment) -> int | BaseException:
        over = overrides(assign)
        key = tuple(over.items())
        if key not in cache:
            try:
                cache[key] = measure(apply_overrides(source, over))
            except Unavailable:
                raise
            except Exception as e:  # noqa: BLE001 - a size the reference rejects is reported, not fatal
                cache[key] = e
            if not isinstance(cache[key], BaseException):
                moved.update(over)
        return cache[key]

    first = check(sizes.file)
    if isinstance(first, BaseException):
        raise first
    base, elements, name = dict(sizes.file), first, "file"
    if element_budget is not None and elements > element_budget:
        base, elements, error = _scale_down(sizes, check, element_budget, first)
        if base != sizes.file:
            name = "scaled"
            notes.append(
                f"scaled: {first} -> {elements} elements for the budget of {element_budget} "
                f"({_shrunk(sizes, sizes.file, base)})"
            )
        if elements > element_budget:
            why = f"; last rejection: {_describe(error)}" if error else ""
            notes.append(
                f"cannot fit the element budget: the smallest variant has {elements} elements, "
                f"{elements / element_budget:.1f}x the budget of {element_budget}{why}"
            )
    variants = [Variant(name, overrides(base), apply_overrides(source, overrides(base)), elements)]
    if not sizes.file:
        notes.append("no size constants: shape variation impossible")
        return variants, notes

    # a problem that cannot fit still gets perturbed variants, a little larger than its smallest at most
    limit = None if element_budget is None else max(element_budget, int(elements * OVER_FIT_SLACK))
    taken = [base]
    # a base from the scaling's last resort breaks the full rules: perturb it under the relaxed ones
    relaxed = _relaxed(sizes)
    rules = sizes if _normalize(sizes, base, True) == base else relaxed
    lo, hi = GPU_FACTORS if element_budget is None else CPU_FACTORS
    floor = {s: min(base[s], BATCH_FLOOR) for s in sizes.file}
    for index in range(1, count):
        name = "perturbed" if index == 1 else f"perturbed{index}"
        errors: list[BaseException] = []
        rejected: list[Assignment] = []
        over_budget = 0
        # One size at a time last, known movers first: a size the reference pins (a 224 that a fixed
        # Linear needs) must not sink every proposal.
        singles = sorted(sizes.file, key=lambda s: (s not in moved, rng.random()))
        for attempt in range(ATTEMPTS):
            # All sizes at once under the file's divisibility (independent, coupled, uniform factors); then
            # keeping each size's odd factor (384 = 3 * 128 stays a multiple of 3), for references that
            # need a divisibility no constant shows; then one size at a time with no divisibility kept.
            if attempt < 3:
                new = _propose(rules, base, rng, lo, hi, attempt, floor, taken + rejected)
            elif attempt < 5:
                new = _propose(_strict(rules), base, rng, lo, hi, attempt - 3, floor, taken + rejected)
            else:
                slot = singles[(attempt - 5) % len(singles)]
                new = _propose(relaxed, base, rng, lo, hi, 3, floor, taken + rejected, only=slot)
            if new in taken or new in rejected:
                continue
            result = check(new)
            if isinstance(result, BaseException):
                errors.append(result)
                rejected.append(new)
                continue
            if limit is not None and result > limit:
                over_budget += 1
                rejected.append(new)
                continue
            taken.append(new)
            variants.append(Variant(name, overrides(new), apply_overrides(source, overrides(new)), result))
            if errors:
                notes.append(
                    f"variant {name}: {len(errors)} shape proposal(s) rejected: reference raised {_describe(errors[-1])}"
                )
            break
        else:
            if errors:
                notes.append(f"variant {name} skipped: reference raised {_describe(errors[-1])}")
            else:
                within = f" within the element budget ({over_budget} over it)" if over_budget else ""
                notes.append(f"variant {name} skipped: no distinct shapes{within} after {ATTEMPTS} attempts")
    return variants, notes


def plan_request(
    source: str,
    *,
    element_budget: int | None,
    count: int = 2,
    seed: int = 0,
    measure: Callable[[str], int] = measure_elements,
) -> dict[str, Any]:
    """The reference process's answer to a plan request: the variants and notes, and how to run them.

    `unavailable` (the verdict is `not_executed`, with that message) when the problem needs what this
    machine lacks, or is more than MAX_TIMEOUT_SCALE times over the CPU budget even at its smallest (fixed
    weights: VGG16 keeps 138M parameters); `timeout_scale` (>= 1) stretches the run budget of a problem
    that is over the budget by less, so its verdict is not a timeout the notes did not announce.
    """
    try:
        variants, notes = plan_variants(
            source, element_budget=element_budget, count=count, seed=seed, measure=measure
        )
    except Unavailable as e:
        return {"ok": True, "variants": [], "notes": [str(e)], "unavailable": str(e), "timeout_scale": 1.0}
    reply: dict[str, Any] = {
        "ok": True,
        "variants": [
            {"name": v.name, "overrides": v.overrides, "source": v.source, "elements": v.elements}
            for v in variants
        ],
        "notes": notes,
        "unavailable": None,
        "timeout_scale": 1.0,
    }
    if element_budget:
        largest = max(v.elements or 0 for v in variants)
        over = largest / element_budget
        if over > MAX_TIMEOUT_SCALE:
            reply["unavailable"] = (
                f"too large for the CPU interpreter: {largest} elements even scaled down, {over:.0f}x the "
                f"budget of {element_budget} (more than {MAX_TIMEOUT_SCALE:.0f}x); judge it on a GPU"
            )
            notes.append(reply["unavailable"])
        elif over > 1:
            reply["timeout_scale"] = over
            notes.append(f"run budget stretched {over:.1f}x for the elements over the budget")
    return reply


def _scale_down(
    sizes: _Sizes, check: Callable[[Assignment], int | BaseException], budget: int, first: int
) -> tuple[Assignment, int, BaseException | None]:
    """The largest sizes that fit the budget, in stages: batch to 2, every size by one factor down to 16
    (or its file value), then every size down to 2, then one size at a time. Sizes go below 16 only to
    reach the budget: when nothing fits (weights the sizes do not reach), the result stays at the second
    stage rather than a degenerate 2 x 2 image that is no cheaper to judge. Returns the assignment, its
    elements and the last rejection."""
    state: tuple[Assignment, int] = (dict(sizes.file), first)
    error: BaseException | None = None
    every = set(sizes.file)

    def stage(group: set[str], floors: dict[str, int]) -> None:
        """Scale `group` down the ladder towards its floors."""
        nonlocal state, error
        assign, elements = state
        floor = {s: float(min(floors[s], assign[s]) if s in group else assign[s]) for s in every}
        spread = max((assign[s] / floor[s] for s in group), default=1.0)
        if spread > 1.0 and elements > budget:
            ladder = _Ladder(sizes, dict(assign), group, floor)
            found, err = _search(ladder, check, budget, math.ceil(LADDER * math.log2(spread)), elements)
            error = err or error
            if found is not None:
                state = found

    stage(set(sizes.batch), dict.fromkeys(every, BATCH_FLOOR))
    stage(every - sizes.batch, {s: min(c, SIZE_FLOOR) for s, c in sizes.file.items()})
    honest = state
    stage(every, dict.fromkeys(every, BATCH_FLOOR))
    if state[1] > budget:
        # one size the reference keeps large (a dilated kernel's input) stalls the uniform scaling; when
        # even every size at 2 is over (weights the sizes do not reach), nothing will fit
        bottom = check(_normalize(_relaxed(sizes), dict.fromkeys(every, float(BATCH_FLOOR)), False))
        if not isinstance(bottom, int) or bottom <= budget:
            assign, elements, err = _halve_one_at_a_time(sizes, check, budget, *state)
            state, error = (assign, elements), err or error
    return (*(state if state[1] <= budget else honest), error)


def _halve_one_at_a_time(
    sizes: _Sizes,
    check: Callable[[Assignment], int | BaseException],
    budget: int,
    assign: Assignment,
    elements: int,
) -> tuple[Assignment, int, BaseException | None]:
    """The last resort: halve the largest size the reference still accepts, down to 2, under the relaxed
    rules (no divisibility but what the reference checks)."""
    relaxed = _relaxed(sizes)
    floor = {s: float(min(BATCH_FLOOR, assign[s])) for s in sizes.file}
    error = None
    while elements > budget:
        # each size alone, largest first; then all together (keeps out_channels == 2 * width)
        moves = [{s} for s in sorted(assign, key=lambda s: -assign[s]) if assign[s] > floor[s]]
        for group in moves + [set().union(*moves)] if len(moves) > 1 else moves:
            new = _normalize(
                relaxed, {s: v // 2 if s in group else v for s, v in assign.items()}, False, floor
            )
            if new == assign or any(new[s] > assign[s] for s in new):
                continue
            result = check(new)
            if isinstance(result, BaseException):
                error = result
                continue
            assign, elements = new, result
            break
        else:
            break
    return assign, elements, error


@dataclass(frozen=True)
class _Ladder:
    """Step k scales the sizes in `group` by 2**(-k/LADDER) from `start`, never below `floor`."""

    sizes: _Sizes
    start: Assignment
    group: set[str]
    floor: dict[str, float]

    def __call__(self, k: int) -> Assignment:
        f = 2.0 ** (-k / LADDER)
        proposal = {s: v * f if s in self.group else v for s, v in self.start.items()}
        return _normalize(self.sizes, proposal, False, self.floor)


def _search(
    at: Callable[[int], Assignment],
    check: Callable[[Assignment], int | BaseException],
    budget: int,
    top: int,
    start_elements: int,
) -> tuple[tuple[Assignment, int] | None, BaseException | None]:
    """The first ladder step in 1..top that fits (the largest sizes), found by interpolating log(elements)
    between a step over the budget and one under it; a step the reference rejects counts as too small.
    When none fits, the smallest valid step over the budget; None when no step is valid."""
    results: dict[int, int | BaseException] = {0: start_elements}
    error: BaseException | None = None

    def probe(k: int) -> int | BaseException:
        nonlocal error
        if k not in results:
            results[k] = check(at(k))
            if isinstance(results[k], BaseException):
                error = results[k]  # type: ignore[assignment]
        return results[k]

    def fits(k: int) -> bool:
        r = results[k]
        return isinstance(r, int) and r <= budget

    lo, hi = 0, top  # lo: valid and over the budget; hi: fits, rejected, or not yet known
    if isinstance(probe(top), int) and not fits(top):
        return (at(top), results[top]), error  # type: ignore[return-value]  # even the floor is over
    while hi - lo > 1:
        e_lo, e_hi, mid = results[lo], results[hi], (lo + hi) // 2
        if isinstance(e_lo, int) and isinstance(e_hi, int) and 0 < e_hi < e_lo:
            # log(elements) is close to linear in k: aim at the budget, inside the bracket
            frac = (math.log(e_lo) - math.log(budget)) / (math.log(e_lo) - math.log(e_hi))
            mid = min(hi - 1, max(lo + 1, round(lo + frac * (hi - lo))))
        r = probe(mid)
        if isinstance(r, int) and r > budget:
            lo = mid
        else:
            hi = mid
    for k in range(hi, min(hi + 3, top) + 1):  # hi may be a rejection: a little further down may be valid
        probe(k)
        if fits(k):
            return (at(k), results[k]), error  # type: ignore[return-value]
    return ((at(lo), results[lo]) if lo else None), error  # type: ignore[return-value]


def _relaxed(sizes: _Sizes) -> _Sizes:
    """No divisibility kept, for what the full rules cannot fit: the reference itself rejects what it
    cannot take (GroupNorm checks channels % groups), and a group count that happens to divide the
    spatial sizes no longer pins them."""
    ones = dict.fromkeys(sizes.file, 1)
    return replace(sizes, soft=ones, hard=ones, deps={s: [] for s in sizes.file}, units={})


def _strict(sizes: _Sizes) -> _Sizes:
    """The same sizes with each hard divisor also the file value's odd part, where that leaves room."""
    hard = {}
    for s, c in sizes.file.items():
        h = math.lcm(sizes.hard[s], c // (c & -c))
        hard[s] = h if h < c else sizes.hard[s]
    return replace(sizes, hard=hard)


def _propose(
    sizes: _Sizes,
    base: Assignment,
    rng: random.Random,
    lo: float,
    hi: float,
    mode: int,
    floor: dict[str, float],
    avoid: list[Assignment],
    only: str | None = None,
) -> Assignment:
    """Random factors on `base` (see `_perturbation`; `only` moves one size), avoiding `avoid`; if they keep
    landing there (sizes pinned at their floor), step a size up instead."""
    for _ in range(4):
        proposal = _perturbation(sizes, base, rng, lo, hi, mode, only)
        new = _normalize(sizes, proposal, True, floor)
        if new not in avoid:
            return new
    slots = [only] if only else list(sizes.file)
    rng.shuffle(slots)
    for steps in range(1, 4):
        for slot in slots:
            value = base[slot]
            hard = math.lcm(sizes.hard[slot], *(base[t] for t in sizes.deps[slot]))
            for _ in range(steps):
                value = _step_up(value, math.lcm(sizes.soft[slot], hard), hard)
            new = _normalize(sizes, {**base, slot: value}, True, floor)
            if new not in avoid:
                return new
    return new


def _perturbation(
    sizes: _Sizes, base: Assignment, rng: random.Random, lo: float, hi: float, mode: int, only: str | None
) -> dict[str, float]:
    """Sizes times random factors. Mode 0: one factor per size; 1: equal sizes share one (keeps M == K);
    2: one factor for all (keeps a ratio a reference may need, out_channels == 2 * width); 3: only `only`."""
    if mode == 1:
        factors: dict[int, float] = {}
        return {s: base[s] * factors.setdefault(base[s], rng.uniform(lo, hi)) for s in sizes.file}
    if mode == 2:  # eighths, so sizes that are multiples of 8 keep their ratios exactly
        f = rng.choice([j / 8 for j in range(1, 8) if lo <= j / 8 <= hi])
        return {s: base[s] * f for s in sizes.file}
    return {s: base[s] * rng.uniform(lo, hi) if mode == 0 or s == only else base[s] for s in sizes.file}
