"""`kernelrl <command>`: each room adds its own subcommand; this module only lists them."""

from __future__ import annotations

import argparse
import sys

from kernelrl.data_pipeline import curate as curate_cli
from kernelrl.perf import cli as perf_cli
from kernelrl.rewards import server
from kernelrl.sandbox import cli as check_cli
from kernelrl.sandbox import variants_cli
from kernelrl.train import demo as demo_cli
from kernelrl.train import evaluate as eval_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kernelrl", description="Train LLMs to write fast, correct GPU kernels."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check_cli.add_parser(sub)
    server.add_parser(sub)
    eval_cli.add_parser(sub)
    curate_cli.add_parser(sub)
    demo_cli.add_parser(sub)
    variants_cli.add_parser(sub)
    perf_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
