"""Extraction and backend-detection contract of sandbox/candidate.py."""

from __future__ import annotations

import hashlib

import pytest

from kernelrl.sandbox.candidate import (
    ERR_EMPTY,
    ERR_NO_BASE,
    ERR_NO_BLOCK,
    ERR_NO_FORWARD,
    ERR_NO_MODELNEW_BLOCK,
    ERR_NOT_MODULE_LEVEL,
    ERR_UNCLOSED,
    detect_backend,
    extract_candidate,
)

TRITON_CODE = """import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.maximum(tl.load(x_ptr + offs, mask=mask), 0.0), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        relu_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
        return out
"""

DRAFT_CODE = """import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return x  # draft
"""


def fenced(code: str, tag: str = "python", fence: str = "```") -> str:
    return f"{fence}{tag}\n{code}{fence}\n"


# ---------------------------------------------------------------- which block wins


def test_single_python_block_with_reasoning() -> None:
    cand = extract_candidate("I will write a ReLU kernel.\n\n" + fenced(TRITON_CODE) + "\nDone.")
    assert cand.format_error is None
    assert cand.code == TRITON_CODE
    assert cand.backend == "triton"
    assert cand.reasoning == "I will write a ReLU kernel.\n\nDone."
    assert cand.sha256 == hashlib.sha256(TRITON_CODE.encode()).hexdigest()


def test_last_block_defining_modelnew_wins() -> None:
    usage = "model = ModelNew()\nprint(model)\n"
    text = "Draft:\n" + fenced(DRAFT_CODE) + "Final:\n" + fenced(TRITON_CODE) + "Usage:\n" + fenced(usage)
    cand = extract_candidate(text)
    assert cand.format_error is None
    assert cand.code == TRITON_CODE
    assert "model = ModelNew()" in cand.reasoning  # the usage block is reasoning, not code
    assert "return x  # draft" in cand.reasoning


def test_draft_after_final_wins_too() -> None:
    """The rule is positional: the last ModelNew block is taken even when it is the worse one."""
    cand = extract_candidate(fenced(TRITON_CODE) + fenced(DRAFT_CODE))
    assert cand.code == DRAFT_CODE
    assert cand.backend == "none"


@pytest.mark.parametrize("tag", ["py", "", "Python", "python3", "py3"])
def test_accepted_tags(tag: str) -> None:
    cand = extract_candidate(fenced(TRITON_CODE, tag=tag))
    assert cand.format_error is None
    assert cand.code == TRITON_CODE


def test_tilde_fence() -> None:
    cand = extract_candidate("text\n" + fenced(TRITON_CODE, fence="~~~"))
    assert cand.format_error is None
    assert cand.code == TRITON_CODE


def test_backtick_fence_inside_tilde_block_is_content() -> None:
    code = TRITON_CODE + '\nDOC = """\n```\nnot a fence here\n```\n"""\n'
    cand = extract_candidate(fenced(code, fence="~~~~"))
    assert cand.format_error is None
    assert cand.code == code


def test_non_python_blocks_are_ignored() -> None:
    cuda = "__global__ void k() {}\nclass ModelNew {};\n"
    cand = extract_candidate(fenced(TRITON_CODE) + fenced(cuda, tag="cpp"))
    assert cand.code == TRITON_CODE


def test_indented_fence_in_list_item() -> None:
    indented = "".join(
        "   " + line if line.strip() else line for line in TRITON_CODE.splitlines(keepends=True)
    )
    text = "1. The code:\n   ```python\n" + indented + "   ```\n"
    cand = extract_candidate(text)
    assert cand.format_error is None
    assert cand.code == TRITON_CODE


def test_inline_triple_backticks_are_not_a_fence() -> None:
    text = "Wrap code in ```python``` fences.\n" + fenced(TRITON_CODE)
    assert extract_candidate(text).code == TRITON_CODE


def test_crlf_line_endings() -> None:
    cand = extract_candidate(fenced(TRITON_CODE).replace("\n", "\r\n"))
    assert cand.format_error is None
    assert cand.code == TRITON_CODE


def test_bare_file_is_taken_whole() -> None:
    cand = extract_candidate(TRITON_CODE)
    assert cand.format_error is None
    assert cand.code == TRITON_CODE
    assert cand.reasoning == ""


# ---------------------------------------------------------------- format errors


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_empty_completion(text: str) -> None:
    cand = extract_candidate(text)
    assert cand.format_error == ERR_EMPTY == "empty completion"
    assert cand.code is None
    assert cand.backend == "none"


def test_truncated_fence_is_an_error_even_after_a_complete_block() -> None:
    text = fenced(TRITON_CODE) + "Now the optimised version:\n```python\nimport torch\nclass ModelNew("
    cand = extract_candidate(text)
    assert cand.format_error == ERR_UNCLOSED == "code block is not closed (truncated completion?)"
    assert cand.code is None
    assert cand.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_prose_without_code() -> None:
    cand = extract_candidate("I think a fused kernel would be faster here.")
    assert cand.format_error == ERR_NO_BLOCK
    assert cand.reasoning == "I think a fused kernel would be faster here."


def test_no_block_defines_modelnew() -> None:
    cand = extract_candidate("Here:\n" + fenced("import torch\nclass Model:\n    pass\n"))
    assert cand.format_error == ERR_NO_MODELNEW_BLOCK == "no code block defines `class ModelNew`"
    assert cand.code is None


def test_syntax_error_line_is_relative_to_the_block() -> None:
    code = "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def forward(self x):\n        return x\n"
    cand = extract_candidate("Reasoning line 1\nline 2\nline 3\n\n" + fenced(code))
    assert cand.code is None
    assert cand.format_error is not None
    assert cand.format_error.startswith("syntax error at line 4: ")
    assert cand.format_error.endswith("-> def forward(self x):")


def test_bare_file_syntax_error() -> None:
    cand = extract_candidate("Here is my answer\nclass ModelNew(nn.Module):\n    pass\n")
    assert cand.format_error is not None
    assert cand.format_error.startswith("syntax error at line 1: ")


def test_modelnew_without_forward() -> None:
    code = "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    assert (
        extract_candidate(fenced(code)).format_error == ERR_NO_FORWARD == "`ModelNew` has no `forward` method"
    )


def test_modelnew_without_base() -> None:
    code = "class ModelNew:\n    def forward(self, x):\n        return x\n"
    assert extract_candidate(fenced(code)).format_error == ERR_NO_BASE


def test_modelnew_only_inside_a_function() -> None:
    code = "import torch.nn as nn\n\ndef make():\n    class ModelNew(nn.Module):\n        def forward(self, x):\n            return x\n"
    assert extract_candidate(fenced(code)).format_error == ERR_NOT_MODULE_LEVEL


def test_forward_inherited_from_a_local_base() -> None:
    code = (
        "import torch.nn as nn\n\nclass Base(nn.Module):\n    def forward(self, x):\n        return x\n\n"
        "class ModelNew(Base):\n    pass\n"
    )
    assert extract_candidate(fenced(code)).format_error is None


def test_local_base_without_forward() -> None:
    code = "import torch.nn as nn\n\nclass Base(nn.Module):\n    pass\n\nclass ModelNew(Base):\n    pass\n"
    assert extract_candidate(fenced(code)).format_error == ERR_NO_FORWARD


def test_unknown_base_gets_the_benefit_of_the_doubt() -> None:
    code = "from mylib import KernelModule\n\nclass ModelNew(KernelModule):\n    pass\n"
    assert extract_candidate(fenced(code)).format_error is None


def test_torch_nn_module_base_and_forward_assignment() -> None:
    code = "import torch\n\ndef _fwd(self, x):\n    return x\n\nclass ModelNew(torch.nn.Module):\n    forward = _fwd\n"
    assert extract_candidate(fenced(code)).format_error is None


def test_redefined_modelnew_last_definition_counts() -> None:
    good = "class ModelNew(nn.Module):\n    def forward(self, x):\n        return x\n"
    bad = "class ModelNew(nn.Module):\n    pass\n"
    head = "import torch.nn as nn\n"
    assert extract_candidate(fenced(head + bad + good)).format_error is None
    assert extract_candidate(fenced(head + good + bad)).format_error == ERR_NO_FORWARD


# ---------------------------------------------------------------- backend


@pytest.mark.parametrize(
    ("code", "backend"),
    [
        (TRITON_CODE, "triton"),
        ("from triton import jit\n@jit\ndef k(x):\n    pass\n", "triton"),
        ("import triton as tr\n@tr.jit\ndef k(x):\n    pass\n", "triton"),
        (
            "import triton\n@triton.autotune(configs=[], key=['n'])\n@triton.jit\ndef k(x):\n    pass\n",
            "triton",
        ),
        ("import triton\n@triton.heuristics({'B': lambda a: 1})\ndef k(x):\n    pass\n", "triton"),
        ("import triton\ndef f(x):\n    pass\nk = triton.jit(f)\n", "triton"),
        (
            "from torch.utils.cpp_extension import load_inline\nm = load_inline(name='m', cpp_sources='')\n",
            "cuda",
        ),
        ("import torch.utils.cpp_extension as ce\nm = ce.load(name='m', sources=['a.cu'])\n", "cuda"),
        ("SRC = '__global__ void k(float* x) {}'\n", "cuda"),
        (
            "import triton\nfrom torch.utils.cpp_extension import load_inline\n@triton.jit\ndef k(x):\n    pass\n"
            "m = load_inline(name='m', cpp_sources='')\n",
            "triton",
        ),
        ("import torch\ndef f(x):\n    return torch.relu(x)\n", "none"),
        ("from numba import jit\n@jit\ndef f(x):\n    return x\n", "none"),
        ("def broken(:\n", "none"),
    ],
)
def test_detect_backend(code: str, backend: str) -> None:
    assert detect_backend(code) == backend


def test_cuda_candidate_backend() -> None:
    code = (
        "import torch.nn as nn\nfrom torch.utils.cpp_extension import load_inline\n"
        "mod = load_inline(name='relu', cpp_sources='', cuda_sources='', functions=['relu_cuda'])\n\n"
        "class ModelNew(nn.Module):\n    def forward(self, x):\n        return mod.relu_cuda(x)\n"
    )
    assert extract_candidate(fenced(code)).backend == "cuda"


def test_trailing_chat_template_tokens_are_not_a_truncation():
    code = (
        "import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def forward(self, x):\n        return x\n"
    )
    for tail in ("<|im_end|>", "<|im_end|>\n<|endoftext|>", "</s>", " <eos>\n"):
        cand = extract_candidate(f"Reasoning.\n\n```python\n{code}```{tail}")
        assert cand.format_error is None and cand.code == code, tail
    # a token in the middle of the text is the model's own business, not stripped
    assert extract_candidate(f"```python\n{code}```\n<|im_end|>\nmore prose").format_error is None


def test_extraction_is_linear_in_long_whitespace_runs():
    # a quadratic tail scan would take about a minute here: a denial of service for the reward server
    import time

    start = time.monotonic()
    extract_candidate("x" + " " * 200_000 + "y")
    assert time.monotonic() - start < 5
