"""The main job (`kernelrl demo`) end to end at toy size: every stage runs for real on the embedded model and
the sandbox, and the table, summary and reward curve come out of the run."""

from __future__ import annotations

import json

import datasets
import pytest
import ray

from kernelrl.cli import build_parser
from kernelrl.data_pipeline.generate import generate_problems
from kernelrl.rewards import trl_reward
from kernelrl.train import demo


def test_demo_runs_every_stage_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ANSWER_TOKENS", 24)  # toy generations; the real demo uses full answers
    monkeypatch.setattr(demo, "RL_STEP_ANSWERS", 4)  # the learning run at toy size: 2 problems x 2 answers
    screened: dict[str, float] = {}

    def screen(model, problems, out):  # the real screen; the toy model never answers right, so call two mixed
        screened.update(real_screen(model, problems, out))
        mixed, same = [(True, 1.2), (False, 0.0)] * 2, [(False, -0.7)] * 4
        return {g.name: mixed if i < 2 else same for i, g in enumerate(problems)}

    real_screen = demo._screen
    monkeypatch.setattr(demo, "_screen", screen)
    out = tmp_path / "demo"
    args = build_parser().parse_args(
        [
            "demo",
            "--out",
            str(out),
            "--train",
            "4",
            "--heldout",
            "1",
            "--sft-steps",
            "1",
            "--grpo-steps",
            "1",
            "--rl",
            "--rl-candidates",
            "3",
            "--rl-problems",
            "4",
            "--rl-steps",
            "8",
        ]
    )
    assert args.func is demo.cmd_demo
    try:
        result = demo.main(args)
        first = {
            f: json.loads((out / f).read_text())["seconds"] for f in ("demo_summary.json", "rl_summary.json")
        }
        again = demo.main(args)  # a rerun skips every finished stage (`demo --rl` after `make demo`)
    finally:
        trl_reward.reset()
        ray.shutdown()
    assert again["table"] == result["table"] and again["rl"]["quarters"] == result["rl"]["quarters"]
    for f, before in first.items():  # the summaries keep what each stage took, not the rerun's skip
        after = json.loads((out / f).read_text())["seconds"]
        assert set(after) == set(before) and all(after[k] >= before[k] for k in before)
    assert set(result["table"]) == {"base", "sft", "grpo"}
    for row in result["table"].values():
        assert 0.0 <= row["compile_rate"] <= 1.0 and row["mean_reward"] is not None
    assert [s for s, _ in result["reward_curve"]] == [1]  # one GRPO step, its reward logged
    assert (out / "reward_curve.png").stat().st_size > 1000
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["table"] == result["table"]
    assert (out / "sft" / "config.json").is_file()
    held = [json.loads(line)["spec"]["ops"] for line in (out / "heldout" / "specs.jsonl").open()]
    trained = [g.spec["ops"] for g in generate_problems(4, seed=0, categories=["elementwise"])]
    assert len(held) == 1 and held[0] not in trained  # held out: no training op chain at other sizes

    # --rl: the learning run on fresh problems (no training or held-out chain), its quarter test and table
    rl = result["rl"]
    assert [s for s, _ in rl["reward_curve"]] == list(range(1, 9))
    rewards = [r for _, r in rl["reward_curve"]]
    assert rl["quarters"]["quarter_steps"] == 2
    assert rl["quarters"]["diff"] == pytest.approx(sum(rewards[-2:]) / 2 - sum(rewards[:2]) / 2)
    assert set(rl["table"]) == {"sft", "grpo_long"} and (out / "rl_reward_curve.png").stat().st_size > 1000
    assert rl["step_seconds"]["time/generate"] > 0 and rl["step_seconds"]["time/reward"] > 0
    assert json.loads((out / "rl_summary.json").read_text())["quarters"] == rl["quarters"]
    # the screen sampled 4 answers of each of the 3 candidates; only the 2 whose answers differ are trained on
    assert len(screened) == 3 and all(len(answers) == 4 for answers in screened.values())
    assert all(isinstance(c, bool) and isinstance(r, float) for a in screened.values() for c, r in a)
    screen_rows = (out / "rl_screen" / "results.jsonl").read_text().splitlines()
    assert len(screen_rows) == 12
    fresh = datasets.load_from_disk(str(out / "rl_data"))["rl"]
    candidates = sorted((out / "rl_candidates").glob("*/*.py"))
    assert len(fresh) == 2 and set(fresh["problem"]) <= {p.read_text() for p in candidates}
    assert not set(fresh["problem"]) & {p.read_text() for p in (out / "heldout").glob("*/*.py")}


def test_demo_with_repair_examples_evaluates_over_two_turns(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ANSWER_TOKENS", 24)
    out = tmp_path / "demo"
    args = build_parser().parse_args(
        ["demo", "--out", str(out), "--train", "4", "--heldout", "1", "--sft-steps", "1", "--grpo-steps", "1"]
        + ["--repair"]
    )
    try:
        result = demo.main(args)
    finally:
        trl_reward.reset()
        ray.shutdown()
    train = datasets.load_from_disk(str(out / "data"))["train"]
    assert any(train["repair_bug"]) and not all(train["repair_bug"])  # plain answers and repair conversations
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["turns"]["n"] == 2
    for label, row in result["table"].items():
        name = {"base": "embedded", "sft": str(out / "sft"), "grpo": str(out / "grpo")}[label]
        after = [t["correctness"] for t in summary["turns"]["models"][name]]
        assert len(after) == 2 and row["correctness"] == after[0] and row["correctness_turn2"] == after[1]
    unsolved = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    unsolved = [r for r in unsolved if not (r["verdict"] or {}).get("correct")]
    assert len((out / "eval" / "turns.jsonl").read_text().splitlines()) == len(unsolved)


def test_learning_run_takes_only_problems_whose_screened_answers_differ():
    problems = generate_problems(7, seed=7, categories=["elementwise"])
    wrong, broken, hack, right = (False, 0.0), (False, -0.7), (False, -1.3), (True, 1.2)
    answers = [
        [wrong] * 4,  # all the same: never taken
        [right, wrong, wrong, wrong],  # 1/4 correct
        [right] * 4,  # all correct, all the same: never taken
        [right, right, wrong, wrong],  # 2/4: nearest an even split
        [wrong, broken, wrong, wrong],  # none correct, rewards spread a little
        [hack, hack, wrong, broken],  # none correct, rewards spread widely
        [right, right, right, wrong],  # 3/4
    ]
    screened = dict(zip([g.name for g in problems], answers, strict=True))
    order = [problems.index(g) for g in demo.choose_rl_problems(problems, screened, 9)]
    assert order == [3, 1, 6, 5, 4]  # mixed success first (nearest 2/4), then the widest reward spread
    assert [problems.index(g) for g in demo.choose_rl_problems(problems, screened, 2)] == [3, 1]
    only_spread = {
        g.name: [wrong, broken, wrong, wrong] if i == 2 else [wrong] * 4 for i, g in enumerate(problems)
    }
    assert demo.choose_rl_problems(problems, only_spread, 4) == [problems[2]]
    assert demo.choose_rl_problems(problems, {g.name: [right] * 4 for g in problems}, 4) == []
    tenths = {g.name: [(False, 0.1)] * 3 for g in problems}  # a float mean of these is not exactly 0.1
    assert demo.choose_rl_problems(problems, tenths, 4) == []


def test_learning_run_reuses_only_the_sft_models_scored_answers(tmp_path):
    source = tmp_path / "eval" / "results.jsonl"
    source.parent.mkdir()
    rows = [
        {"model": m, "problem_id": p, "sample": 0, "completion": f"{m} {p}"}
        for m in ("outputs/demo/sft", "outputs/demo/grpo")
        for p in ("a", "b")
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"model": "outputs/demo/sft", "cut')
    results = tmp_path / "eval_rl" / "results.jsonl"
    demo._reuse_answers(source, results, "outputs/demo/sft")
    reused = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["completion"] for r in reused] == ["outputs/demo/sft a", "outputs/demo/sft b"]
    results.write_text("begun\n")
    demo._reuse_answers(source, results, "outputs/demo/sft")
    assert results.read_text() == "begun\n"  # an evaluation already begun is left as it is
    demo._reuse_answers(tmp_path / "missing.jsonl", tmp_path / "fresh" / "results.jsonl", "outputs/demo/sft")
    assert not (tmp_path / "fresh").exists()


def test_every_step_of_the_learning_run_answers_every_chosen_problem():
    # TRL's own sampler, built as GRPOTrainer builds it, over the shapes step_shape gives
    from trl.trainer.utils import RepeatSampler

    for n in (1, 2, 3, 4):
        generations, batch = demo.step_shape(n)
        assert generations >= 2 and batch % generations == 0
        sampler = RepeatSampler(range(n), generations, batch // generations, repeat_count=1, seed=0)
        order = [i for _ in range(4) for i in sampler]  # the dataloader walks it once per epoch
        assert len(order) == 4 * batch
        for start in range(0, len(order), batch):
            assert sorted(order[start : start + batch]) == sorted(list(range(n)) * generations)
    assert demo.step_shape(2) == (4, 8) and demo.step_shape(1) == (8, 8)


def test_demo_refuses_sizes_that_are_not_positive(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["demo", "--heldout", "0"])
    assert e.value.code == 2 and "--heldout: expected a positive integer, got '0'" in capsys.readouterr().err
