"""Latency model vs the baselines the issue names, on the same leave-one-GPU-out protocol in the same run.

- naive: a problem's mean log time over the training GPUs, plus the median shift of the k measurements;
- ridge transfer: the held-out GPU's log time as a ridge regression on the training GPUs' log times, fitted
  on the k measurements (shrunk toward equal weights; k = 0 is the naive prediction);
- kernelrl: `kernelrl.perf.model.LatencyModel`.

    .venv/bin/python bench/perf_model.py [--suite v0.1] [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from kernelrl.perf import evaluation
from kernelrl.perf.model import LatencyModel, twoway


class Naive:
    def __init__(self, timings, feats, devices, folders) -> None:  # noqa: ANN001 - the protocol's signature
        self.keys = sorted(timings)
        self.Y = np.array([[math.log(timings[k].get(f, math.nan)) for f in folders] for k in self.keys])
        self.mu, _ = twoway(self.Y)

    def base(self, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = y - self.mu[idx]
        r = r[~np.isnan(r)]
        return self.mu + (float(np.median(r)) if len(r) else 0.0)

    def predict(self, device, measured):  # noqa: ANN001
        idx = np.array([self.keys.index(k) for k in measured], int)
        pred = self.base(idx, np.log(list(measured.values())) if measured else np.zeros(0))
        return {k: math.exp(p) for k, p in zip(self.keys, pred, strict=True) if math.isfinite(p)}


class RidgeTransfer(Naive):
    PENALTY = 1.0

    def predict(self, device, measured):  # noqa: ANN001
        idx = np.array([self.keys.index(k) for k in measured], int)
        y = np.log(list(measured.values())) if measured else np.zeros(0)
        dev = np.nan_to_num(self.Y - self.mu[:, None])  # each GPU's deviation from the problem's mean
        base = self.base(idx, y)
        ok = ~np.isnan(base[idx]) if len(idx) else np.zeros(0, bool)
        if ok.sum() >= 2:
            X = dev[idx[ok]]
            w = np.linalg.solve(X.T @ X + self.PENALTY * np.eye(X.shape[1]), X.T @ (y[ok] - base[idx[ok]]))
            base = base + dev @ w
        return {k: math.exp(p) for k, p in zip(self.keys, base, strict=True) if math.isfinite(p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="v0.1")
    parser.add_argument("--repeats", type=int, default=evaluation.REPEATS)
    parser.add_argument("--json", help="write the summaries here")
    args = parser.parse_args()
    results = {}
    for name, make in (("naive", Naive), ("ridge transfer", RidgeTransfer), ("kernelrl", LatencyModel)):
        t0 = time.perf_counter()
        report = evaluation.leave_one_gpu_out(args.suite, repeats=args.repeats, make_model=make)
        results[name] = {k: evaluation.summary(report, k) for k in evaluation.KS}
        print(f"{name}: {time.perf_counter() - t0:.1f} s")
    print(
        f"\nLeave-one-GPU-out on {args.suite}, {args.repeats} repeats (mean over GPUs; min/max in brackets)"
    )
    print(f"{'predictor':<16} {'k':>2}  {'Spearman':>15}  {'rel. rank':>9}  {'median abs % err':>17}")
    for name, by_k in results.items():
        for k, m in by_k.items():
            print(
                f"{name:<16} {k:>2}  {m['spearman_mean']:.3f} ({m['spearman_min']:.3f})  "
                f"{m['relative_rank_mean']:9.3f}  {m['mdape_mean']:.3f} ({m['mdape_max']:.3f})"
            )
    for k in evaluation.KS:
        ours, naive = results["kernelrl"][k], results["naive"][k]
        print(
            f"k={k}: median error {naive['mdape_mean']:.3f} -> {ours['mdape_mean']:.3f} (x{naive['mdape_mean'] / ours['mdape_mean']:.2f} lower)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "repeats": args.repeats, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
