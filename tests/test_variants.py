"""Shape variants: sizes are found and rewritten as the file writes them, plans keep divisibility, reach the
CPU budget honestly (weights counted, the problem's character kept), and problems this machine cannot run are
said so; `kernelrl variants` shows it all."""

from __future__ import annotations

import itertools
import json
import re
import types

import pytest
import torch

from kernelrl.sandbox.variants import (
    Unavailable,
    apply_overrides,
    find_constants,
    find_slots,
    measure,
    measure_elements,
    plan_request,
    plan_variants,
)

SIZES_SRC = """\
import torch
import torch.nn as nn

# sizes (comments and odd spacing must survive a rewrite)
batch_size = 16  # rows
dim   =  2048 * 2
hidden = dim * 4        # derived: follows dim
shift = 1 << 10
input_shape = (8192 * 2, 7)  # a tuple, one element an expression
single = (33,)
layer_sizes = [1024] * 3
widths = [96, 80]
bias_shape = (dim, 1)   # derived element: not a slot
offset = -3
reduce_dim: int = 1
flag = True
eps = 1e-5
ratio = dim / 2
height = width = 128
h, w = 224, 96
dead = 2048
dead = 64
rebound = 10
uses_rebound = rebound
rebound = 20
ünïcode = 7; after_unicode = 96


class Model(nn.Module):
    width_in_class = 999

    def __init__(self):
        super().__init__()
        inner = 12345

    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    local = 777
    labels = torch.randint(0, 1000, (batch_size, 40))
    return [torch.rand(batch_size, 3, 224, 224), torch.randn(size=(12, dim)), labels]


def get_init_inputs():
    return []
"""


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("variant_under_test")
    exec(compile(source, "<test>", "exec"), module.__dict__)
    return module


def _problem(
    body: str, constants: str, inputs: str, init: str = "[]", init_args: str = "", head: str = ""
) -> str:
    return (
        f"import torch\nimport torch.nn as nn\n{head}\n\n"
        f"class Model(nn.Module):\n    def __init__(self{init_args}):\n        super().__init__()\n"
        f"{body}\n\n{constants}\n\n\ndef get_inputs():\n    return {inputs}\n\n\n"
        f"def get_init_inputs():\n    return {init}\n"
    )


RELU = _problem(
    "    def forward(self, x):\n        return torch.relu(x)",
    "batch_size = 16\ndim = 16384",
    "[torch.randn(batch_size, dim)]",
)
MATMUL = _problem(
    "    def forward(self, a, b):\n        return torch.matmul(a, b)",
    "M = 1024\nK = 1024\nN = 1024",
    "[torch.randn(M, K), torch.randn(K, N)]",
)
# KernelBench-like sizes (level 1 writes them this way): a size given as an expression.
MATMUL_EXPR = MATMUL.replace("M = 1024\nK = 1024\nN = 1024", "M = 1024 * 2\nK = 4096 * 2\nN = 2048 * 2")
SOFTMAX = _problem(
    "    def forward(self, x):\n        return torch.softmax(x, dim=1)",
    "batch_size = 4096\ndim = 393216",
    "[torch.randn(batch_size, dim)]",
)
CONV = _problem(
    "        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)\n\n"
    "    def forward(self, x):\n        return self.conv(x)",
    "batch_size = 16\nin_channels = 3\nout_channels = 64\nkernel_size = 3\nheight = 256\nwidth = 256",
    "[torch.randn(batch_size, in_channels, height, width)]",
    init="[in_channels, out_channels, kernel_size]",
    init_args=", in_channels, out_channels, kernel_size",
)
GEMM = _problem(
    "        self.fc = nn.Linear(in_features, out_features)\n\n    def forward(self, x):\n        return self.fc(x)",
    "batch_size = 1024\nin_features = 8192\nout_features = 8192",
    "[torch.randn(batch_size, in_features)]",
    init="[in_features, out_features]",
    init_args=", in_features, out_features",
)
# GroupNorm needs channels % groups == 0; attention needs dim % num_heads == 0 (num_heads = 12 is size-like
# and may become 8, so dim must follow the *new* head count).
DIVISIBLE = _problem(
    "        self.norm = nn.GroupNorm(groups, channels)\n"
    "        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)\n\n"
    "    def forward(self, x, y):\n        return self.norm(x), self.attn(y, y, y)[0]",
    "batch_size = 2\nchannels = 120\ngroups = 5\nspatial = 40\nseq = 50\ndim = 768\nnum_heads = 12",
    "[torch.randn(batch_size, channels, spatial), torch.randn(batch_size, seq, dim)]",
    init="[channels, groups, dim, num_heads]",
    init_args=", channels, groups, dim, num_heads",
)


def _values(variant) -> dict:
    return {k: v for k, v in vars(_module(variant.source)).items() if type(v) in (int, tuple, list)}


# ---------------------------------------------------------------- find / apply


def test_find_slots_takes_sizes_as_the_file_writes_them():
    assert find_slots(SIZES_SRC) == {
        "batch_size": 16,
        "dim": 4096,  # 2048 * 2, one slot
        "shift": 1024,
        "input_shape[0]": 16384,
        "input_shape[1]": 7,
        "single[0]": 33,
        "layer_sizes[0]": 1024,  # [1024] * 3: the repeated literal
        "widths[0]": 96,
        "widths[1]": 80,
        "bias_shape[1]": 1,
        "offset": -3,
        "reduce_dim": 1,
        "height": 128,  # height = width = 128: one literal, width follows
        "h": 224,
        "w": 96,
        "dead": 64,  # the first binding is dead: nothing reads it before the second
        "ünïcode": 7,
        "after_unicode": 96,
        "get_inputs#0": 40,  # randint(0, 1000, (batch_size, 40)): only the size
        "get_inputs#1": 3,
        "get_inputs#2": 224,
        "get_inputs#3": 224,
        "get_inputs#4": 12,
    }
    constants = find_constants(SIZES_SRC)
    assert constants["hidden"] == 16384 and constants["width"] == 128 and constants["bias_shape"] == (4096, 1)
    assert constants["layer_sizes"] == [1024] * 3
    assert not {"rebound", "uses_rebound", "flag", "eps", "ratio", "local", "inner"} & set(constants)


def test_apply_overrides_rewrites_only_the_slots():
    new = apply_overrides(
        SIZES_SRC,
        {
            "dim": 1000,
            "input_shape[0]": 48,
            "single[0]": 17,
            "layer_sizes[0]": 80,
            "height": 40,
            "w": 24,
            "after_unicode": 48,
            "get_inputs#2": 32,
        },
    )
    expected = (
        SIZES_SRC.replace("dim   =  2048 * 2", "dim   =  1000")
        .replace("input_shape = (8192 * 2, 7)", "input_shape = (48, 7)")
        .replace("single = (33,)", "single = (17,)")
        .replace("layer_sizes = [1024] * 3", "layer_sizes = [80] * 3")
        .replace("height = width = 128", "height = width = 40")
        .replace("h, w = 224, 96", "h, w = 224, 24")
        .replace("after_unicode = 96", "after_unicode = 48")
        .replace("torch.rand(batch_size, 3, 224, 224)", "torch.rand(batch_size, 3, 32, 224)")
    )
    assert new == expected
    module = _module(new)
    assert (module.dim, module.hidden, module.bias_shape, module.width) == (1000, 4000, (1000, 1), 40)
    assert module.layer_sizes == [80, 80, 80]
    assert [tuple(t.shape) for t in module.get_inputs()] == [(16, 3, 32, 224), (12, 1000), (16, 40)]
    assert apply_overrides(SIZES_SRC, {}) == SIZES_SRC


def test_apply_overrides_keeps_crlf_and_unparenthesised_tuples():
    src = "import torch\r\nshape = 64, 32  # note\r\nn = 9\r\n"
    assert (
        apply_overrides(src, {"shape[0]": 48, "n": 10})
        == "import torch\r\nshape = 48, 32  # note\r\nn = 10\r\n"
    )


@pytest.mark.parametrize(
    "key",
    ["hidden", "width", "bias_shape[0]", "flag", "eps", "rebound", "width_in_class", "inner", "local", "x"],
)
def test_apply_overrides_rejects_what_is_not_a_slot(key):
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        apply_overrides(SIZES_SRC, {key: 8})


def test_apply_overrides_rejects_wrong_types():
    for bad in ((1, 2), True, 3.0):
        with pytest.raises(ValueError, match="'dim'"):
            apply_overrides(SIZES_SRC, {"dim": bad})


# ---------------------------------------------------------------- measuring


def test_measure_counts_inputs_weights_and_outputs():
    assert measure_elements(RELU) == 2 * 16 * 16384
    assert measure_elements(MATMUL) == 3 * 1024 * 1024
    m = measure(CONV)
    assert (m.inputs, m.weights, m.outputs) == (16 * 3 * 256 * 256, 64 * 3 * 9 + 64, 16 * 64 * 254 * 254)
    assert m.shapes == ((16, 3, 256, 256),)
    assert measure(GEMM).weights == 8192 * 8192 + 8192  # a linear layer's weights are what the kernels read


def test_measure_allocates_nothing():
    huge = RELU.replace("batch_size = 16\ndim = 16384", "batch_size = 1 << 20\ndim = 1 << 20")
    assert measure_elements(huge) == 2 * 2**40
    assert torch.get_default_device() == torch.device("cpu")
    assert torch.empty(1).device.type == "cpu"


def test_measure_falls_back_when_an_op_cannot_run_on_meta():
    src = _problem(
        "        self.lin = nn.Linear(32, 16)\n\n    def forward(self, x):\n        return x * float(x.sum())",
        "n = 100",
        "[torch.randn(n, 32)]",
    )
    assert measure_elements(src) == 100 * 32 + 32 * 16 + 16  # inputs + parameters, no outputs


def test_measure_raises_problem_errors_and_restores_the_device():
    bad = RELU.replace("return [torch.randn(batch_size, dim)]", "raise KeyError('no inputs')")
    with pytest.raises(KeyError, match="no inputs"):
        measure_elements(bad)
    assert torch.get_default_device() == torch.device("cpu")
    asserting = RELU.replace(
        "return torch.relu(x)", "assert x.shape[1] % 3 == 0, 'dim'\n        return torch.relu(x)"
    )
    with pytest.raises(AssertionError):
        measure_elements(asserting)
    sets_device = RELU.replace("batch_size = 16", "torch.set_default_device('meta')\nbatch_size = 16")
    assert measure_elements(sets_device) == 2 * 16 * 16384
    assert torch.get_default_device() == torch.device("cpu")


CUDA_INPUTS = RELU.replace("torch.randn(batch_size, dim)", "torch.randn(batch_size, dim, device='cuda')")


@pytest.mark.parametrize(
    "src",
    [
        CUDA_INPUTS,
        RELU.replace("torch.randn(batch_size, dim)", "torch.randn(batch_size, dim).cuda()"),
        RELU.replace(
            "torch.randn(batch_size, dim)", "torch.randn(batch_size, dim).to('cuda', torch.float16)"
        ),
        RELU.replace(
            "super().__init__()", "super().__init__()\n        self.w = nn.Parameter(torch.ones(1)).cuda()"
        ),
    ],
)
def test_a_problem_on_cuda_is_unavailable_here_and_measured_on_meta_for_a_gpu(src):
    with pytest.raises(Unavailable, match="CUDA device"):
        measure(src, cuda_available=False)
    assert measure(src, cuda_available=True).inputs == 16 * 16384  # on meta: nothing touched a GPU


def test_a_missing_package_is_unavailable_with_its_name():
    src = RELU.replace("import torch\n", "import torch\nfrom einops_not_installed import rearrange\n", 1)
    with pytest.raises(Unavailable, match="'einops_not_installed', which is not installed"):
        measure_elements(src)
    # a problem's own import error of a present module stays the problem's error
    with pytest.raises(ImportError):
        measure_elements(RELU.replace("import torch\n", "from torch import no_such_name\n", 1))


@pytest.mark.parametrize(
    "layer, batch_first, bidirectional, with_h0",
    [
        ("LSTM", False, True, True),
        ("GRU", True, False, False),
        ("RNN", False, True, True),
        ("LSTM", True, False, False),
    ],
)
def test_recurrent_layers_are_measured_by_shape_exactly(layer, batch_first, bidirectional, with_h0):
    d = 2 if bidirectional else 1
    h0 = f"torch.randn(2 * {d}, batch, 24)"
    if layer == "LSTM":
        h0 = f"({h0}, {h0})"
    src = _problem(
        f"        self.rnn = nn.{layer}(16, 24, 2, batch_first={batch_first}, bidirectional={bidirectional})\n\n"
        f"    def forward(self, x{', h' if with_h0 else ''}):\n"
        f"        return self.rnn(x{', h' if with_h0 else ''})",
        "batch = 3\nseq = 11",
        f"[torch.randn({'batch, seq' if batch_first else 'seq, batch'}, 16){', ' + h0 if with_h0 else ''}]",
    )
    module = _module(src)
    inputs = module.get_inputs()
    model = module.Model()

    def count(value) -> int:
        return value.numel() if isinstance(value, torch.Tensor) else sum(count(v) for v in value)

    real = count(inputs) + count(list(model.parameters())) + count(model(*inputs))  # run for real, on CPU
    assert measure_elements(src) == real


# ---------------------------------------------------------------- planning: the CPU budget


def test_softmax_keeps_a_row_longer_than_one_block():
    """Batch shrinks first: the reduction dim stays above 1024, so a kernel that handles one block of 1024
    per row fails (halving the largest size first left rows of 512)."""
    variants, notes = plan_variants(SOFTMAX, element_budget=16384, count=3, seed=0)
    assert [v.name for v in variants] == ["scaled", "perturbed", "perturbed2"]
    for v in variants:
        values = _values(v)
        assert values["batch_size"] == 2 and values["dim"] > 2048
        assert v.elements == measure_elements(v.source) <= 16384
    assert variants[0].elements > 16384 / 2  # as large as fits: many program instances
    assert notes[0].startswith("scaled: 3221225472 -> ") and "batch_size 4096->2, dim 393216->" in notes[0]


def test_matmul_shapes_keep_their_character():
    small_k = MATMUL.replace("M = 1024\nK = 1024\nN = 1024", "M = 16384 * 2\nK = 32 * 2\nN = 16384 * 2")
    large_k = MATMUL.replace("M = 1024\nK = 1024\nN = 1024", "M = 256\nK = 131072 * 4\nN = 256")
    for src, check in (
        (small_k, lambda v: v["K"] <= 64 and v["M"] >= 4 * v["K"] and v["N"] >= 4 * v["K"]),
        (large_k, lambda v: v["K"] >= 8 * v["M"] and v["M"] >= 8 and v["N"] >= 8),
        (MATMUL_EXPR, lambda v: v["K"] > v["N"] > v["M"] >= 16),
    ):
        variants, _ = plan_variants(src, element_budget=16384, count=2, seed=0)
        assert len(variants) == 2
        for v in variants:
            assert v.elements <= 16384 and check(_values(v)), (v.overrides, v.elements)


def test_conv_shrinks_every_dimension_and_keeps_the_structure():
    budget = 16384
    variants, notes = plan_variants(CONV, element_budget=budget, count=3, seed=0)
    assert variants[0].name == "scaled" and len(variants) == 3
    for v in variants:
        assert v.elements <= budget and not {"in_channels", "kernel_size"} & set(v.overrides)
        values = _values(v)
        assert values["in_channels"] == 3 and values["kernel_size"] == 3
        assert values["batch_size"] >= 2 and values["out_channels"] >= 2 and values["height"] >= 4
    assert {"batch_size", "out_channels", "height", "width"} <= set(variants[0].overrides)
    assert "batch_size 16->2" in notes[0] and "out_channels 64->" in notes[0]


def test_weights_count_so_a_linear_layer_shrinks_too():
    variants, _ = plan_variants(GEMM, element_budget=16384, count=2, seed=0)
    for v in variants:
        m = measure(v.source)
        assert m.elements <= 16384 and m.weights < 16384
        values = _values(v)
        assert values["batch_size"] >= 2 and values["in_features"] >= 16 and values["out_features"] >= 16


def test_groups_keep_two_channels_each():
    """The uniform stages keep two channels per group (the one-at-a-time last resort may not: it cannot
    tell channels from a spatial size the group count happens to divide)."""
    src = _problem(
        "        self.norm = nn.GroupNorm(num_groups, features)\n\n    def forward(self, x):\n        return self.norm(x)",
        "batch_size = 112\nfeatures = 64\nnum_groups = 8\ndim1 = 512\ndim2 = 512",
        "[torch.randn(batch_size, features, dim1, dim2)]",
        init="[num_groups, features]",
        init_args=", num_groups, features",
    )
    variants, _ = plan_variants(src, element_budget=20000, count=2, seed=0)
    assert len(variants) == 2 and all(v.elements <= 20000 for v in variants)
    scaled = _values(variants[0])
    assert scaled["features"] % 8 == 0 and scaled["features"] >= 16 and scaled["num_groups"] == 8


def test_a_size_the_reference_pins_does_not_stall_the_others():
    """A dilated 9-wide kernel needs width >= 25: uniform scaling stalls, one size at a time gets there."""
    src = _problem(
        "        self.conv = nn.Conv2d(channels, channels, (3, 9), dilation=(1, 3))\n\n"
        "    def forward(self, x):\n        return self.conv(x)",
        "batch_size = 8\nchannels = 32\nheight = 512\nwidth = 512",
        "[torch.randn(batch_size, channels, height, width)]",
        init="[channels]",
        init_args=", channels",
    )
    variants, _ = plan_variants(src, element_budget=16384, count=2, seed=0)
    assert len(variants) == 2
    for v in variants:
        assert v.elements <= 16384 and _values(v)["width"] >= 25


def test_a_ratio_the_reference_needs_survives_scaling():
    """LayerNorm(out_channels) over the last axis of a stride-2 transposed conv: out_channels == 2 * W."""
    src = _problem(
        "        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)\n"
        "        self.norm = nn.LayerNorm(out_channels)\n\n"
        "    def forward(self, x):\n        return self.norm(self.conv(x))",
        "batch_size = 32\nin_channels = 32\nout_channels = 64\nH, W = 32, 32",
        "[torch.randn(batch_size, in_channels, H, W)]",
        init="[in_channels, out_channels]",
        init_args=", in_channels, out_channels",
    )
    for budget in (16384, None):
        variants, _ = plan_variants(src, element_budget=budget, count=2, seed=0)
        assert len(variants) == 2
        for v in variants:
            values = _values(v)
            assert values["out_channels"] == 2 * values["W"] and (budget is None or v.elements <= budget)


FIXED_WEIGHTS = _problem(
    "        self.table = nn.Parameter(torch.randn(48000))\n\n"
    "    def forward(self, x):\n        return x + self.table[: x.shape[-1]]",
    "batch_size = 64\ndim = 4096",
    "[torch.randn(batch_size, dim)]",
)


def test_a_problem_that_cannot_fit_says_so_and_is_not_shrunk_to_nothing():
    variants, notes = plan_variants(FIXED_WEIGHTS, element_budget=16384, count=2, seed=0)
    assert len(variants) == 2
    values = _values(variants[0])
    assert values["batch_size"] == 2 and values["dim"] >= 16  # not driven to 2: it would not fit anyway
    assert any(n.startswith("cannot fit the element budget: the smallest variant has") for n in notes)
    reply = plan_request(FIXED_WEIGHTS, element_budget=16384, count=2, seed=0)
    assert reply["unavailable"] is None and 2.5 < reply["timeout_scale"] < 4
    assert (
        reply["notes"][-1]
        == f"run budget stretched {reply['timeout_scale']:.1f}x for the elements over the budget"
    )
    far = plan_request(FIXED_WEIGHTS.replace("48000", "480000"), element_budget=16384, count=2, seed=0)
    assert (
        far["unavailable"].startswith("too large for the CPU interpreter")
        and "judge it on a GPU" in far["unavailable"]
    )
    assert far["unavailable"] in far["notes"] and far["variants"]


def test_plan_request_reports_what_the_machine_lacks():
    reply = plan_request(CUDA_INPUTS, element_budget=16384, count=2, seed=0)
    assert reply["ok"] and reply["variants"] == [] and "CUDA device" in reply["unavailable"]
    assert reply["notes"] == [reply["unavailable"]]


def test_file_that_fits_is_variant_zero():
    variants, notes = plan_variants(RELU, element_budget=10**6, count=2, seed=0)
    assert [v.name for v in variants] == ["file", "perturbed"]
    assert variants[0].overrides == {} and notes == []
    assert measure_elements(variants[1].source) <= 10**6


def test_get_inputs_literals_scale_like_constants():
    src = _problem(
        "        self.conv = nn.Conv2d(3, 8, 3)\n\n    def forward(self, x):\n        return self.conv(x)",
        "batch_size = 10",
        "[torch.rand(batch_size, 3, 224, 224)]",
    )
    variants, _ = plan_variants(src, element_budget=16384, count=2, seed=0)
    assert len(variants) == 2 and all(v.elements <= 16384 for v in variants)
    assert {"get_inputs#1", "get_inputs#2"} <= set(variants[0].overrides)  # the 224s, not the 3 channels


# ---------------------------------------------------------------- planning: shapes and divisibility


def test_gpu_plan_is_file_then_perturbed_same_magnitude():
    variants, notes = plan_variants(MATMUL, element_budget=None, count=3, seed=0)
    assert [v.name for v in variants] == ["file", "perturbed", "perturbed2"]
    assert variants[0].overrides == {} and variants[0].source == MATMUL
    assert notes == []
    for v in variants[1:]:
        values = _values(v)
        for name in "MKN":
            assert 0.45 * 1024 <= values[name] <= 1024 and values[name] % 16 == 0
        assert any(values[n] & (values[n] - 1) for n in "MKN")  # some size is not a power of two


def test_sizes_written_as_expressions_are_perturbed():
    """`N = 2048 * 2` used to count as no size at all: a candidate hard-coding 4096 passed."""
    square = (
        MATMUL.replace("M = 1024\nK = 1024\nN = 1024", "N = 2048 * 2")
        .replace("M, K", "N, N")
        .replace("K, N", "N, N")
    )
    variants, notes = plan_variants(square, element_budget=None, count=2, seed=0)
    assert [v.name for v in variants] == ["file", "perturbed"] and notes == []
    assert _values(variants[1])["N"] != 4096 and "N = 2048 * 2" not in variants[1].source


def test_power_of_two_sizing_does_not_lock_sizes_together():
    src = GEMM.replace(
        "batch_size = 1024\nin_features = 8192\nout_features = 8192",
        "batch_size = 512\nin_features = 2048\nout_features = 4096",
    )
    variants, _ = plan_variants(src, element_budget=None, count=3, seed=0)
    pairs = [(_values(v)["in_features"], _values(v)["out_features"]) for v in variants[1:]]
    assert any(o % i for i, o in pairs), pairs  # 2048 | 4096 in the file, but not a relation


def test_equal_sizes_the_reference_needs_equal_move_together():
    src = _problem(
        "    def forward(self, x):\n        return x @ x", "M = 1024\nN = 1024", "[torch.randn(M, N)]"
    )
    variants, notes = plan_variants(src, element_budget=2 * 256 * 256, count=3, seed=0)
    assert variants[0].overrides == {"M": 256, "N": 256}
    assert [v.name for v in variants] == ["scaled", "perturbed", "perturbed2"]
    for v in variants[1:]:
        values = _values(v)
        assert values["M"] == values["N"] < 256
    # Independent factors are tried first and rejected; the next attempt moves equal sizes together.
    assert [n.split(" reference")[0] for n in notes[1:]] == [
        "variant perturbed: 1 shape proposal(s) rejected:",
        "variant perturbed2: 1 shape proposal(s) rejected:",
    ]


@pytest.mark.parametrize("budget", [None, 20000])
def test_divisibility_is_kept(budget):
    heads = set()
    for seed in range(8):
        variants, _ = plan_variants(DIVISIBLE, element_budget=budget, count=4, seed=seed, measure=lambda s: 0)
        assert len(variants) == 4
        for v in variants[1:]:
            values = _values(v)
            assert values["channels"] % 5 == 0 and values["channels"] % 8 == 0  # groups, and 120's 2-power
            assert values["dim"] % values["num_heads"] == 0 and values["dim"] % 16 == 0
            assert values["num_heads"] % 4 == 0 and values["groups"] == 5 and values["batch_size"] == 2
            heads.add(values["num_heads"])
    assert heads == {8, 12}


def test_divisibility_with_the_real_reference():
    variants, notes = plan_variants(DIVISIBLE, element_budget=None, count=4, seed=0)
    assert [v.name for v in variants] == ["file", "perturbed", "perturbed2", "perturbed3"] and notes == []
    assert {"channels", "dim", "num_heads", "seq", "spatial"} == set().union(*(v.overrides for v in variants))
    for v in variants:
        measure_elements(v.source)  # GroupNorm and attention accept every variant


def test_small_and_structure_constants_never_change():
    src = _problem(
        "    def forward(self, x):\n        return torch.sum(x, dim=axis)",
        "axis = 1\nkernel_size = 11\nstride = 2\ngroups = 8\nneg = -1\nbatch = 64\nchannels = 100",
        "[torch.randn(batch, channels)]",
    )
    for budget, seed in itertools.product((None, 300), range(5)):
        variants, _ = plan_variants(src, element_budget=budget, count=3, seed=seed)
        for v in variants:
            assert set(v.overrides) <= {"batch", "channels"}  # kernel_size = 11 is structure by its name


def test_variants_are_distinct():
    for src, budget in (
        (RELU, None),
        (RELU, 65536),
        (MATMUL, None),
        (MATMUL, 3 * 256 * 256),
        (CONV, 1 << 20),
    ):
        variants, _ = plan_variants(src, element_budget=budget, count=4, seed=3)
        assert len(variants) == 4
        assert len({tuple(sorted(v.overrides.items())) for v in variants}) == 4


def test_sizes_at_their_floor_step_up():
    src = _problem("    def forward(self, x):\n        return x + 1", "batch = 3", "[torch.randn(batch)]")
    variants, _ = plan_variants(src, element_budget=None, count=3, seed=0)
    assert [v.overrides for v in variants] == [{}, {"batch": 2}, {"batch": 4}]  # never 1: the floor is 2


def test_no_size_constants():
    src = _problem("    def forward(self, x):\n        return x + 1", "n = 8", "[torch.randn(n)]")
    variants, notes = plan_variants(src, element_budget=None, count=3, seed=0)
    assert [v.name for v in variants] == ["file"]
    assert notes == ["no size constants: shape variation impossible"]


def test_reference_rejecting_some_sizes_yields_notes_not_invalid_variants():
    src = _problem(
        "    def forward(self, x):\n        assert x.shape[1] % 3 == 0, 'dim must be a multiple of 3'\n"
        "        return torch.relu(x)",
        "batch_size = 4\ndim = 384",
        "[torch.randn(batch_size, dim)]",
    )
    variants, notes = plan_variants(src, element_budget=None, count=3, seed=0)
    assert len(variants) == 3
    assert all(_values(v)["dim"] % 3 == 0 for v in variants)
    assert any("rejected: reference raised AssertionError: dim must be a multiple of 3" in n for n in notes)


def test_hidden_divisibility_is_found_by_keeping_the_odd_factor():
    src = _problem(
        "    def forward(self, x):\n        assert x.shape[1] % 7 == 0, 'sevens'\n        return torch.relu(x)",
        "batch_size = 4\ndim = 448",  # 448 = 7 * 64: multiples of 16 rarely divide by 7, multiples of 112 do
        "[torch.randn(batch_size, dim)]",
    )
    variants, notes = plan_variants(src, element_budget=None, count=3, seed=0)
    assert len(variants) == 3 and all(_values(v)["dim"] % 7 == 0 for v in variants)
    assert all(n.endswith("reference raised AssertionError: sevens") for n in notes)


def test_a_pinned_size_does_not_sink_every_proposal():
    """224 is fixed by a Linear over the flattened image: moving another size still gives a variant."""
    src = _problem(
        "        self.fc = nn.Linear(3 * 224 * 224, num_classes)\n\n"
        "    def forward(self, x):\n        return self.fc(x.flatten(1))",
        "batch_size = 10\nnum_classes = 1000",
        "[torch.rand(batch_size, 3, 224, 224)]",
        init="[num_classes]",
        init_args=", num_classes",
    )
    variants, _ = plan_variants(src, element_budget=None, count=3, seed=0)
    assert len(variants) == 3
    for v in variants[1:]:
        assert "get_inputs#1" not in v.overrides and "get_inputs#2" not in v.overrides


def test_reference_rejecting_every_other_size_skips_the_variant():
    src = _problem(
        "    def forward(self, x):\n        assert x.shape[1] == 384, 'fixed'\n        return torch.relu(x)",
        "rows = 4\ndim = 384",
        "[torch.randn(rows, dim)]",
    )
    variants, notes = plan_variants(src, element_budget=None, count=2, seed=0)
    assert [v.name for v in variants] == ["file"]
    assert notes == ["variant perturbed skipped: reference raised AssertionError: fixed"]


def test_a_failing_file_raises():
    bad = RELU.replace("return [torch.randn(batch_size, dim)]", "raise RuntimeError('broken problem')")
    with pytest.raises(RuntimeError, match="broken problem"):
        plan_variants(bad, element_budget=None)


def test_deterministic_for_a_seed_and_measure_calls_are_few():
    calls: list[str] = []

    def counting(source: str) -> int:
        calls.append(source)
        return measure_elements(source)

    first, _ = plan_variants(MATMUL, element_budget=None, count=4, seed=7, measure=counting)
    assert len(calls) == len(set(calls)) == 4  # the file and three perturbations, none measured twice
    again, _ = plan_variants(MATMUL, element_budget=None, count=4, seed=7)
    other, _ = plan_variants(MATMUL, element_budget=None, count=4, seed=8)
    assert first == again
    assert [v.overrides for v in first] != [v.overrides for v in other]
    calls.clear()
    plan_variants(SOFTMAX, element_budget=16384, count=2, seed=0, measure=counting)
    assert len(calls) <= 12  # the ladder search interpolates, it does not halve one size per measurement


# ---------------------------------------------------------------- generated problems and the command


def test_generated_problems_all_fit_with_two_variants():
    from kernelrl.data_pipeline.generate import generate_problems

    for p in generate_problems(24, seed=11):
        for budget in (16384, None):
            variants, notes = plan_variants(p.source, element_budget=budget, count=2, seed=5)
            assert len(variants) == 2, (p.name, notes)
            assert budget is None or all(v.elements <= budget for v in variants), (p.name, notes)
            for v in variants:  # no size that was > 1 in the file collapses to 1
                assert all(val >= 2 for k, val in v.overrides.items() if find_slots(p.source)[k] > 1)


def test_variants_command_over_generated_problems(tmp_path):
    import subprocess
    import sys

    from kernelrl.data_pipeline.generate import generate_problems, write_problems

    root = write_problems(generate_problems(8, seed=2), tmp_path / "gen")
    (root / "needs_gpu.py").write_text(CUDA_INPUTS)
    r = subprocess.run(
        [sys.executable, "-m", "kernelrl.cli", "variants", "--problems", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["budget"] == 16384 and len(out["problems"]) == 9
    by_name = {p["problem"]: p for p in out["problems"]}
    gpu = by_name["needs_gpu.py"]
    assert gpu["status"] == "unavailable" and "CUDA device" in gpu["notes"][0]
    for name, p in by_name.items():
        if name != "needs_gpu.py":
            assert p["status"] == "planned" and len(p["variants"]) == 2
            assert all(v["elements"] <= 16384 and v["inputs"] for v in p["variants"])
    (row,) = out["summary"]
    assert (row["problems"], row["planned"], row["unavailable"], row["errors"]) == (9, 8, 1, 0)
    assert row["two_variants"] == row["within_budget"] == 8


def test_variants_command_on_the_bundled_problems(capsys):
    from kernelrl.cli import main
    from kernelrl.sandbox.problem import BUNDLED_DIR

    assert main(["variants", "--problems", str(BUNDLED_DIR), "--device", "cuda"]) == 0
    text = capsys.readouterr().out
    assert "softmax/problem.py  [planned]  no budget" in text
    assert "| - | 15 | 15 | 0 | 0 | 15 | 15 | - / - / - |" in text
    assert main(["variants", "--problems", str(BUNDLED_DIR / "softmax"), "--budget", "4096"]) == 0
    text = capsys.readouterr().out
    assert "budget 4096" in text and "OVER" not in text and "scaled" in text


def test_variants_command_usage_errors(tmp_path, capsys):
    from kernelrl.cli import main

    assert main(["variants", "--problems", str(tmp_path / "nope")]) == 2
    assert "problem directory not found" in capsys.readouterr().err
    assert main(["variants", "--problems", str(tmp_path)]) == 2
    assert "no KernelBench problem files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["variants", "--problems", str(tmp_path), "--budget", "0"])


# ---------------------------------------------------------------- in the sandbox


ONE_BLOCK_SOFTMAX = """
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(out_ptr + row * n_cols + cols, e / tl.sum(e, axis=0), mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        softmax_kernel[(x.shape[0],)](x, out, x.shape[1], BLOCK=1024)  # assumes a row fits one block
        return out
"""


def test_a_one_block_softmax_fails_on_the_scaled_problem(evaluator, problems):
    """The bundled softmax (16 x 16384) used to be scaled to rows of 512: this kernel passed."""
    verdict = evaluator.evaluate(problems["softmax"], ONE_BLOCK_SOFTMAX)
    assert verdict.status == "mismatch", verdict.to_json()
    assert {c.variant for c in verdict.checks} == {"scaled", "perturbed"}
    assert not any(c.passed for c in verdict.checks)


def test_a_problem_needing_cuda_is_not_executed_with_the_reason(evaluator, problems):
    from kernelrl.sandbox.problem import load_problem

    problem = load_problem(CUDA_INPUTS, name="relu_on_cuda")
    verdict = evaluator.evaluate(problem, problems["relu"].extras["solution"])
    assert verdict.status == "not_executed" and not verdict.executed and not verdict.checks
    assert "CUDA device" in verdict.error and verdict.notes == [verdict.error]
