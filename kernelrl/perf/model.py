"""The cross-GPU latency model: eager reference time of every problem of a suite on a GPU from k measurements.

HELP's setting (few-shot latency prediction on an unseen device): the model is trained on the shipped
timings of other GPUs; on a new GPU, k measured problems (k = 0, 5, 10, 20) calibrate it. The target is log
time. Three components, blended, then a residual correction:

1. **Transfer** (ridge): a problem's mean log time over the training GPUs (a two-way problem + device fit),
   plus the roofline's device-specific shift of that problem, plus a per-device ridge over k measurements
   (shift, op-count sensitivity, compute-class shares, and the other GPUs' deviations), shrunk toward the
   zero-shot prior.
2. **Physics**: log time = a problem's inefficiency offset + log of a roofline-with-efficiencies model of
   eager PyTorch (per class: max(FLOPs / (eta * peak), bytes / (eta_mem * bandwidth)), summed, plus
   n_ops * tau, n_ops counting kernel launches: a recurrent layer's thousands of sequential per-step
   kernels make its time follow the GPU's (and host's) per-launch cost, not its peak); the efficiencies
   of a new GPU start at the training GPUs' mean and are fitted (robust least squares, shrunk to that
   prior) on its k measurements.
3. **Trees** (LightGBM) on static features and device specs: the only component for problems with no timing
   anywhere (a user's own files), shifted by the k measurements.

The k residuals of the blend are then spread to similar problems (kriging on problem features).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kernelrl.perf.devices import Device
from kernelrl.perf.features import CLASSES, Features

# Compute classes with their own efficiency (matmul-like, convolution, recurrent); the rest is memory-bound.
COMPUTE_GROUP = {"matmul": 0, "attention": 0, "conv": 1, "rnn": 2}
# Prior log efficiencies: eta_matmul, eta_conv, eta_rnn, eta_memory, and the per-launch overhead tau (s).
THETA0 = np.log([0.5, 0.3, 0.1, 0.6, 10e-6])
BLEND = (0.4, 0.35, 0.25)  # transfer, physics, trees
RIDGE_PENALTY = 1.0
SHIFT_PENALTY = 1.0
PHYSICS_PENALTY = 1.0
KRIGING = {"length": 0.3, "noise": 0.3, "amplitude": 0.3}
GBM_PARAMS = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 10,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
GBM_ROUNDS = 300


@dataclass
class ProblemArrays:
    """Per-class FLOPs and bytes of many problems as arrays (rows = problems, columns = CLASSES)."""

    keys: list[str]
    flops: np.ndarray
    nbytes: np.ndarray
    n_ops: np.ndarray
    lowp: np.ndarray
    has: np.ndarray  # features known

    @classmethod
    def build(cls, keys: list[str], feats: Mapping[str, Features]) -> ProblemArrays:
        n, c = len(keys), len(CLASSES)
        flops, nbytes = np.zeros((n, c)), np.zeros((n, c))
        n_ops, lowp, has = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        for i, k in enumerate(keys):
            f = feats.get(k)
            if f is None:
                continue
            has[i], n_ops[i], lowp[i] = True, f.n_ops, f.dtype in ("float16", "bfloat16")
            for j, name in enumerate(CLASSES):
                if name in f.classes:
                    flops[i, j], nbytes[i, j] = f.classes[name]["flops"], f.classes[name]["bytes"]
        return cls(keys, flops, nbytes, n_ops, lowp, has)

    def peaks(self, dev: Device) -> np.ndarray:
        out = np.empty(self.flops.shape)
        for j, name in enumerate(CLASSES):
            out[:, j] = np.where(self.lowp, dev.peak("float16", name), dev.peak("float32", name))
        return out

    def subset(self, idx: np.ndarray) -> ProblemArrays:
        return ProblemArrays(
            [self.keys[i] for i in idx],
            self.flops[idx],
            self.nbytes[idx],
            self.n_ops[idx],
            self.lowp[idx],
            self.has[idx],
        )


_GROUP = np.array([COMPUTE_GROUP.get(c, 3) for c in CLASSES])


def physics_log_ms(theta: np.ndarray, arr: ProblemArrays, peaks: np.ndarray, bandwidth: float) -> np.ndarray:
    """log(ms) of eager PyTorch by the roofline-with-efficiencies model (see the module docstring)."""
    eta = np.exp(theta[:4])
    eta_c = np.where(_GROUP < 3, eta[np.minimum(_GROUP, 2)], 1.0)
    compute = np.where(_GROUP < 3, arr.flops / (eta_c * peaks), 0.0)
    memory = arr.nbytes / (eta[3] * bandwidth)
    seconds = np.maximum(compute, memory).sum(1) + arr.n_ops * math.exp(theta[4])
    return np.log(seconds * 1e3 + 1e-9)


def _shares(arr: ProblemArrays, dev: Device) -> np.ndarray:
    """Share of the roofline time in matmul, conv and recurrent classes (columns), per problem."""
    t = np.maximum(arr.flops / arr.peaks(dev), arr.nbytes / dev.bandwidth)
    total = t.sum(1) + 1e-12
    return np.column_stack([t[:, _GROUP == g].sum(1) / total for g in (0, 1, 2)])


def twoway(Y: np.ndarray, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Y[p, d] ~ mu[p] + delta[d] on the observed cells (delta centred): problem and device effects."""
    delta = np.zeros(Y.shape[1])
    with np.errstate(all="ignore"):
        for _ in range(iters):
            mu = _nanmean(Y - delta, 1)
            delta = _nanmean(Y - mu[:, None], 0)
            delta -= np.nanmean(delta)
    return mu, np.nan_to_num(delta)


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    cnt = (~np.isnan(a)).sum(axis)
    return np.where(cnt > 0, np.nansum(a, axis) / np.maximum(cnt, 1), np.nan)


def static_frame(keys: list[str], feats: Mapping[str, Features]) -> pd.DataFrame:
    """Device-independent features for the trees (NaN where a problem has no features)."""
    rows = []
    for k in keys:
        f = feats.get(k)
        if f is None:
            rows.append({})
            continue
        level = k.split("/", 1)[0].removeprefix("level")
        row = {
            "level": float(level) if level.isdigit() else np.nan,
            "log_ops": math.log10(f.n_ops + 1),
            "log_flops": math.log10(f.flops + 1),
            "log_unfused": math.log10(f.unfused_bytes + 1),
            "log_compulsory": math.log10(f.compulsory_bytes + 1),
            "lowp": float(f.dtype in ("float16", "bfloat16")),
        }
        for c in ("matmul", "conv", "rnn", "norm", "pool", "reduction", "elementwise", "copy", "softmax"):
            v = f.classes.get(c, {})
            row[f"log_bytes_{c}"] = math.log10(v.get("bytes", 0) + 1)
            row[f"n_{c}"] = float(v.get("n", 0))
        rows.append(row)
    return pd.DataFrame(rows, index=keys, dtype=float)


def device_frame(frame: pd.DataFrame, dev: Device, physics: np.ndarray) -> pd.DataFrame:
    out = frame.copy()
    out["log_bandwidth"] = math.log10(dev.bandwidth)
    out["log_fp32"] = math.log10(dev.peak("float32", "matmul"))
    out["log_tf32"] = math.log10(dev.tf32 or dev.fp32)
    out["log_fp16"] = math.log10(dev.fp16)
    out["log_sms"] = math.log10(dev.sms)
    out["log_l2"] = math.log10(dev.l2_bytes)
    out["physics"] = physics
    return out


class LatencyModel:
    """Fitted on one suite's timings (log ms per problem and device folder) and the problems' features."""

    def __init__(
        self,
        timings: Mapping[str, Mapping[str, float]],
        feats: Mapping[str, Features],
        devices: Mapping[str, Device],
        folders: list[str] | None = None,
        state: Mapping[str, object] | None = None,
    ) -> None:
        self.folders = sorted(folders if folders is not None else {f for t in timings.values() for f in t})
        self.keys = sorted(set(timings) | set(feats))
        self.feats = dict(feats)
        self.devices = {f: devices[f] for f in self.folders}
        self.Y = np.array(
            [[math.log(timings.get(k, {}).get(f, math.nan)) for f in self.folders] for k in self.keys]
        )
        self.arr = ProblemArrays.build(self.keys, feats)
        self.static = static_frame(self.keys, feats)
        if state is None:
            self._fit()
        else:
            self._load(state)

    # ------------------------------------------------------------------------------------ persistence
    STATE_VERSION = 1

    def state(self) -> dict[str, object]:
        """The fitted parameters as JSON-able data (the tables they were fitted on are shipped separately)."""

        def arr(a: np.ndarray) -> list:
            return [None if not math.isfinite(x) else round(float(x), 6) for x in np.ravel(a)]

        return {
            "version": self.STATE_VERSION,
            "folders": self.folders,
            "keys": self.keys,
            "mu": arr(self.mu),
            "delta": arr(self.delta),
            "le_mean": arr(self.le_mean),
            "beta": self.beta,
            "gamma": self.gamma,
            "thetas": {f: arr(t) for f, t in self.thetas.items()},
            "offset": arr(self.offset),
            "tree_columns": self.tree_columns,
            "trees": self.gbm.model_to_string(),
            "offset_trees": self.offset_gbm.model_to_string(),
        }

    def _load(self, state: Mapping[str, object]) -> None:
        import lightgbm as lgb

        if state.get("version") != self.STATE_VERSION or state.get("keys") != self.keys:
            raise ValueError("stale latency model parameters: they do not match the shipped tables")
        if state.get("folders") != self.folders:
            raise ValueError("latency model parameters were fitted on other GPUs")

        def vec(name: str) -> np.ndarray:
            return np.array([math.nan if x is None else x for x in state[name]], float)  # type: ignore[union-attr]

        self.mu, self.delta, self.le_mean, self.offset = (
            vec("mu"),
            vec("delta"),
            vec("le_mean"),
            vec("offset"),
        )
        self.beta, self.gamma = float(state["beta"]), float(state["gamma"])  # type: ignore[arg-type]
        self.thetas = {f: np.array(t, float) for f, t in state["thetas"].items()}  # type: ignore[union-attr]
        self.theta_prior = np.mean(list(self.thetas.values()), 0)
        self.transfer = np.nan_to_num(self.Y - self.mu[:, None] - self.delta[None, :])
        self.tree_columns = list(state["tree_columns"])  # type: ignore[arg-type]
        self.gbm = lgb.Booster(model_str=state["trees"])
        self.offset_gbm = lgb.Booster(model_str=state["offset_trees"])

    # ------------------------------------------------------------------------------------------ fitting
    def _prior_physics(self, dev: Device) -> np.ndarray:
        return physics_log_ms(THETA0, self.arr, self.arr.peaks(dev), dev.bandwidth)

    def _fit(self) -> None:
        from sklearn.linear_model import HuberRegressor

        Y, arr = self.Y, self.arr
        self.mu, self.delta = twoway(Y)
        le = np.column_stack([self._prior_physics(self.devices[f]) for f in self.folders])
        self.le_mean = le.mean(1)
        rel = le - self.le_mean[:, None]
        resid = Y - self.mu[:, None] - self.delta[None, :]
        self.transfer = np.nan_to_num(resid)
        x, y = rel.ravel(), resid.ravel()
        ok = ~np.isnan(x) & ~np.isnan(y) & np.repeat(arr.has, len(self.folders))
        self.beta = (
            float(HuberRegressor(fit_intercept=False).fit(x[ok, None], y[ok]).coef_[0]) if ok.any() else 0.0
        )
        rbar = np.nanmean(np.where(arr.has[:, None], rel, np.nan), 0)
        self.gamma = (
            float(rbar @ self.delta / (rbar @ rbar)) if len(self.folders) > 1 and rbar @ rbar > 0 else 1.0
        )
        self.thetas, self.offset = self._fit_physics()
        self.theta_prior = np.mean(list(self.thetas.values()), 0)
        self.gbm = self._fit_trees()
        self.offset_gbm = self._fit_offset_trees()

    def _fit_physics(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-device efficiencies and per-problem offsets, alternately (a few rounds suffice)."""
        from scipy.optimize import least_squares

        Y, arr = self.Y, self.arr
        peaks = {f: arr.peaks(self.devices[f]) for f in self.folders}
        thetas = {f: THETA0.copy() for f in self.folders}
        offset = np.zeros(len(self.keys))
        for _ in range(4):
            logt = np.column_stack(
                [physics_log_ms(thetas[f], arr, peaks[f], self.devices[f].bandwidth) for f in self.folders]
            )
            offset = _nanmean(Y - logt, 1)
            for j, f in enumerate(self.folders):
                ok = arr.has & ~np.isnan(Y[:, j]) & ~np.isnan(offset)
                if ok.sum() < 5:
                    continue
                sub, target, pk, bw = (
                    arr.subset(np.flatnonzero(ok)),
                    Y[ok, j] - offset[ok],
                    peaks[f][ok],
                    self.devices[f].bandwidth,
                )
                weight = math.sqrt(0.01 * ok.sum())

                def resid(t: np.ndarray, sub=sub, target=target, pk=pk, bw=bw, weight=weight) -> np.ndarray:
                    return np.r_[target - physics_log_ms(t, sub, pk, bw), weight * (t - THETA0)]

                thetas[f] = least_squares(resid, thetas[f], loss="soft_l1", f_scale=0.3).x
        logt = np.column_stack(
            [physics_log_ms(thetas[f], arr, peaks[f], self.devices[f].bandwidth) for f in self.folders]
        )
        return thetas, _nanmean(Y - logt, 1)

    def _fit_trees(self) -> object:
        import lightgbm as lgb

        frames, targets = [], []
        for j, f in enumerate(self.folders):
            dev = self.devices[f]
            X = device_frame(self.static, dev, np.where(self.arr.has, self._prior_physics(dev), np.nan))
            ok = ~np.isnan(self.Y[:, j]) & self.arr.has
            frames.append(X[ok])
            targets.append(self.Y[ok, j])
        X = pd.concat(frames)
        self.tree_columns = list(X.columns)
        return lgb.train(
            GBM_PARAMS, lgb.Dataset(X.values, np.concatenate(targets)), num_boost_round=GBM_ROUNDS
        )

    def _fit_offset_trees(self) -> object:
        """Trees from static features to the physics model's per-problem offset (for unseen problems)."""
        import lightgbm as lgb

        ok = self.arr.has & ~np.isnan(self.offset)
        params = {**GBM_PARAMS, "min_data_in_leaf": 5}
        return lgb.train(params, lgb.Dataset(self.static.values[ok], self.offset[ok]), num_boost_round=200)

    # --------------------------------------------------------------------------------------- prediction
    def predict(
        self,
        device: Device,
        measured: Mapping[str, float] | None = None,
        new_features: Mapping[str, Features] | None = None,
    ) -> dict[str, float]:
        """Predicted eager ms of every problem (the suite's, then `new_features`' keys) on `device`.

        `measured` maps suite problem keys to ms measured on that device (k of them; may be empty). The
        measured problems get predictions too (callers that want the measurement itself use it).
        """
        measured = {k: math.log(v) for k, v in (measured or {}).items()}
        unknown = sorted(set(measured) - set(self.keys))
        if unknown:
            raise KeyError(f"measured problems not in this suite: {', '.join(unknown[:5])}")
        idx = np.array([self.keys.index(k) for k in measured], int)
        y = np.array(list(measured.values()))
        parts = [self._transfer(device, idx, y), self._physics(device, idx, y), self._trees(device, idx, y)]
        weights = np.array(BLEND)[:, None] * np.array([~np.isnan(p) for p in parts])
        stacked = np.nan_to_num(np.array(parts))
        total = weights.sum(0)
        blend = np.where(total > 0, (weights * stacked).sum(0) / np.maximum(total, 1e-12), np.nan)
        blend = blend + self._kriging(self._kriging_x(self.keys, self.feats), blend, idx, y)
        out = dict(zip(self.keys, np.exp(blend).tolist(), strict=True))
        if new_features:
            out.update(self.predict_new(device, new_features, measured_log=(idx, y)))
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def _transfer(self, dev: Device, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        rel = np.where(self.arr.has, self._prior_physics(dev) - self.le_mean, np.nan)
        base = self.mu + self.beta * np.nan_to_num(rel)
        ops = np.log(self.arr.n_ops + 1)
        ops = np.where(self.arr.has, ops - ops[self.arr.has].mean() if self.arr.has.any() else 0.0, 0.0)
        shares = _shares(self.arr, dev)
        shares = np.where(self.arr.has[:, None], shares - np.nanmean(shares[self.arr.has], 0), 0.0)
        phi = np.column_stack([ops, shares, self.transfer])
        shift0 = (self.gamma - self.beta) * float(np.nanmean(rel)) if np.isfinite(np.nanmean(rel)) else 0.0
        ok = ~np.isnan(base[idx]) if len(idx) else np.zeros(0, bool)
        if not ok.any():
            return base + shift0
        X = np.column_stack([np.ones(ok.sum()), phi[idx[ok]]])
        penalty = np.r_[SHIFT_PENALTY, np.full(phi.shape[1], RIDGE_PENALTY)]
        prior = np.r_[shift0, np.zeros(phi.shape[1])]
        w = np.linalg.solve(X.T @ X + np.diag(penalty), X.T @ (y[ok] - base[idx[ok]]) + penalty * prior)
        return base + w[0] + phi @ w[1:]

    def _device_theta(self, dev: Device, idx: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """(efficiencies, shift) of `dev`: those of the training GPUs of the same model, else their mean,
        refitted on the k measurements (robust least squares, shrunk to that prior)."""
        from scipy.optimize import least_squares

        same = [self.thetas[f] for f in self.folders if self.devices[f].name == dev.name]
        prior = np.mean(same, 0) if same else self.theta_prior
        ok = self.arr.has[idx] & ~np.isnan(self.offset[idx]) if len(idx) else np.zeros(0, bool)
        if not ok.any():
            return prior, 0.0
        sel = idx[ok]
        sub, target, peaks = self.arr.subset(sel), y[ok] - self.offset[sel], self.arr.peaks(dev)[sel]

        def resid(x: np.ndarray) -> np.ndarray:
            r = target - physics_log_ms(x[:5], sub, peaks, dev.bandwidth) - x[5]
            return np.r_[r, math.sqrt(PHYSICS_PENALTY) * (x[:5] - prior), math.sqrt(SHIFT_PENALTY) * x[5]]

        fit = least_squares(resid, np.r_[prior, 0.0], loss="soft_l1", f_scale=0.3).x
        return fit[:5], float(fit[5])

    def _physics(self, dev: Device, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        theta, shift = self._device_theta(dev, idx, y)
        pred = self.offset + physics_log_ms(theta, self.arr, self.arr.peaks(dev), dev.bandwidth) + shift
        return np.where(self.arr.has, pred, np.nan)

    def _tree_x(self, frame: pd.DataFrame, arr: ProblemArrays, dev: Device) -> np.ndarray:
        physics = np.where(arr.has, physics_log_ms(THETA0, arr, arr.peaks(dev), dev.bandwidth), np.nan)
        return device_frame(frame, dev, physics)[self.tree_columns].values

    def _trees(self, dev: Device, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        pred = np.where(self.arr.has, self.gbm.predict(self._tree_x(self.static, self.arr, dev)), np.nan)
        return pred + self._tree_shift(pred, idx, y)

    @staticmethod
    def _tree_shift(pred: np.ndarray, idx: np.ndarray, y: np.ndarray) -> float:
        r = y - pred[idx] if len(idx) else np.zeros(0)
        r = r[~np.isnan(r)]
        return float(np.median(r)) if len(r) else 0.0

    def predict_new(
        self,
        dev: Device,
        new: Mapping[str, Features],
        measured: Mapping[str, float] | None = None,
        measured_log: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """Problems with no timing anywhere: the physics model on `dev` (efficiencies fitted on the measured
        suite problems, `measured`: key -> ms) plus the problem's inefficiency offset predicted by trees
        from its static features. Physics extrapolates to sizes the suite never timed; trees alone would not.
        """
        if measured_log is None:
            known = {k: v for k, v in (measured or {}).items() if k in self.keys}
            measured_log = (np.array([self.keys.index(k) for k in known], int), np.log(list(known.values())))
        idx, y = measured_log
        keys = list(new)
        arr = ProblemArrays.build(keys, new)
        theta, shift = self._device_theta(dev, idx, y)
        offset = self.offset_gbm.predict(static_frame(keys, new)[self.static.columns].values)
        pred = offset + physics_log_ms(theta, arr, arr.peaks(dev), dev.bandwidth) + shift
        return dict(zip(keys, np.exp(pred).tolist(), strict=True))

    # -------------------------------------------------------------------------------- residual kriging
    @staticmethod
    def _kriging_x(keys: list[str], feats: Mapping[str, Features]) -> np.ndarray:
        rows = []
        for k in keys:
            f = feats.get(k)
            if f is None:
                rows.append([np.nan] * (len(CLASSES) + 5))
                continue
            total = sum(v["bytes"] for v in f.classes.values()) + 1
            rows.append(
                [f.classes.get(c, {}).get("bytes", 0) / total for c in CLASSES]
                + [
                    math.log10(f.n_ops + 1) / 2,
                    math.log10(f.flops + 1) / 4,
                    math.log10(total) / 4,
                    float(k.startswith("level3")),
                    f.classes.get("matmul", {}).get("flops", 0.0) / (f.flops + 1),
                ]
            )
        return np.array(rows, float)

    @staticmethod
    def _kriging(X: np.ndarray, pred: np.ndarray, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Spread the measured problems' residuals to similar problems (a Gaussian-process posterior mean)."""
        if len(idx) < 3:
            return np.zeros(len(pred))
        r = y - pred[idx]
        ok = ~np.isnan(X[idx]).any(1) & ~np.isnan(r)
        if ok.sum() < 3:
            return np.zeros(len(pred))
        sel, r = idx[ok], r[ok] - np.median(r[ok])
        Xa = np.nan_to_num(X)
        ls, amp, noise = KRIGING["length"], KRIGING["amplitude"], KRIGING["noise"]

        def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
            return amp**2 * np.exp(-d2 / (2 * ls**2))

        alpha = np.linalg.solve(kernel(Xa[sel], Xa[sel]) + noise**2 * np.eye(len(sel)), r)
        return np.where(np.isnan(X).any(1), 0.0, kernel(Xa, Xa[sel]) @ alpha)
