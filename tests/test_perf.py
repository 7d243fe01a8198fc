"""kernelrl.perf without a GPU: static features, the device table, speed of light, the shipped data, the CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from kernelrl.cli import main as kernelrl_main
from kernelrl.perf import data, devices
from kernelrl.perf.features import (
    Features,
    features_of_files,
    looks_like_problem,
    problem_features,
    profile,
    rnn_flops,
    rnn_launches,
)
from kernelrl.perf.roofline import sol_fraction, speed_of_light
from kernelrl.sandbox import timing

RELU_HUGE = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)

batch_size = 4096
dim = 393216

def get_inputs():
    return [torch.rand(batch_size, dim)]

def get_init_inputs():
    return []
"""

CONV = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, cin, cout, k, groups):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=1, groups=groups)
        self.deconv = nn.ConvTranspose2d(cout, cin, k, stride=2)

    def forward(self, x):
        y = self.conv(x)
        return self.deconv(y.view(y.shape).transpose(2, 3).transpose(2, 3))

def get_inputs():
    return [torch.rand(8, 16, 32, 32)]

def get_init_inputs():
    return [16, 32, 3, 4]
"""

CUDA_IN_FORWARD = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return x @ x.T + torch.ones(x.shape[0], x.shape[0], device="cuda")

def get_inputs():
    return [torch.rand(1024, 512, device="cuda")]

def get_init_inputs():
    return []
"""

ITEM_IN_INIT = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, n):
        super().__init__()
        rates = [x.item() for x in torch.linspace(0, 0.1, n)]
        self.layers = nn.ModuleList(nn.Linear(64, 64) for _ in rates)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

def get_inputs():
    return [torch.rand(32, 64)]

def get_init_inputs():
    return [3]
"""

LSTM = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 256, 6, batch_first=True)
        self.gru = nn.GRU(64, 32, 2, bidirectional=True)

    def forward(self, x, z):
        out, _ = self.lstm(x)
        g, _ = self.gru(z)
        return out[:, -1], g

def get_inputs():
    return [torch.rand(10, 512, 128), torch.rand(100, 4, 64)]

def get_init_inputs():
    return []
"""


# ---------------------------------------------------------------- static features


def test_huge_problem_is_counted_on_meta_without_allocating_it(tmp_path):
    """A 6.4 GB input (and as much output) is counted from shapes only: a fresh process never holds it."""
    code = (
        "import json, sys\n"
        "from kernelrl.perf.features import problem_features\n"
        "f = problem_features(open(sys.argv[1]).read())\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would count pytest's own memory
        "hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:'))\n"
        "print(json.dumps({'rss_kib': int(hwm.split()[1]), **f.to_dict()}))\n"
    )
    path = tmp_path / "relu.py"
    path.write_text(RELU_HUGE)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600
    )
    row = json.loads(proc.stdout.splitlines()[-1])
    assert row["rss_kib"] < 3 << 20, row["rss_kib"]  # peak RSS of the whole process under 3 GiB
    f = Features.from_dict(row)
    n = 4096 * 393216 * 4
    assert f.method == "meta" and f.input_bytes == n and f.output_bytes == n and f.param_bytes == 0
    assert f.unfused_bytes == 2 * n and f.n_ops == 1 and f.flops == 0.0
    assert f.classes == {"elementwise": {"n": 1, "flops": 0.0, "bytes": 2 * n}}
    assert f.pointwise_elems == 4096 * 393216 and f.compulsory_bytes == 2 * n


def test_convolution_flops_by_hand_and_views_move_nothing():
    f = problem_features(CONV)
    # Grouped conv: 2 * Cout * (Cin/groups) * k*k * out spatial (32x32 with padding 1) * batch.
    conv = 2 * 32 * (16 // 4) * 9 * 32 * 32 * 8
    # Transposed conv (stride 2, no padding): 2 * Cin_t * Cout_t * k*k * input spatial * batch.
    deconv = 2 * 32 * 16 * 9 * 32 * 32 * 8
    assert f.classes["conv"]["n"] == 2 and f.classes["conv"]["flops"] == conv + deconv == f.flops
    assert f.n_ops == 2  # view and transposes are not ops
    params = (32 * 4 * 9 + 32 + 32 * 16 * 9 + 16) * 4
    assert f.param_bytes == params and f.output_bytes == 8 * 16 * 65 * 65 * 4


def test_profile_agrees_with_flop_counter_mode_where_it_counts():
    """Same formulas as FlopCounterMode (its registry) on a real CPU model: the totals are equal."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Conv1d(8, 8, 3), nn.Flatten())
    x = torch.rand(8, 8, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    f = profile(model, [x])
    assert f.flops == counter.get_total_flops() > 0 and f.method == "cpu"


def test_what_flop_counter_mode_misses_is_counted_by_our_formulas():
    """FlopCounterMode counts 0 for matrix-vector products and for LSTMs on CPU (mkldnn) and CUDA (cuDNN)."""
    a, v = torch.rand(300, 200), torch.rand(200)
    mv = nn.Module()
    mv.forward = lambda a, v: torch.mv(a, v)  # type: ignore[method-assign]
    with FlopCounterMode(display=False) as counter:
        torch.mv(a, v)
    assert counter.get_total_flops() == 0
    assert profile(mv, [a, v]).flops == 2 * 300 * 200
    lstm = nn.LSTM(16, 32, 2, batch_first=True)
    x = torch.rand(3, 7, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lstm(x)
    expected = 2 * 3 * 7 * 4 * 32 * ((16 + 32) + (32 + 32))
    assert rnn_flops(lstm, x) == expected and profile(lstm, [x]).flops == expected
    assert profile(lstm, [x]).classes["rnn"]["n"] == 1
    assert profile(lstm, [x]).n_ops == rnn_launches(lstm, x) == 2 * (1 + 2 * 7)  # 2 layers, 7 steps


def test_recurrent_layers_count_once_on_meta():
    """On meta an LSTM decomposes into per-step cell ops (tens of seconds to dispatch); here it is one op
    per layer call, counted by formula, which launches a GEMM and a pointwise kernel per step (cuDNN)."""
    f = problem_features(LSTM)
    lstm = 2 * 10 * 512 * 4 * 256 * ((128 + 256) + 5 * (256 + 256))
    gru = 2 * 100 * 4 * 3 * 32 * ((64 + 32) + (64 + 32)) * 2  # two layers, two directions
    assert f.classes["rnn"] == {"n": 2, "flops": float(lstm + gru), "bytes": f.classes["rnn"]["bytes"]}
    assert f.output_bytes == (10 * 256 + 100 * 4 * 64) * 4
    assert f.n_ops == 6 * (1 + 2 * 512) + 2 * 2 * (1 + 2 * 100)  # layers x directions x (1 + 2 steps)


def test_fallbacks_fake_tensors_and_cpu_init_in_the_worker(tmp_path):
    """Counted the way user files are: in a worker subprocess (`python -m kernelrl.perf.features`)."""
    paths = [tmp_path / "cuda.py", tmp_path / "item.py", tmp_path / "broken.py"]
    for path, src in zip(paths, (CUDA_IN_FORWARD, ITEM_IN_INIT, "def get_inputs(): 1/0\n"), strict=True):
        path.write_text(src)
    rows = features_of_files(paths)
    f = Features.from_dict(rows[str(paths[0])])  # explicit device="cuda": meta cannot, fake tensors can
    assert f.method == "fake" and f.flops == 2 * 1024 * 512 * 1024
    g = Features.from_dict(rows[str(paths[1])])  # .item() in __init__: built on the CPU, run on meta
    assert g.method == "cpu-init" and g.flops == 3 * 2 * 32 * 64 * 64
    assert rows[str(paths[2])]["ok"] is False and "no Model" in rows[str(paths[2])]["error"]
    with pytest.raises(ValueError, match="defines no get_inputs"):
        problem_features("import torch\nclass Model: pass\ndef get_init_inputs(): return []\n")
    assert looks_like_problem(RELU_HUGE) and not looks_like_problem("class ModelNew: pass")


def test_features_round_trip_and_the_reference_process_uses_the_same_counter():
    f = problem_features(CONV)
    assert Features.from_dict(f.to_dict()) == f
    from kernelrl.sandbox.reference import prepare

    header, _ = prepare(
        {"source": CONV, "device": "cpu", "seeds": [1], "distributions": ["file"], "init_seed": 3}
    )
    ref = header["features"]
    assert ref["flops"] == f.flops and ref["unfused_bytes"] == f.unfused_bytes and ref["method"] == "cpu"


# ---------------------------------------------------------------- device table and speed of light


def test_device_table_names_sources_and_lookup():
    table = devices.devices()
    for name in (
        "H100-SXM",
        "H100-PCIe",
        "H200",
        "B200",
        "MI300X",
        "L40S",
        "A100-SXM4-80GB",
        "RTX-A6000",
        "L4",
    ):
        d = table[name]
        assert d.source.startswith("https://") and d.bandwidth > 1e11 and d.fp16 >= d.fp32 > 1e12
        assert d.sms > 0 and d.l2_bytes > 1e6
    cases = {
        "NVIDIA H100 80GB HBM3": "H100-SXM",
        "NVIDIA H100 PCIe": "H100-PCIe",
        "NVIDIA A10G": "A10G",
        "NVIDIA A10": "A10",
        "NVIDIA L40S": "L40S",
        "NVIDIA L4": "L4",
        "NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB",
        "NVIDIA A100 80GB PCIe": "A100-PCIe-80GB",
        "AMD Instinct MI300X": "MI300X",
        "L40S_matx3": "L40S",
        "H100_PCIe_LambdaLabs": "H100-PCIe",
    }
    for raw, name in cases.items():
        assert devices.find_device(raw).name == name, raw
    assert devices.find_device("NVIDIA GeForce RTX 4070 Ti") is None
    with pytest.raises(devices.UnknownDeviceError, match="known devices: T4"):
        devices.get_device("TPU v5")
    # Every folder of the shipped data has its GPU in the table.
    for suite in data.SUITES:
        assert data.folder_devices(suite)


def test_speed_of_light_memory_compute_precision_and_floor():
    h100 = devices.get_device("H100-SXM")
    n = 1 << 28  # elementwise: 1 GiB in, 1 GiB out
    sol = speed_of_light(0.0, n, n, 0.0, "NVIDIA H100 80GB HBM3")
    assert sol.bound == "memory" and sol.sol_ms == pytest.approx(2 * n / 3.35e12 * 1e3)
    assert (
        sol.floor_ms == pytest.approx((n + n - h100.l2_bytes) / 3.35e12 * 1e3) and sol.floor_ms < sol.sol_ms
    )
    mm = 2 * 8192**3
    fp32 = speed_of_light(mm, 2 * 8192**2 * 4, 8192**2 * 4, 0.0, h100)
    half = speed_of_light(mm, 2 * 8192**2 * 2, 8192**2 * 2, 0.0, h100, flops_lowp=mm)
    assert fp32.bound == "compute" and fp32.sol_ms == pytest.approx(mm / 67e12 * 1e3)
    assert half.sol_ms == pytest.approx(mm / 989e12 * 1e3)
    assert fp32.floor_ms == pytest.approx(
        mm / 989e12 * 1e3
    )  # a kernel could use tensor cores: the floor does
    unknown = speed_of_light(mm, 1e9, 1e9, 0.0, "Some Future GPU")
    assert unknown.sol_ms is None and unknown.device is None and 0 < unknown.floor_ms < fp32.floor_ms
    assert sol_fraction(sol.sol_ms, 2 * sol.sol_ms) == pytest.approx(0.5)
    assert (
        sol_fraction(None, 1.0) is None and sol_fraction(1.0, None) is None and sol_fraction(1.0, 0.0) is None
    )


def test_faster_than_light_uses_the_floor():
    sol = speed_of_light(2 * 4096**3, 2 * 4096**2 * 4, 4096**2 * 4, 0.0, "NVIDIA H100 80GB HBM3")

    def claim(median: float) -> dict:  # 100 trials, consistent sums, a wall clock that agrees with them
        return {"median_ms": median, "sum_ms": 100 * median, "trials": 100, "min_launches": 1}

    ok, fast = claim(sol.floor_ms * 1.5), claim(sol.floor_ms * 0.5)
    assert timing.timing_hacks(ok, 100 * sol.floor_ms * 1.5 + 50, sol.floor_ms) == []
    assert timing.timing_hacks(fast, 100 * sol.floor_ms * 0.5 + 50, sol.floor_ms) == ["faster_than_light"]


# ---------------------------------------------------------------- shipped data


def test_shipped_tables_suites_never_mix_and_sizes_stay_small():
    v0, v01 = data.timings("v0"), data.timings("v0.1")
    folders0 = {f for t in v0.values() for f in t}
    folders01 = {f for t in v01.values() for f in t}
    assert "B200_together" in folders0 and "B200_together" not in folders01
    assert folders01 == {"A6000_babel", "H100_Modal", "H100_PCIe_LambdaLabs", "L40S_modal"}
    # The same file name at two sizes: different times, never merged.
    key = "level1/19_ReLU.py"
    assert v0[key]["A6000_babel"] != v01[key]["A6000_babel"]
    assert len(data.features("v0.1")) >= 250 and len(data.features("v0")) >= 250
    total = sum(p.stat().st_size for p in data.DATA.iterdir())
    assert total < 4 << 20  # a few MB at most
    assert not list(data.DATA.glob("*.py"))  # derived tables only, never KernelBench's problem files
    with pytest.raises(data.UnknownSuiteError, match="shipped suites: v0, v0.1"):
        data.timings("v2")


def test_measured_csv_is_checked(tmp_path):
    good = tmp_path / "m.csv"
    good.write_text("level,problem,mean_ms\nlevel1,19_ReLU.py,40.1\n")
    assert data.load_measured(good, "v0.1") == {"level1/19_ReLU.py": 40.1}
    for body, msg in [
        ("level,problem\nlevel1,19_ReLU.py\n", "missing column"),
        ("level,problem,mean_ms\nlevel1,no_such.py,1\n", "unknown problem 'level1/no_such.py'"),
        ("level,problem,mean_ms\nlevel1,19_ReLU.py,-3\n", "positive"),
        ("level,problem,mean_ms\nlevel1,19_ReLU.py,fast\n", "not a number"),
        ("level,problem,mean_ms\nlevel1,19_ReLU.py,1\nlevel1,19_ReLU.py,2\n", "measured twice"),
        ("level,problem,mean_ms\nlevel4/1_EleutherAI-gpt-neo-2p7B_bs32_seq256.py,x,1\n", "unknown problem"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(ValueError, match=msg):
            data.load_measured(bad, "v0.1")
    # A v0-only problem (level 4) is unknown to v0.1: suites never mix.
    v0_only = tmp_path / "v0.csv"
    v0_only.write_text("level,problem,mean_ms\nlevel4,1_EleutherAI-gpt-neo-2p7B_bs32_seq256.py,5\n")
    assert data.load_measured(v0_only, "v0")
    with pytest.raises(ValueError, match="unknown problem"):
        data.load_measured(v0_only, "v0.1")


def test_git_blob_matches_git():
    assert data.git_blob(b"") == "e69de29bb2d1"  # `git hash-object /dev/null`
    assert data.git_blob("hello\n") == "ce013625030b"


# ---------------------------------------------------------------- CLI


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_predict_every_problem_of_the_suite(tmp_path, capsys):
    truth = data.timings("v0.1")
    keys = [k for k in sorted(truth) if "L40S_modal" in truth[k]][:10]
    measured = tmp_path / "my_gpu.csv"
    measured.write_text(
        "level,problem,mean_ms\n"
        + "".join(f"{k.split('/')[0]},{k.split('/')[1]},{truth[k]['L40S_modal']}\n" for k in keys)
    )
    out = tmp_path / "predictions.csv"
    assert (
        kernelrl_main(["perf", "predict", "--suite", "v0.1", "--measured", str(measured), "--out", str(out)])
        == 0
    )
    rows = _read(out)
    assert list(rows[0]) == ["level", "problem", "predicted_ms"]
    got = {f"{r['level']}/{r['problem']}": float(r["predicted_ms"]) for r in rows}
    assert set(got) == set(data.problem_keys("v0.1"))  # every problem of the suite, measured or not
    for k in keys:
        assert got[k] == pytest.approx(truth[k]["L40S_modal"], rel=1e-5)  # measured problems keep their time
    assert "not named" in capsys.readouterr().err
    # Zero-shot with a named GPU the suite never timed; and clear errors.
    assert kernelrl_main(["perf", "predict", "--suite", "v0.1", "--device", "H200", "--out", str(out)]) == 0
    assert len(_read(out)) == len(got) and all(float(r["predicted_ms"]) > 0 for r in _read(out))
    for argv, msg in [
        (["--suite", "v0.2", "--device", "H200"], "unknown suite 'v0.2'"),
        (["--suite", "v0.1", "--device", "TPU"], "unknown device 'TPU'"),
        (["--suite", "v0.1"], "nothing to predict from"),
    ]:
        assert kernelrl_main(["perf", "predict", *argv, "--out", str(out)]) == 2
        assert msg in capsys.readouterr().err


def test_cli_predicts_a_users_own_problems(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "big_relu.py").write_text(RELU_HUGE)
    (tmp_path / "mine" / "small_relu.py").write_text(RELU_HUGE.replace("dim = 393216", "dim = 384"))
    (tmp_path / "mine" / "solution.py").write_text("class ModelNew: pass\n")
    out = tmp_path / "p.csv"
    argv = [
        "perf",
        "predict",
        "--device",
        "H100-SXM",
        "--problems",
        str(tmp_path / "mine"),
        "--out",
        str(out),
    ]
    assert kernelrl_main(argv) == 0
    got = {r["problem"]: float(r["predicted_ms"]) for r in _read(out)}
    assert set(got) == {"big_relu.py", "small_relu.py"} and all(r["level"] == "mine" for r in _read(out))
    # 1024x the data: the physics part extrapolates beyond the sizes the suite timed.
    assert got["big_relu.py"] > 20 * got["small_relu.py"]
    # 6.4 GB through H100 HBM (read + write) at most at its datasheet rate, and eager is not faster than that.
    assert got["big_relu.py"] > 2 * 4096 * 393216 * 4 / 3.35e12 * 1e3
    assert "skipped:" in capsys.readouterr().err  # solution.py is named, not silently dropped


def test_cli_features_and_devices(tmp_path, capsys):
    path = tmp_path / "conv.py"
    path.write_text(CONV)
    assert kernelrl_main(["perf", "features", str(path), "--device", "L40S"]) == 0
    line = capsys.readouterr().out.strip()
    assert '"device": "L40S"' in line and '"bound": ' in line and '"sol_ms": ' in line
    assert kernelrl_main(["perf", "devices"]) == 0
    assert "MI300X" in capsys.readouterr().out
    assert math.isfinite(problem_features(CONV).flops)
