"""The shipped data: KernelBench's eager reference timings and the features derived from its problem files.

Both tables live in `kernelrl/perf/data/` (see its README for attribution: KernelBench, MIT). Problems are
keyed `level/file` ("level1/19_ReLU.py"); the git blob hash of the file that was timed (`src_blob`) lets
the sandbox recognise a KernelBench problem from its source alone. Suites never mix: every function takes
one suite and refuses unknown ones.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from kernelrl.perf.devices import Device, get_device
from kernelrl.perf.features import CLASSES, Features

DATA = Path(__file__).with_name("data")
TIMINGS = DATA / "timings.csv"
FEATURES = DATA / "features.csv"
SUITES = ("v0", "v0.1")
# GPUs of the same model (different hosts or memory sizes) never split between training and held-out.
TWINS = {
    "L40S_babel": "L40S",
    "L40S_matx3": "L40S",
    "L40S_modal": "L40S",
    "A100_modal": "A100",
    "A100-80GB_modal": "A100",
    "H100_Modal": "H100",
    "H100_PCIe_LambdaLabs": "H100",
    "H100_together": "H100",
}
FEATURE_COLUMNS = (
    "flops",
    "flops_lowp",
    "input_bytes",
    "param_bytes",
    "output_bytes",
    "unfused_bytes",
    "n_ops",
    "pointwise_elems",
)


class UnknownSuiteError(ValueError):
    """A suite name that is not shipped."""


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise UnknownSuiteError(f"unknown suite {suite!r}; shipped suites: {', '.join(SUITES)} (never mixed)")
    return suite


def git_blob(source: str | bytes) -> str:
    """The first 12 hex digits of a file's git blob hash: how the timing table names the file it timed."""
    data = source.encode() if isinstance(source, str) else source
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()[:12]


def twin_group(folder: str) -> str:
    return TWINS.get(folder, folder)


@lru_cache(maxsize=1)
def _timing_rows() -> tuple[dict[str, str], ...]:
    with TIMINGS.open() as f:
        return tuple(csv.DictReader(f))


def timings(suite: str) -> dict[str, dict[str, float]]:
    """{problem key: {device folder: mean ms}} for one suite."""
    check_suite(suite)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for row in _timing_rows():
        if row["suite"] == suite:
            out[f"{row['level']}/{row['problem']}"][row["device_folder"]] = float(row["mean_ms"])
    return dict(out)


def folder_devices(suite: str) -> dict[str, Device]:
    """Each device folder's GPU in the device table (by the hardware most of its rows ran on)."""
    check_suite(suite)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in _timing_rows():
        if row["suite"] == suite:
            counts[row["device_folder"]][row["hardware"]] += 1
    return {f: get_device(max(hw, key=hw.__getitem__)) for f, hw in sorted(counts.items())}


def blob_index(suite: str | None = None) -> dict[str, tuple[str, str]]:
    """{src_blob: (suite, problem key)} for looking a problem up by its source."""
    return {
        row["src_blob"]: (row["suite"], f"{row['level']}/{row['problem']}")
        for row in _timing_rows()
        if suite is None or row["suite"] == suite
    }


def measured_ms(source: str, device: Device) -> float | None:
    """The shipped eager time of this exact problem file on this GPU model (geometric mean over hosts)."""
    hit = blob_index().get(git_blob(source))
    if hit is None:
        return None
    suite, key = hit
    folders = folder_devices(suite)
    times = [ms for f, ms in timings(suite).get(key, {}).items() if folders[f].name == device.name]
    return math.exp(sum(map(math.log, times)) / len(times)) if times else None


def features_to_row(suite: str, key: str, blob: str, feats: Features) -> dict[str, object]:
    level, problem = key.split("/", 1)
    row: dict[str, object] = {"suite": suite, "level": level, "problem": problem, "src_blob": blob}
    row.update({c: getattr(feats, c) for c in FEATURE_COLUMNS})
    row["dtype"], row["method"] = feats.dtype, feats.method
    for cls in CLASSES:
        c = feats.classes.get(cls, {})
        row[f"{cls}_n"], row[f"{cls}_flops"], row[f"{cls}_bytes"] = (
            int(c.get("n", 0)),
            c.get("flops", 0.0),
            int(c.get("bytes", 0)),
        )
    return row


def row_to_features(row: dict[str, str]) -> Features:
    classes = {}
    for cls in CLASSES:
        n = int(row[f"{cls}_n"])
        if n:
            classes[cls] = {"n": n, "flops": float(row[f"{cls}_flops"]), "bytes": int(row[f"{cls}_bytes"])}
    return Features(
        **{c: (float(row[c]) if c.startswith("flops") else int(row[c])) for c in FEATURE_COLUMNS},
        classes=classes,
        dtype=row["dtype"],
        method=row["method"],
    )


@lru_cache(maxsize=4)
def features(suite: str) -> dict[str, Features]:
    """{problem key: Features} for the problems of one suite whose features could be counted."""
    check_suite(suite)
    with FEATURES.open() as f:
        return {
            f"{r['level']}/{r['problem']}": row_to_features(r)
            for r in csv.DictReader(f)
            if r["suite"] == suite
        }


def problem_keys(suite: str) -> list[str]:
    """Every problem of a suite: timed anywhere, or with features."""
    return sorted(set(timings(suite)) | set(features(suite)))


def load_measured(path: str | Path, suite: str) -> dict[str, float]:
    """A user's `level,problem,mean_ms` CSV, checked against the suite (clear errors, nothing dropped)."""
    check_suite(suite)
    known = set(problem_keys(suite))
    out: dict[str, float] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"level", "problem", "mean_ms"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; need level,problem,mean_ms"
            )
        for line, row in enumerate(reader, start=2):
            key = f"{row['level'].strip()}/{row['problem'].strip()}"
            if key not in known:
                raise ValueError(f"{path}:{line}: unknown problem {key!r} in suite {suite}")
            try:
                ms = float(row["mean_ms"])
            except ValueError:
                raise ValueError(f"{path}:{line}: mean_ms {row['mean_ms']!r} is not a number") from None
            if not ms > 0 or not math.isfinite(ms):
                raise ValueError(
                    f"{path}:{line}: mean_ms must be a positive number of milliseconds, got {ms}"
                )
            if key in out:
                raise ValueError(f"{path}:{line}: {key} measured twice")
            out[key] = ms
    return out
