"""The latency model's leave-one-GPU-out evaluation and its gates, on the shipped tables only (no GPU, no
KernelBench checkout). The table in the README comes from `kernelrl perf eval --suite all`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kernelrl.perf import data, evaluation, predict
from kernelrl.perf.devices import get_device
from kernelrl.perf.model import LatencyModel


@pytest.fixture(scope="module")
def v01():
    return evaluation.leave_one_gpu_out("v0.1")  # k = 0, 5, 10, 20; 20 repeats


@pytest.fixture(scope="module")
def v0_k10():
    return evaluation.leave_one_gpu_out("v0", ks=(10,))


def test_protocol_holds_twins_out_together():
    folders = sorted(data.folder_devices("v0.1"))
    train = [f for f in folders if data.twin_group(f) != data.twin_group("H100_Modal")]
    assert train == ["A6000_babel", "L40S_modal"]  # the H100 PCIe twin never trains the H100 SXM fold
    assert data.twin_group("L40S_babel") == data.twin_group("L40S_matx3") == "L40S"
    assert data.twin_group("A100-80GB_modal") == data.twin_group("A100_modal")


def test_gate_v01_k10(v01):
    got = evaluation.summary(v01, 10)
    gate = evaluation.GATES["v0.1"]
    assert got["spearman_min"] >= gate["spearman_min"], got
    assert got["mdape_mean"] <= gate["mdape_mean"], got
    assert got["mdape_max"] <= gate["mdape_max"], got
    assert got["relative_rank_mean"] >= 0.5, got  # a shift-only predictor scores ~0 here


def test_gate_v01_k10_mean_spearman(v01):
    assert evaluation.summary(v01, 10)["spearman_mean"] >= evaluation.GATES["v0.1"]["spearman_mean"]


def test_gate_zero_shot(v01):
    got, gate = evaluation.summary(v01, 0), evaluation.GATES["zero_shot"]
    assert got["spearman_mean"] >= gate["spearman_mean"] and got["mdape_mean"] <= gate["mdape_mean"], got


def test_gate_v0_k10(v0_k10):
    assert evaluation.summary(v0_k10, 10)["mdape_mean"] <= evaluation.GATES["v0"]["mdape_mean"]


def test_more_measurements_help_and_the_report_renders(v01):
    s = {k: evaluation.summary(v01, k) for k in evaluation.KS}
    assert s[20]["mdape_mean"] < s[5]["mdape_mean"] and s[10]["mdape_mean"] < s[0]["mdape_mean"]
    text = evaluation.render("v0.1", v01)
    assert "| H100_Modal | 10 |" in text and "| **mean** | 10 |" in text
    assert evaluation.gate_failures({"v0.1": v01}) == []


def test_unseen_problems_are_predicted_from_features_and_specs():
    """Problems with no timing anywhere (held out from every GPU): static features and device specs."""
    report = evaluation.unseen_problems("v0.1")
    sp = np.mean([s.spearman for s in report.values()])
    md = np.mean([s.mdape for s in report.values()])
    assert sp >= 0.80 and md <= 0.30, (sp, md)
    assert "| **mean** |" in evaluation.render_unseen("v0.1", report)


def test_shipped_parameters_are_the_fit_of_the_shipped_tables():
    """Reproducible: refitting v0.1 on the shipped tables gives the shipped model. Not byte for byte: the fit's
    last bits differ between machines (a fresh VM here refit a different gamma in the 16th digit, and LightGBM's
    printed trees with it), so the check is what the model answers, for suite problems and for problems as if
    unseen, on four GPUs."""
    path = data.DATA / "model-v0.1.json"
    tables = (data.timings("v0.1"), data.features("v0.1"), data.folder_devices("v0.1"))
    state = json.loads(path.read_text())
    refit, shipped = LatencyModel(*tables), LatencyModel(*tables, state=state)
    assert refit.state()["keys"] == state["keys"] and refit.state()["folders"] == state["folders"]
    for name in ("H200", "L40S", "T4", "A100-80GB"):
        dev = get_device(name)
        for a, b in (
            (refit.predict(dev, {}), shipped.predict(dev, {})),
            (refit.predict_new(dev, tables[1]), shipped.predict_new(dev, tables[1])),
        ):
            assert a.keys() == b.keys() and max(abs(math.log(a[k] / b[k])) for k in a) < 1e-4, name
    state["keys"] = state["keys"][1:]
    with pytest.raises(ValueError, match="stale"):
        LatencyModel(*tables, state=state)


def test_loaded_model_predicts_like_the_fitted_one():
    fitted = LatencyModel(data.timings("v0.1"), data.features("v0.1"), data.folder_devices("v0.1"))
    loaded = predict.suite_model("v0.1")
    dev = get_device("H200")
    a, b = fitted.predict(dev, {}), loaded.predict(dev, {})
    assert a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-4) for k in a)


def test_a_gpu_the_suite_timed_counts_as_measured():
    dev, pred = predict.predict_suite("v0.1", get_device("L40S"))
    truth = data.timings("v0.1")
    timed = [k for k in truth if "L40S_modal" in truth[k]]
    assert all(pred[k] == pytest.approx(truth[k]["L40S_modal"]) for k in timed)
    assert set(pred) == set(data.problem_keys("v0.1"))


def test_reference_ms_for_the_sandbox(monkeypatch):
    from kernelrl.perf.features import Features

    feats = Features(flops=2 * 4096**3, input_bytes=2 * 4096**2 * 4, output_bytes=4096**2 * 4)
    feats.classes = {"matmul": {"n": 1, "flops": feats.flops, "bytes": 3 * 4096**2 * 4}}
    feats.n_ops = 1
    ms, how = predict.reference_ms("source of a new problem", feats, "NVIDIA H100 80GB HBM3")
    assert how == "predicted" and 0.5 < ms < 20  # 137 GFLOP in fp32 on an H100: a few ms eager
    assert predict.reference_ms("x", feats, "Some Future GPU") == (None, "unknown")
    # A KernelBench file the shipped data timed on this GPU model: its measured time.
    monkeypatch.setattr(
        data, "blob_index", lambda suite=None: {data.git_blob("src"): ("v0.1", "level1/19_ReLU.py")}
    )
    ms, how = predict.reference_ms("src", None, "NVIDIA L40S")
    assert how == "measured" and ms == pytest.approx(data.timings("v0.1")["level1/19_ReLU.py"]["L40S_modal"])
