"""Which PyTorch ops count as doing the problem's work, and a recorder that sees them at run time.

A candidate may use PyTorch to allocate, initialise (as the reference does), view and move data; the arithmetic
must happen in its kernels. So this is an allow-list: `DATA_MOVEMENT` ops are free, every other aten op a
candidate runs in `forward` (or at import / in `__init__` beyond what the reference's own constructor runs: a
lookup table computed at start-up is compute too) is PyTorch doing the work: `torch_fallback`.

The recorder sits below autograd (a TorchDispatchMode), so every route into aten is seen: F.linear, `x @ w`,
`tensor.sum()`, nn modules, and what a Triton launch or a grid function runs. It counts per phase (`init`,
`forward`, `timing`), notes which ops PyTorch tags pointwise (the reference's profile decides the tolerance),
and counts scalars read back to Python (`item`, `float(t)`, `bool(t)`): many of them mean Python is computing.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

DATA_MOVEMENT = frozenset(
    """
    empty empty_like empty_strided empty_permuted new_empty new_empty_strided zeros zeros_like new_zeros ones
    ones_like new_ones full full_like new_full fill fill_ zero_ copy_ copy _copy_from _copy_from_and_resize clone
    contiguous view _unsafe_view view_as reshape _reshape_alias as_strided as_strided_ expand expand_as permute
    transpose transpose_ t t_ squeeze squeeze_ unsqueeze unsqueeze_ flatten unflatten select slice narrow split
    split_with_sizes chunk unbind cat stack detach detach_ alias lift lift_fresh lift_fresh_copy _to_copy to
    resize_ resize_as_ set_ arange scalar_tensor _local_scalar_dense item is_same_size
    _has_compatible_shallow_copy_type index_select repeat movedim swapaxes sym_size sym_stride sym_numel
    sym_storage_offset _make_dep_token record_stream is_nonzero view_as_real view_as_complex diagonal
    resolve_conj resolve_neg constant_pad_nd index index_put index_put_ gather where masked_select
    view_copy permute_copy transpose_copy t_copy expand_copy squeeze_copy unsqueeze_copy slice_copy select_copy
    alias_copy as_strided_copy unbind_copy split_copy _pin_memory
    normal normal_ uniform_ bernoulli bernoulli_ random_ exponential_ randn rand randint randperm randn_like
    rand_like randint_like
    """.split()
)
SCALAR_READS = frozenset({"_local_scalar_dense", "item"})
PHASES = ("init", "forward", "timing")


def compute_ops(counts: dict[str, int]) -> set[str]:
    return {name for name, n in counts.items() if n and name not in DATA_MOVEMENT}


def fallback_ops(
    forward: dict[str, int], init: dict[str, int] | None = None, reference_init: dict[str, int] | None = None
) -> list[str]:
    """PyTorch ops that did the candidate's arithmetic: any compute op in forward, and compute at import or
    construction that the reference's own constructor does not run."""
    found = compute_ops(forward)
    if init:
        found |= compute_ops(init) - compute_ops(reference_init or {})
    return sorted(found)


def all_pointwise(counts: dict[str, int], pointwise: set[str]) -> bool:
    """True when every compute op of a profile is elementwise (so errors are judged per element)."""
    ops = compute_ops(counts)
    return bool(ops) and ops <= pointwise


class OpRecorder(TorchDispatchMode):
    """Counts aten ops by name into the current `phase` (None: not counting)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, Counter[str]] = {p: Counter() for p in PHASES}
        self.pointwise: set[str] = set()
        self.phase: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        phase = self.phase
        if phase is not None:
            name = func.overloadpacket.__name__
            self.counts[phase][name] += 1
            if torch.Tag.pointwise in func.tags:
                self.pointwise.add(name)
        return func(*args, **(kwargs or {}))

    def scalar_reads(self, phase: str) -> int:
        return sum(n for name, n in self.counts[phase].items() if name in SCALAR_READS)


MODE_EVENT = "PythonDispatchMode"  # what the profiler records when an op passes through a Python mode


def unrecorded_ops(events: list) -> list[str]:
    """Ops the dispatcher ran that never passed through a Python dispatch mode (legacy profiler events).

    The profiler sits in the C++ dispatcher, beneath anything Python code can switch off, so it is a second
    witness for the recorder: an op at the top of a call tree with no mode event below it ran while dispatch to
    Python modes was off (`no_dispatch`, an excluded key, a `redispatch`). Ops nested inside a recorded op are
    the recorded op's own business, and so is data movement (PyTorch itself makes `nn.Parameter`s with Python
    dispatch off): only compute that went unseen is reported.
    """
    children: dict[int, list] = {}
    for e in events:
        parent = e.cpu_parent
        if parent is not None:
            children.setdefault(id(parent), []).append(e)

    def seen(e: object) -> bool:
        stack = list(children.get(id(e), []))
        while stack:
            c = stack.pop()
            if c.name == MODE_EVENT:
                return True
            stack += children.get(id(c), [])
        return False

    missed = []
    for e in events:
        parent = e.cpu_parent
        top = parent is None or not (parent.name.startswith("aten::") or parent.name == MODE_EVENT)
        name = e.name.removeprefix("aten::")
        if e.name.startswith("aten::") and top and name not in DATA_MOVEMENT and not seen(e):
            missed.append(name)
    return sorted(set(missed))


def is_plain_tensor(x: object) -> bool:
    return type(x) is torch.Tensor
