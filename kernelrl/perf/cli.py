"""`kernelrl perf`: predicted reference times on a GPU, the leave-one-GPU-out report, features and SOL.

kernelrl perf predict --suite v0.1 --measured my_gpu.csv --out predictions.csv
kernelrl perf predict --suite v0.1 --device H200 --out predictions.csv
kernelrl perf predict --suite v0.1 --device L40S --problems my_problems/ --out predictions.csv
kernelrl perf eval [--suite v0.1]
kernelrl perf features my_problems/ [--device H100-SXM]
kernelrl perf devices
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from kernelrl.perf import data
from kernelrl.perf.devices import UnknownDeviceError, devices, get_device


def _fail(msg: str) -> int:
    print(f"kernelrl perf: error: {msg}", file=sys.stderr)
    return 2


def _problem_files(root: Path) -> dict[str, Path]:
    """{level/file: path} for the KernelBench problem files under `root` (level = the file's folder).

    Other Python files (solutions, helpers) are named on stderr and left out.
    """
    from kernelrl.perf.features import looks_like_problem

    paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
    out = {}
    for p in paths:
        try:
            ok = looks_like_problem(p.read_text())
        except (OSError, UnicodeDecodeError):
            ok = False
        if ok:
            out[f"{p.parent.name}/{p.name}"] = p
        else:
            print(
                f"skipped: {p} is not a KernelBench problem (class Model, get_inputs, get_init_inputs)",
                file=sys.stderr,
            )
    return out


def _user_features(root: Path) -> tuple[dict, list[str]]:
    from kernelrl.perf.features import Features, features_of_files

    files = _problem_files(root)
    if not files:
        return {}, []
    rows = features_of_files(list(files.values()))
    feats, failed = {}, []
    for key, path in files.items():
        row = rows[str(path)]
        if row.get("ok"):
            feats[key] = Features.from_dict(row)
        else:
            failed.append(f"{path}: {row.get('error')}")
    return feats, failed


def cmd_predict(args: argparse.Namespace) -> int:
    from kernelrl.perf.predict import predict_suite

    try:
        data.check_suite(args.suite)
        device = get_device(args.device) if args.device else None
        measured = data.load_measured(args.measured, args.suite) if args.measured else {}
    except (ValueError, OSError) as e:
        return _fail(str(e))
    if device is None and not measured:
        return _fail("nothing to predict from: give --measured (times on your GPU) and/or --device NAME")
    failed: list[str] = []
    problems = None
    if args.problems:
        root = Path(args.problems)
        if not root.exists():
            return _fail(f"--problems: {root} does not exist")
        problems, failed = _user_features(root)
        if not problems and not failed:
            return _fail(f"--problems: no KernelBench problem files under {root}")
    try:
        device, pred = predict_suite(args.suite, device, measured, problems)
    except ValueError as e:
        return _fail(str(e))
    if not args.device:
        print(
            "device: not named, so its datasheet is taken as the average of the suite's GPUs; "
            "--device NAME (kernelrl perf devices) predicts better",
            file=sys.stderr,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["level", "problem", "predicted_ms"])
        for key, ms in pred.items():
            w.writerow([*key.split("/", 1), f"{ms:.6g}"])
    print(
        f"wrote {len(pred)} predictions for {device.name} ({args.suite}, {len(measured)} measured) to {out}",
        file=sys.stderr,
    )
    for line in failed:
        print(f"not predicted: {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kernelrl.perf import evaluation

    suites = data.SUITES if args.suite == "all" else (args.suite,)
    try:
        for s in suites:
            data.check_suite(s)
        ks = tuple(int(k) for k in args.ks.split(","))
    except ValueError as e:
        return _fail(str(e))
    reports, parts = {}, []
    for suite in suites:
        n = len(data.folder_devices(suite))
        with tqdm(total=n, desc=f"leave-one-GPU-out {suite}", unit="GPU", file=sys.stderr) as bar:
            reports[suite] = evaluation.leave_one_gpu_out(
                suite,
                ks=ks,
                repeats=args.repeats,
                progress=lambda name, bar=bar: (bar.set_postfix_str(name), bar.update(1)),
            )
        parts.append(evaluation.render(suite, reports[suite]))
        parts.append(evaluation.render_unseen(suite, evaluation.unseen_problems(suite)))
    text = "\n\n".join(parts)
    failures = evaluation.gate_failures(reports) if args.repeats == evaluation.REPEATS else []
    text += "\n\n" + (
        "Gates: all passed." if not failures else "Gates missed:\n" + "\n".join(f"- {f}" for f in failures)
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from kernelrl.perf.roofline import speed_of_light

    try:
        device = get_device(args.device) if args.device else None
    except UnknownDeviceError as e:
        return _fail(str(e))
    root = Path(args.path)
    if not root.exists():
        return _fail(f"{root} does not exist")
    feats, failed = _user_features(root)
    for key, f in feats.items():
        row = {"problem": key, **f.to_dict(), "compulsory_bytes": f.compulsory_bytes}
        if device:
            sol = speed_of_light(f.flops, f.input_bytes, f.output_bytes, f.param_bytes, device, f.flops_lowp)
            row.update(device=device.name, sol_ms=sol.sol_ms, bound=sol.bound)
        print(json.dumps(row))
    for line in failed:
        print(f"not counted: {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_devices(args: argparse.Namespace) -> int:
    print(f"{'name':<16} {'FP32':>7} {'TF32':>7} {'FP16':>7} {'GB/s':>6} {'SMs':>4} {'L2 MB':>6}  source")
    for d in devices().values():
        tf32 = f"{d.tf32 / 1e12:7.1f}" if d.tf32 else "      -"
        print(
            f"{d.name:<16} {d.peak('float32', 'matmul') / 1e12:7.1f} {tf32} {d.fp16 / 1e12:7.1f} "
            f"{d.bandwidth / 1e9:6.0f} {d.sms:4d} {d.l2_bytes / 2**20:6.0f}  {d.source.split(' ;')[0]}"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perf",
        help="predicted reference times on a GPU, the leave-one-GPU-out report, problem features and SOL",
        description="Cross-GPU latency model trained on KernelBench's published eager timings (MIT).",
    )
    cmds = p.add_subparsers(dest="perf_command", required=True)
    pr = cmds.add_parser(
        "predict",
        help="predict every problem's eager reference time on a GPU",
        description="Writes level,problem,predicted_ms for every problem of the suite (or of --problems). "
        "Measured problems keep their measured time.",
    )
    pr.add_argument(
        "--suite", default="v0.1", help=f"KernelBench size suite: {', '.join(data.SUITES)} (never mixed)"
    )
    pr.add_argument("--measured", help="CSV level,problem,mean_ms of suite problems timed on your GPU")
    pr.add_argument(
        "--device", help="GPU name in the device table (kernelrl perf devices); needed without --measured"
    )
    pr.add_argument("--problems", help="your own problem files (a file or a folder): predict those instead")
    pr.add_argument("--out", required=True, help="output CSV")
    pr.set_defaults(func=cmd_predict)
    ev = cmds.add_parser("eval", help="leave-one-GPU-out report of the latency model, with its gates")
    ev.add_argument("--suite", default="v0.1", help=f"{', '.join(data.SUITES)} or all")
    ev.add_argument(
        "--ks", default="0,5,10,20", help="measured problems on the held-out GPU (comma-separated)"
    )
    ev.add_argument("--repeats", type=int, default=20, help="random draws of the measured problems per k")
    ev.add_argument("--out", help="also write the report (markdown) here")
    ev.set_defaults(func=cmd_eval)
    fe = cmds.add_parser(
        "features", help="FLOPs, bytes and ops of problem files (JSON lines), and SOL on a GPU"
    )
    fe.add_argument("path", help="a problem file or a folder of them")
    fe.add_argument("--device", help="GPU for the speed of light")
    fe.set_defaults(func=cmd_features)
    dv = cmds.add_parser("devices", help="the device table: datasheet peaks and sources")
    dv.set_defaults(func=cmd_devices)
