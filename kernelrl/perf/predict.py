"""Predicted eager reference times: every problem of a suite on a GPU, a user's own problems, one problem.

The shipped models (`data/model-<suite>.json`, trained on every GPU of the suite) are loaded when they
match the shipped tables, and refitted (a few seconds) when they do not.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from functools import lru_cache

from kernelrl.perf import data
from kernelrl.perf.devices import Device, average_device, find_device
from kernelrl.perf.features import Features
from kernelrl.perf.model import LatencyModel

DEFAULT_SUITE = "v0.1"  # KernelBench's current sizes: the suite a new problem is most like


@lru_cache(maxsize=4)
def suite_model(suite: str) -> LatencyModel:
    """The model trained on every GPU of `suite` (shipped parameters when they match the tables)."""
    timings, feats, folders = (
        data.timings(data.check_suite(suite)),
        data.features(suite),
        data.folder_devices(suite),
    )
    path = data.DATA / f"model-{suite}.json"
    if path.exists():
        try:
            return LatencyModel(timings, feats, folders, state=json.loads(path.read_text()))
        except (ValueError, KeyError) as e:
            warnings.warn(f"{path.name}: {e}; refitting", stacklevel=2)
    return LatencyModel(timings, feats, folders)


def fit_and_save(suite: str) -> str:
    """Train the suite's model on every GPU and write its parameters next to the tables."""
    timings, feats, folders = (
        data.timings(data.check_suite(suite)),
        data.features(suite),
        data.folder_devices(suite),
    )
    path = data.DATA / f"model-{suite}.json"
    path.write_text(json.dumps(LatencyModel(timings, feats, folders).state(), separators=(",", ":")) + "\n")
    suite_model.cache_clear()
    return str(path)


def own_timings(suite: str, device: Device) -> dict[str, float]:
    """The suite's measurements of this GPU model itself (geometric mean over its hosts), if any."""
    folders = [f for f, d in data.folder_devices(suite).items() if d.name == device.name]
    out = {}
    for key, times in data.timings(suite).items():
        vals = [times[f] for f in folders if f in times]
        if vals:
            out[key] = math.exp(sum(map(math.log, vals)) / len(vals))
    return out


def predict_suite(
    suite: str,
    device: Device | None = None,
    measured: Mapping[str, float] | None = None,
    problems: Mapping[str, Features] | None = None,
) -> tuple[Device, dict[str, float]]:
    """(the GPU, {problem: ms}) for every problem of the suite, or for `problems` when given.

    Measured problems keep their measured time. With `device` and nothing measured this is the zero-shot
    prediction; when the suite already timed that GPU model, those timings count as measured. Without
    `device`, the GPU's datasheet is unknown and taken as the average of the suite's GPUs
    (`average_device`): the measurements alone place it.
    """
    model = suite_model(suite)
    measured = dict(measured or {})
    if device is None:
        if not measured:
            raise ValueError("nothing to predict from: give measured times on the GPU and/or its name")
        device = average_device(list(model.devices.values()))
    for key, ms in own_timings(suite, device).items():
        measured.setdefault(key, ms)
    pred = model.predict(device, measured, new_features=problems)
    if problems is not None:
        return device, {k: pred[k] for k in problems if k in pred}
    pred.update(measured)
    return device, {k: pred[k] for k in sorted(pred)}


def reference_ms(source: str, feats: Features | None, device_name: str) -> tuple[float | None, str]:
    """(expected eager ms of one problem on a GPU, how it was found): for the sandbox's run budgets.

    A KernelBench file the shipped data timed on this GPU model: that time ("measured"). Otherwise the
    latency model's prediction from the problem's features ("predicted"). (None, "unknown") for a GPU the
    device table does not know or a problem without features.
    """
    dev = find_device(device_name)
    if dev is None:
        return None, "unknown"
    ms = data.measured_ms(source, dev)
    if ms is not None:
        return ms, "measured"
    if feats is None:
        return None, "unknown"
    pred = suite_model(DEFAULT_SUITE).predict_new(dev, {"_": feats}, own_timings(DEFAULT_SUITE, dev))["_"]
    return (pred, "predicted") if math.isfinite(pred) and pred > 0 else (None, "unknown")
