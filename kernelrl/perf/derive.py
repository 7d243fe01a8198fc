"""Regenerate the shipped data from a KernelBench timing folder (maintainers only; the tests use the result).

    python -m kernelrl.perf.derive --kernelbench ../shared/data/kernelbench [--cache feats.jsonl]

Reads `eager_times.csv` and the problem files it names (by git blob), counts each problem's features in
worker subprocesses (problem files are code: never in this process), and writes `data/timings.csv`,
`data/features.csv` and the trained models `data/model-<suite>.json`. The problem files themselves are
not copied. `--cache` keeps per-file results in a JSONL file, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from kernelrl.perf import data
from kernelrl.perf.features import Features, features_of_files
from kernelrl.perf.predict import fit_and_save

TIMING_COLUMNS = (
    "suite",
    "device_folder",
    "hardware",
    "level",
    "problem",
    "src_blob",
    "mean_ms",
    "std_ms",
    "torch",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kernelrl.perf.derive", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--kernelbench", required=True, type=Path, help="folder with eager_times.csv and problems/"
    )
    parser.add_argument("--cache", type=Path, help="JSONL of per-file feature results, reused and extended")
    parser.add_argument(
        "--out", type=Path, default=data.DATA, help="where the tables go (default: the package)"
    )
    args = parser.parse_args(argv)
    kb = args.kernelbench
    if not (kb / "eager_times.csv").is_file():
        parser.error(f"{kb}/eager_times.csv not found")
    files: dict[str, dict[str, Path]] = {}
    for suite in data.SUITES:
        files[suite] = {
            data.git_blob(p.read_bytes()): p for p in sorted((kb / "problems" / suite).glob("*/*.py"))
        }
    with (kb / "eager_times.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["suite"] in data.SUITES]
    timing_rows = []
    for r in rows:
        path = files[r["suite"]].get(r["src_blob"])
        if path is None:
            print(
                f"skipped: no problem file for {r['suite']} {r['level']}/{r['problem']} blob {r['src_blob']}"
            )
            continue
        timing_rows.append(
            {**{c: r[c] for c in TIMING_COLUMNS}, "level": path.parent.name, "problem": path.name}
        )
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "timings.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, TIMING_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(timing_rows)
    all_paths = [p for suite in data.SUITES for p in files[suite].values()]
    results = features_of_files(all_paths, cache=args.cache)
    feature_table, failed = [], []
    for suite in data.SUITES:
        for blob, path in files[suite].items():
            row = results[str(path)]
            key = f"{path.parent.name}/{path.name}"
            if not row.get("ok"):
                failed.append(f"{suite} {key}: {row.get('error', '')[:160]}")
                continue
            feature_table.append(data.features_to_row(suite, key, blob, Features.from_dict(row)))
    with (args.out / "features.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(feature_table[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(feature_table)
    print(f"wrote {len(timing_rows)} timings and {len(feature_table)} feature rows to {args.out}")
    for line in failed:
        print("no features:", line)
    if args.out == data.DATA:
        for suite in data.SUITES:
            print(f"trained {fit_and_save(suite)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
