"""Episodes by hand: the turn limit, the stop rules, the episode reward (discounted, best-of), the hack floor on
any turn, unjudged turns, per-turn returns, the state round trip, and the settings in the reward YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelrl.rewards.compose import load_config
from kernelrl.rewards.episode import Episode, EpisodeConfig, EpisodeConfigError, Turn

ROOT = Path(__file__).resolve().parents[1]
FLOOR = -1.3


def turn(status: str, reward: float | None, speedup: float | None = None) -> Turn:
    return Turn(reward, status, f"feedback for {status}", speedup)


def play(config: EpisodeConfig, *turns: Turn) -> Episode:
    ep = Episode(config)
    for t in turns:
        ep.add(t)
    return ep


def test_discounted_is_kevins_return_and_best_is_the_max():
    disc, best = EpisodeConfig(max_turns=4, gamma=0.4), EpisodeConfig(max_turns=4, aggregate="best")
    fixed = [turn("compile_error", -0.1), turn("mismatch", 0.2), turn("ok", 1.2)]
    assert play(disc, *fixed).reward == pytest.approx(-0.1 + 0.4 * 0.2 + 0.16 * 1.2)
    assert play(best, *fixed).reward == pytest.approx(1.2)
    assert play(disc, *fixed).returns() == pytest.approx([-0.1 + 0.08 + 0.192, 0.2 + 0.48, 1.2])
    first_try = play(disc, turn("ok", 1.2))
    assert first_try.reward == pytest.approx(1.2)
    assert first_try.reward > play(disc, *fixed).reward  # fixing later is worth less
    never = play(EpisodeConfig(max_turns=2), turn("mismatch", 0.2), turn("mismatch", 0.2))
    assert never.reward == pytest.approx(0.28) and never.done and not never.solved


@pytest.mark.parametrize("aggregate", ["discounted", "best"])
def test_a_hack_on_any_turn_floors_the_episode(aggregate):
    config = EpisodeConfig(max_turns=3, aggregate=aggregate)
    late = play(config, turn("mismatch", 0.2), turn("hack_detected", FLOOR))
    early = play(config, turn("hack_detected", FLOOR), turn("ok", 1.2))
    for ep in (late, early):
        assert ep.reward == pytest.approx(FLOOR)
        assert ep.returns() == pytest.approx([FLOOR] * len(ep.turns))
        assert ep.summary()["hacked"] == 1.0
    honest_failure = play(config, turn("compile_error", -0.1), turn("compile_error", -0.1))
    assert early.reward < honest_failure.reward


def test_an_unjudged_turn_is_never_a_number():
    ep = play(EpisodeConfig(max_turns=3), turn("infra_error", None), turn("ok", 1.2))
    assert ep.reward is None and ep.returns() == [None, None]
    assert Episode().reward is None


def test_stop_rules_and_turn_limit():
    correct = EpisodeConfig(max_turns=3)
    assert play(correct, turn("ok", 1.2)).done
    ep = play(correct, turn("mismatch", 0.2))
    assert not ep.done and "Fix it and submit" in ep.observation()
    fast = EpisodeConfig(max_turns=3, stop="fast", min_speedup=1.2)
    slow = play(fast, turn("ok", 1.0, speedup=0.9))
    assert not slow.done and slow.solved  # correct but slow: try again for speed
    assert play(fast, turn("ok", 1.0, speedup=0.9), turn("ok", 1.3, speedup=1.5)).done
    assert play(
        fast, turn("ok", 1.2, speedup=None)
    ).done  # nothing timed (CPU): correct is the best it can be
    limit = play(EpisodeConfig(max_turns=2), turn("mismatch", 0.2), turn("mismatch", 0.2))
    assert limit.observation().endswith("No attempts left: the episode is over.")
    with pytest.raises(RuntimeError, match="episode is over after 2 turns"):
        limit.add(turn("ok", 1.2))


def test_observation_numbers_the_attempt():
    ep = play(EpisodeConfig(max_turns=3), turn("mismatch", 0.2), turn("ok", 1.2))
    assert ep.observation() == "Attempt 2 of 3:\nfeedback for ok\nSolved: the episode is over."
    assert ep.summary() == {
        "turns": 2.0,
        "solved": 1.0,
        "solved_turn": 2.0,
        "hacked": 0.0,
        "reward": ep.reward,
    }


def test_state_round_trip_is_plain_data():
    import json

    ep = play(EpisodeConfig(max_turns=3, aggregate="best"), turn("mismatch", 0.2), turn("ok", 1.2, 1.1))
    back = Episode.from_state(json.loads(json.dumps(ep.state())))
    assert back.config == ep.config and back.reward == ep.reward and back.done
    assert [t.to_dict() for t in back.turns] == [t.to_dict() for t in ep.turns]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"max_turns": 0}, "episode.max_turns"),
        ({"aggregate": "mean"}, "episode.aggregate"),
        ({"gamma": 1.5}, "episode.gamma"),
        ({"stop": "never"}, "episode.stop"),
        ({"min_speedup": 0}, "episode.min_speedup"),
        ({"max_turn": 3}, "unknown key 'max_turn'"),
    ],
)
def test_bad_settings_name_the_key(settings, key, tmp_path):
    with pytest.raises(EpisodeConfigError, match=key):
        EpisodeConfig.from_dict(settings)
    path = tmp_path / "bad.yaml"
    path.write_text(f"weights: {{execution: 1.0}}\nepisode: {settings}\n")
    with pytest.raises(ValueError, match=key):  # the reward config loader checks the section too
        load_config(path)


def test_the_recipe_configures_episodes_and_weights():
    path = ROOT / "recipes" / "rewards" / "multiturn.yaml"
    assert EpisodeConfig.from_yaml(path) == EpisodeConfig(max_turns=4, aggregate="discounted", gamma=0.4)
    assert load_config(path).weights["execution"] == 1.0
    assert EpisodeConfig.from_yaml(ROOT / "recipes" / "rewards" / "default.yaml") == EpisodeConfig()
