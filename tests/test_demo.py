"""The main job (`kernelrl demo`) end to end at toy size: every stage runs for real on the embedded model and
the sandbox, and the table, summary and reward curve come out of the run."""

from __future__ import annotations

import json

import pytest
import ray

from kernelrl.cli import build_parser
from kernelrl.data_pipeline.generate import generate_problems
from kernelrl.rewards import trl_reward
from kernelrl.train import demo


def test_demo_runs_every_stage_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ANSWER_TOKENS", 24)  # toy generations; the real demo uses full answers
    args = build_parser().parse_args(
        [
            "demo",
            "--out",
            str(tmp_path),
            "--train",
            "4",
            "--heldout",
            "1",
            "--sft-steps",
            "1",
            "--grpo-steps",
            "1",
        ]
    )
    assert args.func is demo.cmd_demo
    try:
        result = demo.main(args)
    finally:
        trl_reward.reset()
        ray.shutdown()
    assert set(result["table"]) == {"base", "sft", "grpo"}
    for row in result["table"].values():
        assert 0.0 <= row["compile_rate"] <= 1.0 and row["mean_reward"] is not None
    assert [s for s, _ in result["reward_curve"]] == [1]  # one GRPO step, its reward logged
    assert (tmp_path / "reward_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "demo_summary.json").read_text())["table"] == result["table"]
    assert (tmp_path / "sft" / "config.json").is_file()
    held = [json.loads(line)["spec"]["ops"] for line in (tmp_path / "heldout" / "specs.jsonl").open()]
    trained = [g.spec["ops"] for g in generate_problems(4, seed=0, categories=["elementwise"])]
    assert len(held) == 1 and held[0] not in trained  # held out: no training op chain at other sizes


def test_demo_refuses_sizes_that_are_not_positive(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["demo", "--heldout", "0"])
    assert e.value.code == 2 and "--heldout: expected a positive integer, got '0'" in capsys.readouterr().err
