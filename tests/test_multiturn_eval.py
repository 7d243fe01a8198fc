"""`kernelrl eval --turns N`: the bundled wrong answers as first turns and the bundled solutions as scripted second
turns give correctness 0 after turn 1 and 1 after turn 2; a model's later turns are generated from the whole
conversation with the sandbox's feedback in it; a rerun resumes without sandbox work."""

from __future__ import annotations

import json

import pytest
import ray

from kernelrl.cli import main as cli_main
from kernelrl.rewards.compose import RewardConfig, Scorer
from kernelrl.sandbox import bundled_problems
from kernelrl.train import evaluate as evaluate_module
from kernelrl.train.evaluate import EvalConfig, evaluate

NAMES = ["relu", "gelu", "swish", "elementwise_add", "matmul_bias_sigmoid"]
PROBLEMS = "bundled:" + ",".join(NAMES)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """One row per problem: [wrong.py, solution.py] as the answers of turns 1 and 2."""
    b = bundled_problems()
    path = tmp_path_factory.mktemp("turns") / "repair.jsonl"
    rows = [{"problem": n, "completion": [b[n].extras["wrong"], b[n].extras["solution"]]} for n in NAMES]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def scorer():
    s = Scorer(RewardConfig(), num_workers=2, device="cpu", run_timeout_s=60)
    submit = s.submit
    s.submitted = 0

    def counting(problems, completions):
        s.submitted += len(completions)
        return submit(problems, completions)

    s.submit = counting
    yield s
    s.close()
    ray.shutdown()


def test_eval_turns_2_fixes_every_bundled_wrong_answer(scripted, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "--completions", str(scripted), "--problems", PROBLEMS, "--turns", "2", "--out", str(out)]
    assert cli_main([*args, "--device", "cpu", "--workers", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    per_turn = summary["turns"]["models"]["repair"]
    assert [r["turn"] for r in per_turn] == [1, 2]
    assert [r["correctness"] for r in per_turn] == [0.0, 1.0]
    assert [r["answered"] for r in per_turn] == [len(NAMES), len(NAMES)]
    assert per_turn[0]["fast_p"]["1"] is None  # CPU: nothing timed, null rather than 0
    assert summary["models"]["repair"]["overall"]["correctness"] == 0.0  # the single-turn result
    rows = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    assert sorted(r["problem"] for r in rows) == sorted(NAMES)
    assert all(r["turn"] == 2 and r["verdict"]["status"] == "ok" for r in rows)
    report = (out / "report.md").read_text()
    assert "## Over turns" in report and "| `repair` | 2 | 5 | 100.0% | 100.0% |" in report
    assert (out / "turns.png").is_file()


def test_turns_resume_and_stop_when_solved(scorer, scripted, tmp_path):
    b = bundled_problems()
    mixed = tmp_path / "mixed.jsonl"
    rows = [
        {
            "problem": "relu",
            "completion": [b["relu"].extras["solution"], b["relu"].extras["wrong"]],
        },  # solved
        {"problem": "gelu", "completion": [b["gelu"].extras["wrong"]]},  # no second answer
        {"problem": "swish", "completion": [b["swish"].extras["wrong"], b["swish"].extras["solution"]]},
    ]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = EvalConfig(completions=[str(mixed)], problems=PROBLEMS, out=str(tmp_path / "e"), turns=3)
    summary = evaluate(config, scorer=scorer, progress=False)
    per_turn = summary["turns"]["models"]["mixed"]
    assert [r["answered"] for r in per_turn] == [3, 1, 0]  # relu stopped when solved, gelu ran out
    assert [r["correctness"] for r in per_turn] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    before = scorer.submitted
    again = evaluate(config, scorer=scorer, progress=False)
    assert scorer.submitted == before and again["turns"] == summary["turns"]


def test_model_turns_see_the_feedback(scorer, tiny_model_dir, tmp_path, monkeypatch):
    seen = []
    real = evaluate_module._generate()

    def recording(model, prompts, **kwargs):
        seen.append(prompts)
        return real(model, prompts, **kwargs)

    monkeypatch.setattr(evaluate_module, "_generate", lambda: recording)
    config = EvalConfig(
        models=[str(tiny_model_dir)],
        problems="bundled:relu",
        out=str(tmp_path),
        turns=2,
        max_new_tokens=8,
        temperature=0.0,
        one_shot=False,
    )
    summary = evaluate(config, scorer=scorer, progress=False)
    assert [r["answered"] for r in summary["turns"]["models"][str(tiny_model_dir)]] == [1, 1]
    first, second = seen
    assert [m["role"] for m in second[0]] == ["system", "user", "assistant", "user"]
    assert second[0][2]["content"] == json.loads((tmp_path / "results.jsonl").read_text())["completion"]
    assert second[0][3]["content"].startswith("Attempt 1 of 2:\nNo usable answer")
    row = json.loads((tmp_path / "turns.jsonl").read_text())
    assert row["turn"] == 2 and row["source"] == "model"


def test_bad_completion_lists_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "relu", "completion": ["ok", 3]}) + "\n")
    rc = cli_main(["eval", "--completions", str(bad), "--problems", "bundled:relu", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1: expected an object with a string 'completion' (or a list of strings, one per" in err
