"""Multi-turn refinement: an episode is turns of (answer, verdict, feedback) with a turn limit, a stop rule and
one reward aggregated from the turns' rewards.

Why: the strongest kernel-writing systems learn in a loop (submit, read the compiler error or the failing
check or the speed, try again). The sandbox already judges every answer; an episode turns its verdicts into
observations (`kernelrl.rewards.feedback`) and its per-turn rewards (`kernelrl.rewards.compose.Scorer`, the same
pool and cache as everything else) into one episode reward:

- ``discounted`` (Kevin-32B): R = sum_t gamma^t r_t, the return of the first turn; `Episode.returns` gives every
  turn's return sum_{j>=t} gamma^(j-t) r_j for trainers that credit turns separately.
- ``best``: R = max_t r_t (best-of-turns).

A hack on any turn gives the whole episode the floor (the hacked turn's reward: the lowest the weights allow),
so fixing a wrong answer by hacking, or hacking before a clean answer, never pays. An unjudged turn
(``infra_error``, ``not_executed``; reward None) makes the episode reward None: an outage is never a number.
The episode stops at the turn limit, or when a turn is correct (``stop: correct``), or correct and at least
``min_speedup`` fast on a GPU (``stop: fast``; a correct answer that nothing timed, e.g. on CPU, stops too).

Configured in the reward YAML (``recipes/rewards/multiturn.yaml``)::

    episode:
      max_turns: 4
      aggregate: discounted   # or best
      gamma: 0.4
      stop: correct           # or fast
      min_speedup: 1.0

The state (config + turns) is plain data, so a trainer's hook can keep it wherever its framework keeps
per-trajectory state. This module needs only the standard library at import; scoring in-process imports
kernelrl when first used.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

AGGREGATES = ("discounted", "best")
STOP_RULES = ("correct", "fast")
UNJUDGED = frozenset({"infra_error", "not_executed"})


class EpisodeConfigError(ValueError):
    """A bad `episode:` setting; the message names the key."""


@dataclass(frozen=True)
class EpisodeConfig:
    max_turns: int = 4
    aggregate: str = "discounted"
    gamma: float = 0.4  # Kevin-32B's discount
    stop: str = "correct"
    min_speedup: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_turns, int) or isinstance(self.max_turns, bool) or self.max_turns < 1:
            raise EpisodeConfigError(f"episode.max_turns: expected an integer >= 1, got {self.max_turns!r}")
        if self.aggregate not in AGGREGATES:
            raise EpisodeConfigError(
                f"episode.aggregate: expected one of {AGGREGATES}, got {self.aggregate!r}"
            )
        if not isinstance(self.gamma, (int, float)) or not 0 <= self.gamma <= 1:
            raise EpisodeConfigError(f"episode.gamma: expected a number in [0, 1], got {self.gamma!r}")
        if self.stop not in STOP_RULES:
            raise EpisodeConfigError(f"episode.stop: expected one of {STOP_RULES}, got {self.stop!r}")
        if not isinstance(self.min_speedup, (int, float)) or not self.min_speedup > 0:
            raise EpisodeConfigError(
                f"episode.min_speedup: expected a positive number, got {self.min_speedup!r}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EpisodeConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EpisodeConfigError(
                f"episode: unknown key {unknown[0]!r}; expected {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path | None) -> EpisodeConfig:
        """The ``episode:`` section of a reward YAML (defaults when there is none, or no path)."""
        if path is None:
            return cls()
        import yaml

        p = Path(path)
        if not p.is_file():
            raise EpisodeConfigError(f"reward config not found: {p}")
        data = yaml.safe_load(p.read_text()) or {}
        section = data.get("episode") if isinstance(data, dict) else None
        if section is not None and not isinstance(section, dict):
            raise EpisodeConfigError(f"{p}: episode: expected a mapping of settings")
        try:
            return cls.from_dict(section)
        except EpisodeConfigError as e:
            raise EpisodeConfigError(f"{p}: {e}") from None


@dataclass
class Turn:
    """One scored answer: its reward (None = not judged), verdict status, speedup and the model's feedback."""

    reward: float | None
    status: str
    feedback: str
    speedup: float | None = None
    components: dict[str, float | None] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.status == "ok"

    @property
    def hack(self) -> bool:
        return self.status == "hack_detected"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(
            reward=data.get("reward"),
            status=str(data.get("status") or "infra_error"),
            feedback=str(data.get("feedback") or ""),
            speedup=data.get("speedup"),
            components=dict(data.get("components") or {}),
        )


class Episode:
    """The turns so far, whether the episode is over, the observation for the model and the episode reward."""

    def __init__(self, config: EpisodeConfig | None = None, turns: list[Turn] | None = None) -> None:
        self.config = config or EpisodeConfig()
        self.turns: list[Turn] = list(turns or [])

    def stops(self, turn: Turn) -> bool:
        """Whether this turn ends the episode by the stop rule (the turn limit aside)."""
        if not turn.correct:
            return False
        if self.config.stop == "correct" or turn.speedup is None:
            return True
        return turn.speedup >= self.config.min_speedup

    @property
    def done(self) -> bool:
        return len(self.turns) >= self.config.max_turns or (bool(self.turns) and self.stops(self.turns[-1]))

    @property
    def solved(self) -> bool:
        return any(t.correct for t in self.turns)

    def add(self, turn: Turn) -> str:
        """Record a turn; returns the observation for the model. Raises once the episode is over."""
        if self.done:
            raise RuntimeError(
                f"the episode is over after {len(self.turns)} turns; no more answers are scored"
            )
        self.turns.append(turn)
        return self.observation()

    def observation(self) -> str:
        """What the model reads after its latest turn: the attempt number, the feedback, what to do next."""
        if not self.turns:
            return ""
        turn, n = self.turns[-1], len(self.turns)
        if self.stops(turn):
            after = "Solved: the episode is over."
        elif n >= self.config.max_turns:
            after = "No attempts left: the episode is over."
        else:
            after = "Fix it and submit the complete corrected answer (reasoning, then one ```python block)."
        return f"Attempt {n} of {self.config.max_turns}:\n{turn.feedback}\n{after}"

    @property
    def reward(self) -> float | None:
        """The episode's reward from its turns (see the module docstring); None before any turn or when a turn
        was not judged."""
        rewards = [t.reward for t in self.turns]
        if not rewards or any(r is None for r in rewards):
            return None
        hacked = [t.reward for t in self.turns if t.hack]
        if hacked:
            return min(hacked)  # type: ignore[type-var]
        if self.config.aggregate == "best":
            return max(rewards)  # type: ignore[type-var]
        return sum(self.config.gamma**i * r for i, r in enumerate(rewards))  # type: ignore[operator]

    def returns(self) -> list[float | None]:
        """Per-turn discounted returns G_t = sum_{j>=t} gamma^(j-t) r_j (Kevin-32B's per-turn credit); the hack
        floor applies to every turn of a hacked episode, None everywhere when a turn was not judged."""
        rewards = [t.reward for t in self.turns]
        if any(r is None for r in rewards):
            return [None] * len(rewards)
        floor = self.reward if any(t.hack for t in self.turns) else None
        out: list[float | None] = []
        g = 0.0
        for r in reversed(rewards):
            g = r + self.config.gamma * g  # type: ignore[operator]
            out.append(floor if floor is not None else g)
        return out[::-1]

    def summary(self) -> dict[str, float]:
        """Numbers for a trainer's logs: turns, solved, the first solving turn (0 = never), hacked, reward."""
        first = next((i + 1 for i, t in enumerate(self.turns) if t.correct), 0)
        reward = self.reward
        return {
            "turns": float(len(self.turns)),
            "solved": float(self.solved),
            "solved_turn": float(first),
            "hacked": float(any(t.hack for t in self.turns)),
            "reward": float("nan") if reward is None else float(reward),
        }

    def state(self) -> dict[str, Any]:
        """Plain data (JSON-able) that `from_state` turns back into the episode."""
        return {"config": asdict(self.config), "turns": [t.to_dict() for t in self.turns]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Episode:
        return cls(
            EpisodeConfig.from_dict(state.get("config")), [Turn.from_dict(t) for t in state.get("turns", [])]
        )


# ---------------------------------------------------------------- scoring a turn


class TurnScorer:
    """(problem, answer) -> Turn, through the same backend as the single-turn reward: in process (a `Scorer`,
    or `kernelrl.rewards.edge.Local` around one: its Ray pool and verdict cache) or over HTTP (a
    `RewardClient` or `edge.Remote` talking to `kernelrl serve`: its ``/turn`` route scores and renders)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def score(self, problem: Any, completion: str) -> Turn:
        if hasattr(self.backend, "request"):  # a server: it scores and renders the feedback
            return Turn.from_dict(self.backend.request("POST", "/turn", _turn_body(problem, completion)))
        [result] = getattr(self.backend, "scorer", self.backend).score([problem], [completion])
        return turn_from_result(completion, result)

    async def ascore(self, problem: Any, completion: str) -> Turn:
        if hasattr(self.backend, "arequest"):
            return Turn.from_dict(
                await self.backend.arequest("POST", "/turn", _turn_body(problem, completion))
            )
        [result] = await getattr(self.backend, "scorer", self.backend).ascore([problem], [completion])
        return turn_from_result(completion, result)


def _turn_body(problem: Any, completion: str) -> dict[str, str]:
    return {"problem": _problem_text(problem), "completion": completion}


def turn_from_result(completion: str, result: Any) -> Turn:
    """A Turn from a composed `RewardResult`: the feedback is rendered from its verdict, with the static checks'
    line numbers for the same completion (computed once and cached by `make_sample`)."""
    from kernelrl.rewards.feedback import render
    from kernelrl.rewards.sample import make_sample

    v = result.verdict
    if v is None:  # a rules-only config: no sandbox run, so nothing to say but the reward
        return Turn(
            result.reward,
            "not_executed",
            "Not run: this reward config runs no sandbox.",
            None,
            result.components,
        )
    details = make_sample(completion).static.details if v.hacks else []
    return Turn(result.reward, v.status, render(v, details=details), v.speedup, dict(result.components))


def default_scorer() -> TurnScorer:
    """Turns scored by the backend `kernelrl.rewards.trl_reward` uses (`configure(...)`, else the environment:
    ``KERNELRL_REWARD_URL`` for a server, otherwise an in-process pool), so single-turn rewards and episodes in one
    process share one pool."""
    from kernelrl.rewards.trl_reward import get_backend

    return TurnScorer(get_backend())


def default_config() -> EpisodeConfig:
    """The ``episode:`` section of ``$KERNELRL_REWARD_CONFIG`` (defaults without one); read once per path."""
    import os

    return _config_at(os.environ.get("KERNELRL_REWARD_CONFIG") or None)


@functools.lru_cache(maxsize=16)
def _config_at(path: str | None) -> EpisodeConfig:
    return EpisodeConfig.from_yaml(path)


def _problem_text(problem: Any) -> str:
    return problem if isinstance(problem, str) else problem.source
