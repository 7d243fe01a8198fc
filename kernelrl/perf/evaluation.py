"""Leave-one-GPU-out evaluation of the latency model (`kernelrl perf eval`), and its gates.

For each GPU of a suite: train on every other GPU except its twins (same model on another host or with
another memory size), measure k random problems on it (20 repeats), predict the rest, and score the
predictions of the problems that were not measured:

- Spearman rank correlation of predicted and measured times;
- relative rank: Spearman of each problem's device-specific slowness (log time minus the training GPUs'
  mean log time of that problem), predicted against measured; 0 for a predictor that only shifts;
- median absolute percentage error |predicted / measured - 1|.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from kernelrl.perf import data
from kernelrl.perf.model import LatencyModel, twoway

KS = (0, 5, 10, 20)
REPEATS = 20
SEED = 1234

# The gates (k = 10 on v0.1 unless named) and goals.
GATES = {
    "v0.1": {"k": 10, "spearman_mean": 0.94, "spearman_min": 0.90, "mdape_mean": 0.20, "mdape_max": 0.30},
    "v0": {"k": 10, "mdape_mean": 0.30},
    "zero_shot": {"suite": "v0.1", "k": 0, "spearman_mean": 0.92, "mdape_mean": 0.35},
}
GOALS = {"spearman_mean": 0.95, "spearman_min": 0.92, "relative_rank_mean": 0.70, "mdape_mean": 0.15}


@dataclass
class Score:
    spearman: float
    relative_rank: float
    mdape: float
    n: int  # problems scored per repeat


def _scores(pred: np.ndarray, truth: np.ndarray, others: np.ndarray) -> tuple[float, float, float]:
    ok = ~np.isnan(pred) & ~np.isnan(truth)
    sp = spearmanr(pred[ok], truth[ok])[0]
    rel = ok & ~np.isnan(others)
    rr = spearmanr(pred[rel] - others[rel], truth[rel] - others[rel])[0] if rel.sum() > 2 else math.nan
    mdape = float(np.median(np.abs(np.exp(pred[ok] - truth[ok]) - 1)))
    return float(sp), float(rr), mdape


def leave_one_gpu_out(
    suite: str,
    ks: tuple[int, ...] = KS,
    repeats: int = REPEATS,
    progress: Callable[[str], None] | None = None,
    make_model: Callable[..., Any] = LatencyModel,
) -> dict[str, dict[int, Score]]:
    """{device folder: {k: Score averaged over repeats}} for every GPU of the suite.

    `make_model(timings, features, devices, folders=training folders)` builds the predictor (anything with
    `.predict(device, measured) -> {problem: ms}`); the benchmark passes baselines here.
    """
    timings, feats, devices = (
        data.timings(data.check_suite(suite)),
        data.features(suite),
        data.folder_devices(suite),
    )
    folders = sorted(devices)
    out: dict[str, dict[int, Score]] = {}
    for held in folders:
        if progress:
            progress(held)
        train = [f for f in folders if data.twin_group(f) != data.twin_group(held)]
        model = make_model(timings, feats, devices, folders=train)
        keys = sorted(k for k in timings if held in timings[k])
        truth_all = {k: math.log(timings[k][held]) for k in keys}
        mu, _ = twoway(np.array([[math.log(timings[k].get(f, math.nan)) for f in train] for k in keys]))
        others = mu  # each problem's mean log time on the training GPUs (problem effect of a two-way fit)
        out[held] = {}
        for k in ks:
            rng = np.random.default_rng(SEED)
            results = []
            for _ in range(repeats if k else 1):
                pick = rng.choice(len(keys), size=k, replace=False) if k else np.zeros(0, int)
                measured = {keys[i]: math.exp(truth_all[keys[i]]) for i in pick}
                pred = model.predict(devices[held], measured)
                rest = [i for i in range(len(keys)) if keys[i] not in measured]
                p = np.array([math.log(pred[keys[i]]) if keys[i] in pred else math.nan for i in rest])
                t = np.array([truth_all[keys[i]] for i in rest])
                results.append(_scores(p, t, others[rest]))
            sp, rr, md = (float(np.nanmean(col)) for col in zip(*results, strict=True))
            out[held][k] = Score(sp, rr, md, len(keys) - k)
    return out


def unseen_problems(suite: str, k: int = 10, folds: int = 4) -> dict[str, Score]:
    """Problems with no timing anywhere: for each held-out GPU, hold out a quarter of the problems from
    every GPU in turn (four folds), predict them from static features and device specs (calibrated by k
    measured problems of the rest), and score all of them once."""
    timings, feats, devices = (
        data.timings(data.check_suite(suite)),
        data.features(suite),
        data.folder_devices(suite),
    )
    folders = sorted(devices)
    keys = sorted(k_ for k_ in timings if k_ in feats)
    rng = np.random.default_rng(SEED)
    parts = np.array_split(rng.permutation(len(keys)), folds)
    out = {}
    for held in folders:
        train = [f for f in folders if data.twin_group(f) != data.twin_group(held)]
        pred, truth = [], []
        for part in parts:
            out_keys = {keys[i] for i in part}
            kept = {p: t for p, t in timings.items() if p not in out_keys}
            model = LatencyModel(
                kept, {p: f for p, f in feats.items() if p not in out_keys}, devices, folders=train
            )
            pool = sorted(p for p, t in kept.items() if held in t)
            measured = {pool[i]: kept[pool[i]][held] for i in rng.choice(len(pool), size=k, replace=False)}
            got = model.predict_new(devices[held], {p: feats[p] for p in out_keys}, measured)
            for p in sorted(out_keys):
                if held in timings[p]:
                    pred.append(math.log(got[p]))
                    truth.append(math.log(timings[p][held]))
        p_arr, t_arr = np.array(pred), np.array(truth)
        sp, _, md = _scores(p_arr, t_arr, np.full(len(p_arr), math.nan))
        out[held] = Score(sp, math.nan, md, len(p_arr))
    return out


def summary(report: dict[str, dict[int, Score]], k: int) -> dict[str, float]:
    rows = [scores[k] for scores in report.values()]
    return {
        "spearman_mean": float(np.mean([r.spearman for r in rows])),
        "spearman_min": float(np.min([r.spearman for r in rows])),
        "relative_rank_mean": float(np.mean([r.relative_rank for r in rows])),
        "mdape_mean": float(np.mean([r.mdape for r in rows])),
        "mdape_max": float(np.max([r.mdape for r in rows])),
    }


def gate_failures(reports: dict[str, dict[str, dict[int, Score]]]) -> list[str]:
    """Every gate of GATES that the reports miss, as readable lines (empty: all passed)."""
    failures = []
    for name, gate in GATES.items():
        suite = gate.get("suite", name)
        if suite not in reports:
            continue
        got = summary(reports[suite], gate["k"])
        for metric, bound in gate.items():
            if metric in ("k", "suite"):
                continue
            ok = got[metric] <= bound if metric.startswith("mdape") else got[metric] >= bound
            if not ok:
                failures.append(f"{name}: {metric} at k={gate['k']} is {got[metric]:.3f}, gate {bound}")
    return failures


def render_unseen(suite: str, report: dict[str, Score], k: int = 10) -> str:
    lines = [
        f"Unseen problems on {suite}: held out from every GPU (4 folds), predicted from features and specs, "
        f"k={k} measured problems of the rest on the held-out GPU",
        "",
        "| GPU | problems | Spearman | median abs % error |",
        "|---|---|---|---|",
    ]
    for folder, s in report.items():
        lines.append(f"| {folder} | {s.n} | {s.spearman:.3f} | {s.mdape:.3f} |")
    sp = np.mean([s.spearman for s in report.values()])
    md = np.mean([s.mdape for s in report.values()])
    lines.append(f"| **mean** | | **{sp:.3f}** | **{md:.3f}** |")
    return "\n".join(lines)


def render(suite: str, report: dict[str, dict[int, Score]]) -> str:
    """A markdown table: one row per GPU and k, then the mean over GPUs per k."""
    ks = sorted(next(iter(report.values())))
    lines = [
        f"Leave-one-GPU-out on {suite} (twins held out together; {REPEATS} repeats of k random measured problems)",
        "",
        "| GPU | k | Spearman | relative rank | median abs % error |",
        "|---|---|---|---|---|",
    ]
    for folder, scores in report.items():
        for k in ks:
            s = scores[k]
            lines.append(f"| {folder} | {k} | {s.spearman:.3f} | {s.relative_rank:.3f} | {s.mdape:.3f} |")
    for k in ks:
        m = summary(report, k)
        lines.append(
            f"| **mean** | {k} | **{m['spearman_mean']:.3f}** (min {m['spearman_min']:.3f}) | "
            f"**{m['relative_rank_mean']:.3f}** | **{m['mdape_mean']:.3f}** (max {m['mdape_max']:.3f}) |"
        )
    return "\n".join(lines)
