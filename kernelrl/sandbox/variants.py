"""Shape variants of a problem: the same code with its module-level size constants rewritten.

Correctness is checked on more than the file's own sizes so that a candidate which hard-codes them, or
assumes powers of two, fails; and under the slow Triton CPU interpreter the problem must first be scaled
down to an element budget. Variants come from rewriting integer literals in the source (not from patching a
loaded module), so derived constants (`hidden = dim * 4`) and every use of a constant follow naturally.

Rules, in short: a constant is "size-like" when it is an int > 8 (or a tuple element > 8); smaller ones
(axes, kernel sizes, strides, groups, heads <= 8) never change. A size-like value keeps its divisibility:
it stays a multiple of its "quantum", the lcm of the largest power of two <= 16 dividing it and of every
other constant > 1 that divides it in the file (a smaller size-like divisor counts with its *new* value,
so `dim` stays a multiple of whatever `num_heads` became). Two exceptions keep sizes from locking together:
constants with equal values do not constrain each other (M = K = N vary independently), and a size-like
power-of-two divisor above 64 is taken as power-of-two sizing, not a relation (batch 512 | features 2048).

Every planned variant is measured on the meta device (cheap, allocates nothing); a size the reference
rejects (an assert, a shape mismatch) is replaced by another proposal: equal sizes moved together, then
sizes that keep the file value's odd factor, and after ATTEMPTS the variant is skipped with a note.
`count` is the total number of variants, variant 0 included.
"""

from __future__ import annotations

import ast
import math
import random
import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch

Value = int | tuple[int, ...]
Slot = tuple[str, int | None]  # (constant, tuple index or None for a plain int)
Assignment = dict[Slot, int]

SIZE_MIN = 9  # ints below this are axes, kernel sizes, strides, groups, heads: never changed
POW2_CAP = 16  # the largest power of two kept as a divisor (1024 stays a multiple of 16, 100 of 4)
POW2_RELATION_MAX = 64  # a larger power-of-two divisor is a coincidence of sizing, not a constraint
ATTEMPTS = 6  # shape proposals per perturbed variant before it is skipped
GPU_FACTORS = (0.5, 0.9)
CPU_FACTORS = (0.6, 0.9)


@dataclass(frozen=True)
class Variant:
    name: str  # "file", "scaled", "perturbed", "perturbed2", ...
    overrides: dict[str, Value]  # constant -> new value; {} for the file's own sizes
    source: str  # the problem source with the overrides applied


# ---------------------------------------------------------------- finding and rewriting constants


def _int_literal(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:  # type() check: bools are not sizes
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) is int:
            return -operand.value
    return None


def _literal(node: ast.expr) -> Value | None:
    if isinstance(node, ast.Tuple):
        items = [_int_literal(e) for e in node.elts]
        return None if any(i is None for i in items) else tuple(items)  # type: ignore[arg-type]
    return _int_literal(node)


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


def _constant_nodes(source: str) -> dict[str, tuple[ast.expr, Value]]:
    """Module-level `NAME = literal` / `NAME: T = literal`, each with the node of its value."""
    tree = ast.parse(source)
    bindings = _module_bindings(tree)
    found: dict[str, tuple[ast.expr, Value]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.simple:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name) and bindings.get(target.id) == 1:
            literal = _literal(value)
            if literal is not None:
                found[target.id] = (value, literal)
    return found


def find_constants(source: str) -> dict[str, Value]:
    """The module-level integer (and int-tuple) literal constants, in file order."""
    return {name: value for name, (_, value) in _constant_nodes(source).items()}


def _format(value: Value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _check_override(name: str, old: Value, new: Any) -> Value:
    if isinstance(old, tuple):
        if isinstance(new, (tuple, list)) and all(type(v) is int for v in new):
            return tuple(new)
    elif type(new) is int:
        return new
    raise ValueError(
        f"override for {name!r} must be {'a tuple of ints' if isinstance(old, tuple) else 'an int'}, got {new!r}"
    )


def apply_overrides(source: str, overrides: dict[str, Value]) -> str:
    """Rewrite only the literals of the named constants; every other byte of the file is kept."""
    nodes = _constant_nodes(source)
    unknown = [name for name in overrides if name not in nodes]
    if unknown:
        raise ValueError(f"not an overridable module-level int constant: {', '.join(map(repr, unknown))}")
    data = source.encode()
    starts = [0] + [m.end() for m in re.finditer(rb"\r\n|\r|\n", data)]
    edits = []
    for name, new in overrides.items():
        node, old = nodes[name]
        text = _format(_check_override(name, old, new)).encode()
        # AST columns are UTF-8 byte offsets, so edit the encoded text.
        begin = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
        edits.append((begin, end, text))
    for begin, end, text in sorted(edits, reverse=True):
        data = data[:begin] + text + data[end:]
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


def measure_elements(source: str) -> int:
    """Elements of the inputs plus the outputs, computed on the meta device so nothing is allocated.

    The problem's own errors (a failing get_inputs, an assert on shapes in __init__ or forward, a shape
    mismatch) propagate, so a variant the reference rejects is recognised. Only an op that cannot run on
    meta falls back to counting the inputs (plus the parameters when the model could be built).
    """
    module = types.ModuleType("kernelrl_measured_problem")
    module.__file__ = "<problem>"
    before = torch.get_default_device()
    try:
        with torch.device("meta"):
            exec(compile(source, "<problem>", "exec"), module.__dict__)  # trusted: the problem's own code
            inputs = list(module.get_inputs())
            total = _numel(inputs)
            try:
                model = module.Model(*module.get_init_inputs())
            except Exception as e:
                if not _meta_limitation(e):
                    raise
                return total
            try:
                with torch.no_grad():
                    return total + _numel(model(*inputs))
            except Exception as e:
                if not _meta_limitation(e):
                    raise
                params = model.parameters() if isinstance(model, torch.nn.Module) else ()
                return total + sum(p.numel() for p in params)
    finally:
        if torch.get_default_device() != before:  # the problem may have set its own default device
            torch.set_default_device(None if before.type == "cpu" else before)


# ---------------------------------------------------------------- planning


def _pow2_part(value: int) -> int:
    return min(value & -value, POW2_CAP)


def _relation(divisor: int) -> bool:
    """Whether a size-like divisor is a real relation (heads, groups) rather than power-of-two sizing
    (batch 512 dividing features 2048), which would otherwise pin in_features == out_features."""
    return divisor <= POW2_RELATION_MAX or divisor & (divisor - 1) != 0


@dataclass(frozen=True)
class _Sizes:
    """The size-like slots of a problem and the divisibility each must keep."""

    file: Assignment  # slot -> the file's value, in file order
    order: list[Slot]  # ascending file value, so a divisor's new value is known before its multiples
    fixed: dict[Slot, int]  # lcm of the power-of-two part and the divisors that never change
    deps: dict[Slot, list[Slot]]  # smaller size-like slots that divide this one in the file


def _sizes(constants: dict[str, Value]) -> _Sizes:
    values: list[tuple[Slot, int]] = []
    for name, value in constants.items():
        if isinstance(value, tuple):
            values += [((name, i), v) for i, v in enumerate(value)]
        else:
            values.append(((name, None), value))
    file = {slot: v for slot, v in values if v >= SIZE_MIN}
    small = {v for _, v in values if 1 < v < SIZE_MIN}
    fixed = {s: math.lcm(_pow2_part(c), *(d for d in small if c % d == 0)) for s, c in file.items()}
    deps = {s: [t for t, d in file.items() if d < c and c % d == 0 and _relation(d)] for s, c in file.items()}
    order = sorted(file, key=lambda s: file[s])
    return _Sizes(file, order, fixed, deps)


def _quantum(sizes: _Sizes, slot: Slot, assign: Assignment) -> int:
    return math.lcm(sizes.fixed[slot], *(assign[t] for t in sizes.deps[slot]))


def _normalize(sizes: _Sizes, proposal: dict[Slot, float], nearest: bool) -> Assignment:
    """Round every slot to its quantum (never below it), divisors first."""
    out: Assignment = {}
    for s in sizes.order:
        q = _quantum(sizes, s, out)
        steps = math.floor(proposal[s] / q + (0.5 if nearest else 0.0))
        out[s] = max(q, steps * q)
    return {s: out[s] for s in sizes.file}


def _overrides(constants: dict[str, Value], sizes: _Sizes, assign: Assignment) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for name, value in constants.items():
        if isinstance(value, tuple):
            new: Value = tuple(assign.get((name, i), v) for i, v in enumerate(value))
        else:
            new = assign.get((name, None), value)
        if new != value:
            out[name] = new
    return out


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


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
    budget unless nothing can shrink further. Without one (GPU) variant 0 is the file. Each variant has been
    measured without error; an error from the file itself propagates. Deterministic for a given seed.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    constants = find_constants(source)
    sizes = _sizes(constants)
    rng = random.Random(seed)
    notes: list[str] = []
    cache: dict[tuple, int | BaseException] = {}

    def check(assign: Assignment) -> int | BaseException:
        overrides = _overrides(constants, sizes, assign)
        key = tuple(overrides.items())
        if key not in cache:
            try:
                cache[key] = measure(apply_overrides(source, overrides))
            except Exception as e:  # noqa: BLE001 - a size the reference rejects is reported, not fatal
                cache[key] = e
        return cache[key]

    def fits(elements: int) -> bool:
        return element_budget is None or elements <= element_budget

    def shrink(assign: Assignment, elements: int) -> tuple[Assignment, int, BaseException | None]:
        """Halve the largest size until the budget is met or nothing can shrink (the smallest is kept)."""
        error = None
        while not fits(elements):
            for group in _halvings(sizes, assign):
                proposal = {s: assign[s] / 2 if s in group else assign[s] for s in sizes.file}
                new = _normalize(sizes, proposal, nearest=False)
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

    first = check(sizes.file)
    if isinstance(first, BaseException):
        raise first
    base, elements = dict(sizes.file), first
    name = "file"
    if not fits(elements):
        base, elements, error = shrink(base, elements)
        if base != sizes.file:
            name = "scaled"
            notes.append(f"scaled: {first} -> {elements} elements to fit the budget of {element_budget}")
        if not fits(elements):
            why = f" (last rejection: {_describe(error)})" if error else ""
            notes.append(
                f"{name} still exceeds the element budget ({elements} > {element_budget}): nothing can shrink further{why}"
            )
    overrides = _overrides(constants, sizes, base)
    variants = [Variant(name, overrides, apply_overrides(source, overrides))]
    if not sizes.file:
        notes.append("no size constants: shape variation impossible")
        return variants, notes

    taken = [base]
    strict = _strict(sizes)
    lo, hi = GPU_FACTORS if element_budget is None else CPU_FACTORS
    for index in range(1, count):
        name = "perturbed" if index == 1 else f"perturbed{index}"
        errors: list[BaseException] = []
        rejected: list[Assignment] = []
        for attempt in range(ATTEMPTS):
            # Later attempts keep each size's odd factor (384 = 3 * 128 stays a multiple of 3), for references
            # that need a divisibility no constant shows.
            grid = sizes if attempt < ATTEMPTS // 2 else strict
            new = _propose(grid, base, rng, lo, hi, attempt, avoid=taken + rejected)
            if new in taken or new in rejected:
                continue
            result = check(new)
            if isinstance(result, BaseException):
                errors.append(result)
                rejected.append(new)
                continue
            if not fits(result):
                new, result, error = shrink(new, result)
                if error is not None and not fits(result):
                    errors.append(error)
            if new in taken or not fits(result):
                continue
            taken.append(new)
            overrides = _overrides(constants, sizes, new)
            variants.append(Variant(name, overrides, apply_overrides(source, overrides)))
            if errors:
                notes.append(
                    f"variant {name}: {len(errors)} shape proposal(s) rejected: reference raised {_describe(errors[-1])}"
                )
            break
        else:
            if errors:
                notes.append(f"variant {name} skipped: reference raised {_describe(errors[-1])}")
            else:
                within = "" if element_budget is None else " within the element budget"
                notes.append(f"variant {name} skipped: no distinct shapes{within} after {ATTEMPTS} attempts")
    return variants, notes


def _halvings(sizes: _Sizes, assign: Assignment) -> Iterable[set[Slot]]:
    """What to halve next, largest first; after the first of several equal sizes, all of them together
    (a problem may need M == K, which halving one at a time would break)."""
    ranked = sorted(assign, key=lambda s: -assign[s])  # stable: file order among equals
    seen: set[int] = set()
    for slot in ranked:
        yield {slot}
        value = assign[slot]
        if value not in seen:
            seen.add(value)
            ties = {s for s in ranked if assign[s] == value}
            if len(ties) > 1:
                yield ties


def _strict(sizes: _Sizes) -> _Sizes:
    """The same sizes with each quantum also a multiple of the file value's odd part, where that leaves room."""
    fixed = {}
    for s, c in sizes.file.items():
        q = math.lcm(sizes.fixed[s], c // (c & -c))
        fixed[s] = q if q < c else sizes.fixed[s]
    return replace(sizes, fixed=fixed)


def _propose(
    sizes: _Sizes,
    base: Assignment,
    rng: random.Random,
    lo: float,
    hi: float,
    attempt: int,
    avoid: list[Assignment],
) -> Assignment:
    """Random factors on `base`, avoiding `avoid`; if they keep landing there (sizes pinned at their quantum),
    step one size up by quanta instead."""
    for _ in range(4):
        proposal = _perturbation(sizes, base, rng, lo, hi, coupled=attempt % 2 == 1)
        new = _normalize(sizes, proposal, nearest=True)
        if new not in avoid:
            return new
    slot = rng.choice(list(sizes.file))
    return _normalize(
        sizes, {**new, slot: new[slot] + (attempt + 1) * _quantum(sizes, slot, new)}, nearest=True
    )


def _perturbation(
    sizes: _Sizes, base: Assignment, rng: random.Random, lo: float, hi: float, coupled: bool
) -> dict[Slot, float]:
    """Each size times a random factor; `coupled` gives equal sizes the same factor (keeps M == K)."""
    if not coupled:
        return {s: base[s] * rng.uniform(lo, hi) for s in sizes.file}
    factors: dict[int, float] = {}
    return {s: base[s] * factors.setdefault(base[s], rng.uniform(lo, hi)) for s in sizes.file}
