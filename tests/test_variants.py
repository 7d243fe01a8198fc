"""Shape variants: constants are found and rewritten exactly, and plans keep divisibility and the budget."""

from __future__ import annotations

import itertools
import types

import pytest
import torch

from kernelrl.sandbox.variants import apply_overrides, find_constants, measure_elements, plan_variants

CONSTANTS_SRC = """\
import torch
import torch.nn as nn

# sizes (comments and odd spacing must survive a rewrite)
batch_size = 16  # rows
dim   =  16384
hidden = dim * 4        # derived: follows dim
input_shape = (128, 4096)  # a tuple
single = (33,)
offset = -3
reduce_dim: int = 1
flag = True
eps = 1e-5
a = b = 4
rebound = 10
rebound = 20
ünïcode = 7; after_unicode = 96


class Model(nn.Module):
    width = 999

    def __init__(self):
        super().__init__()
        inner = 12345

    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    local = 777
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
"""


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("variant_under_test")
    exec(compile(source, "<test>", "exec"), module.__dict__)
    return module


def _problem(body: str, constants: str, inputs: str, init: str = "[]", init_args: str = "") -> str:
    return (
        "import torch\nimport torch.nn as nn\n\n\n"
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
CONV = _problem(
    "        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)\n\n"
    "    def forward(self, x):\n        return self.conv(x)",
    "batch_size = 16\nin_channels = 3\nout_channels = 64\nkernel_size = 3\nheight = 256\nwidth = 256",
    "[torch.randn(batch_size, in_channels, height, width)]",
    init="[in_channels, out_channels, kernel_size]",
    init_args=", in_channels, out_channels, kernel_size",
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
    return {k: v for k, v in vars(_module(variant.source)).items() if type(v) in (int, tuple)}


# ---------------------------------------------------------------- find / apply


def test_find_constants_module_level_literals_only():
    assert find_constants(CONSTANTS_SRC) == {
        "batch_size": 16,
        "dim": 16384,
        "input_shape": (128, 4096),
        "single": (33,),
        "offset": -3,
        "reduce_dim": 1,
        "ünïcode": 7,
        "after_unicode": 96,
    }


def test_apply_overrides_rewrites_only_the_literals():
    new = apply_overrides(
        CONSTANTS_SRC,
        {
            "dim": 1000,
            "input_shape": (48, 80),
            "single": (17,),
            "offset": -5,
            "reduce_dim": 2,
            "after_unicode": 48,
        },
    )
    expected = (
        CONSTANTS_SRC.replace("dim   =  16384", "dim   =  1000")
        .replace("input_shape = (128, 4096)", "input_shape = (48, 80)")
        .replace("single = (33,)", "single = (17,)")
        .replace("offset = -3", "offset = -5")
        .replace("reduce_dim: int = 1", "reduce_dim: int = 2")
        .replace("after_unicode = 96", "after_unicode = 48")
    )
    assert new == expected
    module = _module(new)
    assert (module.dim, module.hidden, module.input_shape, module.single) == (1000, 4000, (48, 80), (17,))
    assert apply_overrides(CONSTANTS_SRC, {}) == CONSTANTS_SRC


def test_apply_overrides_keeps_crlf_and_unparenthesised_tuples():
    src = "import torch\r\nshape = 64, 32  # note\r\nn = 9\r\n"
    assert (
        apply_overrides(src, {"shape": (48, 16), "n": 10})
        == "import torch\r\nshape = (48, 16)  # note\r\nn = 10\r\n"
    )


@pytest.mark.parametrize("name", ["hidden", "flag", "eps", "a", "rebound", "width", "inner", "local", "nope"])
def test_apply_overrides_rejects_what_is_not_a_constant(name):
    with pytest.raises(ValueError, match=repr(name)):
        apply_overrides(CONSTANTS_SRC, {name: 8})


def test_apply_overrides_rejects_wrong_types():
    with pytest.raises(ValueError, match="'dim'"):
        apply_overrides(CONSTANTS_SRC, {"dim": (1, 2)})
    with pytest.raises(ValueError, match="'input_shape'"):
        apply_overrides(CONSTANTS_SRC, {"input_shape": 5})
    with pytest.raises(ValueError, match="'dim'"):
        apply_overrides(CONSTANTS_SRC, {"dim": True})


# ---------------------------------------------------------------- measuring


def test_measure_counts_inputs_and_outputs():
    assert measure_elements(RELU) == 2 * 16 * 16384
    assert measure_elements(MATMUL) == 3 * 1024 * 1024
    assert measure_elements(CONV) == 16 * 3 * 256 * 256 + 16 * 64 * 254 * 254


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
    assert measure_elements(src) == 100 * 32 + 32 * 16 + 16  # inputs + parameters


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


# ---------------------------------------------------------------- planning


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


def test_budget_scales_relu_by_halving():
    variants, notes = plan_variants(RELU, element_budget=65536, count=3, seed=0)
    assert [v.name for v in variants] == ["scaled", "perturbed", "perturbed2"]
    assert variants[0].overrides == {
        "dim": 2048
    }  # 2 * 16 * 2048 == 65536; batch_size = 16 cannot go below 16
    assert notes == ["scaled: 524288 -> 65536 elements to fit the budget of 65536"]
    for v in variants:
        assert measure_elements(v.source) <= 65536
        assert _values(v)["batch_size"] == 16


def test_budget_scales_matmul_and_perturbs_each_dimension():
    budget = 3 * 256 * 256
    variants, _ = plan_variants(MATMUL, element_budget=budget, count=3, seed=0)
    assert variants[0].name == "scaled"
    assert variants[0].overrides == {"M": 256, "K": 256, "N": 256}
    for v in variants:
        assert measure_elements(v.source) <= budget
    perturbed = [_values(v) for v in variants[1:]]
    assert all(len({p["M"], p["K"], p["N"]}) > 1 for p in perturbed)  # M = K = N vary independently


def test_budget_scales_conv_and_keeps_small_constants():
    budget = 1 << 20
    variants, _ = plan_variants(CONV, element_budget=budget, count=3, seed=0)
    assert variants[0].name == "scaled"
    assert measure_elements(CONV) > budget
    for v in variants:
        assert measure_elements(v.source) <= budget
        assert not {"in_channels", "kernel_size"} & set(v.overrides)
        values = _values(v)
        assert values["in_channels"] == 3 and values["kernel_size"] == 3 and values["batch_size"] == 16


def test_file_that_fits_is_variant_zero():
    variants, notes = plan_variants(RELU, element_budget=10**6, count=2, seed=0)
    assert [v.name for v in variants] == ["file", "perturbed"]
    assert variants[0].overrides == {} and notes == []
    assert measure_elements(variants[1].source) <= 10**6


def test_power_of_two_sizing_does_not_lock_sizes_together():
    src = _problem(
        "        self.fc = nn.Linear(in_features, out_features)\n\n    def forward(self, x):\n        return self.fc(x)",
        "batch_size = 512\nin_features = 2048\nout_features = 4096",
        "[torch.randn(batch_size, in_features)]",
        init="[in_features, out_features]",
        init_args=", in_features, out_features",
    )
    for budget in (None, 65536):
        variants, _ = plan_variants(src, element_budget=budget, count=3, seed=0)
        pairs = [(_values(v)["in_features"], _values(v)["out_features"]) for v in variants[1:]]
        # 2048 | 4096 in the file, but out_features need not stay a multiple of in_features
        assert any(o % i for i, o in pairs), pairs


def test_equal_sizes_the_reference_needs_equal_shrink_together():
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


def test_tuple_constants_scale_elementwise():
    src = _problem(
        "    def forward(self, x):\n        return x * 2",
        "input_shape = (128, 4096)",
        "[torch.randn(*input_shape)]",
    )
    variants, _ = plan_variants(src, element_budget=2 * 64 * 64, count=2, seed=0)
    assert variants[0].overrides == {"input_shape": (64, 64)}
    assert all(measure_elements(v.source) <= 2 * 64 * 64 for v in variants)


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
    assert {"channels", "dim", "num_heads", "seq"} == set().union(*(v.overrides for v in variants))
    for v in variants:
        measure_elements(v.source)  # GroupNorm and attention accept every variant


def test_small_constants_never_change():
    src = _problem(
        "    def forward(self, x):\n        return torch.sum(x, dim=axis)",
        "axis = 1\nkernel_size = 3\nstride = 2\ngroups = 8\nneg = -1\nbatch = 64\nchannels = 100",
        "[torch.randn(batch, channels)]",
    )
    for budget, seed in itertools.product((None, 300), range(5)):
        variants, _ = plan_variants(src, element_budget=budget, count=3, seed=seed)
        for v in variants:
            assert set(v.overrides) <= {"batch", "channels"}
            assert _values(v)["channels"] % 4 == 0  # 100 = 4 * 25


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


def test_only_pinned_sizes_step_up_by_a_quantum():
    src = _problem("    def forward(self, x):\n        return x + 1", "n = 16", "[torch.randn(n)]")
    variants, _ = plan_variants(src, element_budget=None, count=3, seed=0)
    assert [v.overrides for v in variants] == [{}, {"n": 32}, {"n": 48}]


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
    assert [v.overrides for v in variants] == [{}, {"dim": 224}, {"dim": 336}]
    assert notes == [
        f"variant {n}: 3 shape proposal(s) rejected: reference raised AssertionError: sevens"
        for n in ("perturbed", "perturbed2")
    ]


def test_reference_rejecting_every_other_size_skips_the_variant():
    src = _problem(
        "    def forward(self, x):\n        assert x.shape[1] == 384, 'fixed'\n        return torch.relu(x)",
        "batch_size = 4\ndim = 384",
        "[torch.randn(batch_size, dim)]",
    )
    variants, notes = plan_variants(src, element_budget=None, count=2, seed=0)
    assert [v.name for v in variants] == ["file"]
    assert notes == ["variant perturbed skipped: reference raised AssertionError: fixed"]


def test_a_failing_file_raises():
    bad = RELU.replace("return [torch.randn(batch_size, dim)]", "raise RuntimeError('broken problem')")
    with pytest.raises(RuntimeError, match="broken problem"):
        plan_variants(bad, element_budget=None)


def test_unreachable_budget_keeps_the_smallest_with_a_note():
    variants, notes = plan_variants(RELU, element_budget=10, count=2, seed=0)
    assert variants[0].name == "scaled" and variants[0].overrides == {"dim": 16}
    assert "scaled still exceeds the element budget (512 > 10): nothing can shrink further" in notes
    assert any(n.startswith("variant perturbed skipped") for n in notes)


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
