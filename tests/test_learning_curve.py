"""The learning test of a GRPO run: quarter means and standard errors from a run's trainer state, the verdict
they give, and the reward-curve plot."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from kernelrl.train import learning_curve


def _run(tmp_path, rewards, checkpoint=8):
    state = {"log_history": [{"step": i + 1, "reward": r, "loss": 0.0} for i, r in enumerate(rewards)]}
    state["log_history"].append({"step": len(rewards), "train_runtime": 1.0})  # the summary row has no reward
    d = tmp_path / f"checkpoint-{checkpoint}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps(state))
    return tmp_path


def test_quarters_match_a_hand_computation():
    rewards = [0.0, 0.2, -0.1, 0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.8, 0.7, 0.9]
    t = learning_curve.quarter_test(rewards)
    first, last = rewards[:3], rewards[-3:]
    se = math.hypot(statistics.stdev(first) / 3**0.5, statistics.stdev(last) / 3**0.5)
    assert t["quarter_steps"] == 3 and t["steps"] == 12
    assert t["diff"] == pytest.approx(statistics.fmean(last) - statistics.fmean(first))
    assert t["se_diff"] == pytest.approx(se) and t["z"] == pytest.approx(t["diff"] / se)
    assert t["learned"] is True


def test_noise_without_a_trend_is_not_learning():
    rewards = [0.5, -0.5] * 8
    t = learning_curve.quarter_test(rewards)
    assert abs(t["diff"]) < 1e-12 and t["learned"] is False
    assert learning_curve.quarter_test(list(reversed(sorted(rewards))))["learned"] is False  # got worse


def test_too_short_a_run_is_refused():
    with pytest.raises(ValueError, match="need at least 8"):
        learning_curve.quarter_test([0.1] * 7)


def test_reads_the_last_checkpoint_and_plots(tmp_path):
    _run(tmp_path, [0.0] * 8, checkpoint=8)
    run = _run(tmp_path, [0.1 * i for i in range(16)], checkpoint=16)
    curve = learning_curve.step_rewards(run)
    assert [s for s, _ in curve] == list(range(1, 17)) and curve[-1][1] == pytest.approx(1.5)
    out = tmp_path / "curve.png"
    assert learning_curve.main([str(run), "--plot", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_a_directory_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert learning_curve.main([str(tmp_path)]) == 2
    assert "no trainer_state.json under" in capsys.readouterr().err
