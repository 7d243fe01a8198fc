"""The capability allow-list: what a kernel file may do, decided on the source and by the guards at run time.

Honest files (every bundled solution and wrong answer, the synthesiser's answers for every generated category)
must pass untouched; each refusal names the line. The guards are exercised in this process on the real
compiled code, which is how the runner uses them (the sandbox suites cover the same through the sandbox).
"""

from __future__ import annotations

import pytest
import torch
import torch.utils.cpp_extension  # noqa: F401 - imported in every sandboxed child before the candidate

from kernelrl.data_pipeline.generate import CATEGORIES, generate_problems
from kernelrl.data_pipeline.synthesize import synthesize
from kernelrl.sandbox import bundled_problems
from kernelrl.sandbox.candidate import extract_candidate
from kernelrl.sandbox.capabilities import check_source, compile_candidate
from kernelrl.sandbox.guards import ForbiddenAccess, Guards

HEADER = "import torch\nimport torch.nn as nn\nimport triton\nimport triton.language as tl\nimport math\n"


def test_every_bundled_answer_passes_the_policy():
    for name, p in bundled_problems().items():
        for kind in ("solution", "wrong"):
            assert check_source(p.extras[kind]) == [], (name, kind)


def test_synthesised_answers_of_every_category_pass_the_policy():
    problems = generate_problems(6 * len(CATEGORIES), seed=3)
    assert {p.category for p in problems} == set(CATEGORIES)
    for p in problems:
        code = extract_candidate(synthesize(p)).code
        assert check_source(code) == [], (p.name, check_source(code))


@pytest.mark.parametrize(
    "snippet,message",
    [
        ("import os", "import of `os`"),
        ("from os import *", "import"),
        ("import numpy as np", "import of `numpy`"),
        ("from . import x", "relative imports"),
        ("x = open('/etc/passwd')", "`open` is not available"),
        ("x = eval('1')", "`eval`"),
        ("x = torch.__dict__", "`.__dict__`"),
        ("f = lambda: 0\nx = f.__globals__", "`.__globals__`"),
        ("def g():\n    yield 1\nx = g().gi_frame", "`.gi_frame`"),
        ("__builtins__ = {}", "`__builtins__`"),
        ("_getattr_ = getattr", "reserved for the sandbox"),
        (
            "class T(torch.Tensor):\n    def __torch_function__(cls, *a):\n        pass",
            "`__torch_function__`",
        ),
        ("x = BaseException", "`BaseException` is not available"),
        ("x = vars()", "`vars`"),
        ("async def f():\n    pass", "AsyncFunctionDef"),
    ],
)
def test_refused_on_the_source_with_the_line(snippet, message):
    violations = check_source(HEADER + snippet + "\n")
    assert violations, snippet
    assert any(message in v.what for v in violations), [str(v) for v in violations]
    assert all(v.line >= 1 for v in violations)


KERNEL_CASES = [
    ("helper(x_ptr)", "calls `helper`"),
    ("torch.relu(x_ptr)", "uses `torch`"),
    ("y = tl.load(x_ptr).handle", "`.handle`"),
    ("y = tl.core.builtins", "not part of the Triton language"),
    ("y = tl.extra.module_from_spec", "not part of the Triton language"),
    ("y = [i for i in range(3)]", "ListComp"),
    ("y = lambda: 0", "Lambda"),
    ("import os", "Import"),
    ("y = x_ptr.__class__", "private"),
    ("y = x_ptr._private", "private"),
]


@pytest.mark.parametrize("body,message", KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_kernel_bodies_stay_in_the_triton_language(body, message):
    src = (
        HEADER
        + f"\n\ndef helper(p):\n    return p\n\n\n@triton.jit\ndef k(x_ptr, n, B: tl.constexpr):\n    {body}\n"
    )
    violations = [str(v) for v in check_source(src)]
    assert any(message in v for v in violations), violations


def test_kernel_globals_must_stay_what_they_were():
    """A kernel may read module constants and Triton; not a name something else can rebind."""
    base = (
        HEADER
        + "SCALE = 2.0\n\n\n@triton.jit\ndef k(x_ptr, n, B: tl.constexpr):\n    tl.store(x_ptr, SCALE)\n"
    )
    assert check_source(base) == []
    rebound = base + "\n\ndef f():\n    global SCALE\n    SCALE = torch\n"
    assert any("global SCALE" in v.what or "`SCALE`" in v.what for v in check_source(rebound))


def test_dynamic_jit_only_of_a_checked_kernel_body():
    src = HEADER + "def plain(x):\n    return torch.relu(x)\n\n\nk = triton.jit(plain)\n"
    assert check_source(src) == []  # statically fine; the guard decides at run time
    with pytest.raises(ForbiddenAccess, match="not Triton language"):
        run(src)


# -- the guards, in this process -------------------------------------------------------------------------------
def run(source: str) -> tuple[dict, list[str]]:
    compiled = compile_candidate(source)
    assert compiled.code is not None, [str(v) for v in compiled.violations]
    seen: list[str] = []
    guards = Guards(compiled.kernels, seen.append, lambda *a, **k: None)
    ns = guards.namespace()
    exec(compiled.code, ns)
    return ns, seen


HONEST = (
    HEADER
    + """import torch.nn.functional as F
from typing import Optional


class Base(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.register_buffer("scale", torch.ones(d))
        self._cache: Optional[torch.Tensor] = None


class ModelNew(Base):
    def __init__(self, d):
        super(ModelNew, self).__init__(d)
        self.eps = math.sqrt(1e-6)

    def forward(self, x):
        y = torch.empty_like(x)
        n, d = x.shape
        out = x.contiguous().view(n, d).t().contiguous().t()
        self._cache = out
        grid = (triton.cdiv(n * d, 1024),)
        return F.relu(out) * self.scale + self.fc.weight.sum() * 0 + len(grid) * 0, y.dtype, f"{x.shape}"
"""
)


def test_honest_python_runs_under_the_guards():
    ns, seen = run(HONEST)
    out = ns["ModelNew"](8)(torch.randn(4, 8))
    assert seen == [] and out[0].shape == (4, 8)


@pytest.mark.parametrize(
    "expr,message",
    [
        ("torch.cuda.os", "`torch.cuda.os`"),
        ("getattr(torch, 'cu' + 'da').os", "`torch.cuda.os`"),
        ("torch.nn.functional.torch.serialization", "torch.serialization"),
        ("[torch][0].serialization", "torch.serialization"),
        ("torch.compile", "`torch.compile`"),
        ("torch.ops", "torch.ops"),
        ("torch.utils.cpp_extension.load", "cpp_extension.load"),
        ("torch.set_default_device", "set_default_device"),
        ("torch.load", "`torch.load`"),
        ("torch.from_file", "from_file"),
        ("torch.ones(3).tolist()", "Tensor.tolist"),
        ("torch.ones(3).numpy()", "Tensor.numpy"),
        ("torch.Tensor.tolist(torch.ones(3))", "Tensor.tolist"),
        ("torch.ones(3).apply_(abs)", "Tensor.apply_"),
        ("torch.ones(3).untyped_storage()", "Tensor.untyped_storage"),
        ("'{0.__class__}'.format(1)", "str.format"),
        ("type('X', (), {})", "type(name, bases, dict)"),
        ("triton.runtime", "`triton.runtime`"),
        ("tl.extra.module_from_spec", "triton.language.extra.module_from_spec"),
        ("getattr(math, '__loader__')", "`.__loader__`"),
        ("getattr(torch.ones(1), 'grad_fn')", "Tensor.grad_fn"),
    ],
)
def test_guards_refuse_at_run_time(expr, message):
    with pytest.raises(ForbiddenAccess, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(HEADER + f"x = {expr}\n")


@pytest.mark.parametrize(
    "stmt,message",
    [
        ("torch.allclose = lambda *a: True", "writing to the module `torch`"),
        ("[torch][0].allclose = lambda *a: True", "writing to the module `torch`"),
        ("setattr(torch, 'allclose', abs)", "writing to the module `torch`"),
        ("torch.Tensor.add = abs", "writing to the class"),
        ("torch.ones(2).grad = None", "setting `Tensor.grad`"),
        ("class L(tuple):\n    pass", "derives from"),
        ("class T(torch.Tensor):\n    pass", "derives from"),
    ],
)
def test_guards_refuse_writes_and_classes(stmt, message):
    with pytest.raises(ForbiddenAccess, match=message.replace("`", ".")):
        run(HEADER + stmt + "\n")


def test_from_imports_get_the_guarded_values():
    """`from triton import jit` must not hand out the unguarded triton.jit (plain getattr on the module)."""
    ns, _ = run(HEADER + "from triton import jit\nfrom torch.utils.cpp_extension import load_inline\n")
    assert ns["jit"] is not triton_jit() and getattr(ns["jit"], "__self__", None) is not None
    with pytest.raises(ForbiddenAccess):
        run(HEADER + "from torch.utils.cpp_extension import load\n")


def triton_jit():
    import triton

    return triton.jit


def test_refusals_are_recorded_even_when_swallowed():
    ns, seen = run(HEADER + "try:\n    x = torch.cuda.os\nexcept:\n    x = None\n")
    assert ns["x"] is None and seen and "os" in seen[0] and "line 7" in seen[0]


def test_load_inline_flags_are_an_allow_list():
    calls = []
    compiled = compile_candidate(HEADER + "from torch.utils.cpp_extension import load_inline\n")
    guards = Guards(compiled.kernels, lambda m: None, lambda *a, **k: calls.append(k))
    guards.load_inline_("ext", "", "", extra_cuda_cflags=["-O3", "--use_fast_math", "-arch=sm_90"])
    assert len(calls) == 1
    for bad in (["-ccbin=/bin/sh"], ["-Xcompiler", "-wrapper,/bin/sh"], "-O3"):
        with pytest.raises(ForbiddenAccess):
            guards.load_inline_("ext", "", "", extra_cuda_cflags=bad)
    with pytest.raises(ForbiddenAccess):
        guards.load_inline_("ext", "", "", build_directory="/tmp/x")


def test_kernel_arguments_and_tensor_metadata_stay_available():
    ns, seen = run(
        HEADER
        + "x = torch.randn(3, 4)\ny = (x.shape, x.stride(0), x.dtype, x.device, x.numel(), x.is_contiguous(),"
        " x.element_size(), x.data_ptr() > 0, torch.float32, triton.next_power_of_2(5), x.T.shape)\n"
    )
    assert seen == [] and ns["y"][0] == torch.Size([3, 4])
