"""Composing reward components into one reward, and scoring completions against problems.

Components are plain functions ``f(sample) -> float | None`` chosen by name from `REWARDS` (the one flat
dict) or by dotted path (``mypkg.rewards:my_component`` or ``mypkg.rewards.my_component``), weighted by a
YAML file::

    weights:
      execution: 1.0
      speed: 0.5

The reward is the weighted sum of the components that apply (None = not applicable, left out). It is None
when the sandbox could not judge (``infra_error``, ``not_executed``): an outage must never read as a wrong
answer. A detected hack gets the lowest reward the weights allow (minus the sum of the counted weights),
whatever its text scores, so it sits below every honest outcome under any weights. Every result carries its
per-component breakdown and the verdict.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import math
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernelrl.rewards.execution import concise_reward, execution_reward, speed_reward
from kernelrl.rewards.rules import banned_reward, format_reward, kernel_reward
from kernelrl.rewards.sample import Sample, make_sample
from kernelrl.sandbox.problem import Problem, ProblemError, bundled_problems, load_problem
from kernelrl.sandbox.verdict import Verdict

Component = Callable[[Sample], "float | None"]

REWARDS: dict[str, Component] = {
    "format": format_reward,
    "kernel": kernel_reward,
    "banned": banned_reward,
    "execution": execution_reward,
    "speed": speed_reward,
    "concise": concise_reward,
}
# Components that read only the text: when nothing else is weighted, no sandbox run is needed.
RULES = frozenset({"format", "kernel", "banned"})
# Verdicts that mean "the sandbox could not judge this": the reward is None, never a number.
UNJUDGED = frozenset({"infra_error", "not_executed"})


class RewardConfig(BaseModel):
    """Which components make up the reward, and their weights (a weight of 0 is reported, not counted)."""

    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "execution": 1.0,
            "speed": 0.5,
            "format": 0.1,
            "kernel": 0.1,
            "banned": 0.1,
            "concise": 0.0,
        }
    )
    # Multi-turn settings (kernelrl.rewards.episode.EpisodeConfig); read by episodes, ignored by single turns.
    episode: dict[str, Any] | None = None

    @property
    def needs_verdict(self) -> bool:
        return any(name not in RULES and w != 0 for name, w in self.weights.items())


def load_config(path: str | Path | None) -> RewardConfig:
    """A RewardConfig from YAML (None → the defaults); errors name the file and the bad key."""
    if path is None:
        return RewardConfig()
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"reward config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
        config = RewardConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as e:
        raise ValueError(f"bad reward config {p}: {e}") from None
    for name in config.weights:
        resolve_component(name)
    if config.episode is not None:
        from kernelrl.rewards.episode import EpisodeConfig, EpisodeConfigError

        try:
            EpisodeConfig.from_dict(config.episode)
        except (EpisodeConfigError, TypeError) as e:
            raise ValueError(f"bad reward config {p}: {e}") from None
    return config


def resolve_component(name: str) -> Component:
    """A component by name from `REWARDS`, or by dotted path ``module:function`` / ``module.function``."""
    if name in REWARDS:
        return REWARDS[name]
    module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    if not sep or not module or not attr:
        raise ValueError(
            f"unknown reward component {name!r}; choose from {', '.join(REWARDS)} or a dotted path"
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import reward component {name!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"reward component {name!r} is not callable")
    return fn


@dataclass
class RewardResult:
    reward: float | None
    components: dict[str, float | None]
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "components": self.components,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardResult:
        v = data.get("verdict")
        return cls(
            data["reward"],
            dict(data["components"]),
            Verdict.from_dict(v) if v else None,
            list(data.get("notes", [])),
        )


@functools.lru_cache(maxsize=4096)
def problem_from_text(text: str) -> Problem:
    """A problem from what a dataset column or a request carries: KernelBench source text, or
    ``bundled:<name>``. Never a file path: a remote client must not make the server read its files."""
    if text.startswith("bundled:"):
        name = text.split(":", 1)[1].strip()
        bundled = bundled_problems()
        if name not in bundled:
            raise ProblemError(f"no bundled problem {name!r}; choose from {', '.join(bundled)}")
        return bundled[name]
    if "\n" not in text:
        raise ProblemError(
            "a problem must be KernelBench source text or 'bundled:<name>' (paths are not read)"
        )
    return load_problem(text)


def resolve_problems(problems: list[str | Problem]) -> list[Problem]:
    """Problems from texts; the error names the first bad index."""
    out = []
    for i, p in enumerate(problems):
        if isinstance(p, Problem):
            out.append(p)
            continue
        if not isinstance(p, str):
            raise ProblemError(f"problems[{i}]: expected source text, got {type(p).__name__}")
        try:
            out.append(problem_from_text(p))
        except ProblemError as e:
            raise ProblemError(f"problems[{i}]: {e}") from None
    return out


class Scorer:
    """Rewards for (problem, completion) pairs: rule components in-process, verdicts from a SandboxPool.

    The pool is created on first need (``pool_kwargs`` go to `SandboxPool`), so a rules-only config never
    starts Ray. `score` blocks; `ascore` lets many coroutines (a server's requests, TRL's async reward
    functions) share the pool.
    """

    def __init__(self, config: RewardConfig | None = None, pool: Any = None, **pool_kwargs: Any) -> None:
        self.config = config or RewardConfig()
        self.components = {name: resolve_component(name) for name in self.config.weights}
        self._pool = pool
        self._pool_kwargs = pool_kwargs

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from kernelrl.sandbox.pool import SandboxPool

            self._pool = SandboxPool(**self._pool_kwargs)
        return self._pool

    def submit(self, problems: list[str | Problem], completions: list[str]) -> list[Future | None]:
        """Verdict futures (None where no sandbox run is needed); raises ProblemError naming a bad index."""
        if len(problems) != len(completions):
            raise ValueError(
                f"{len(problems)} problems but {len(completions)} completions: pairs must line up"
            )
        resolved = resolve_problems(problems)
        if not self.config.needs_verdict or not resolved:
            return [None] * len(resolved)
        return self.pool.submit_many(resolved, completions)

    def score(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        futures = self.submit(problems, completions)
        return [self.result(c, f.result() if f else None) for c, f in zip(completions, futures, strict=True)]

    async def ascore(self, problems: list[str | Problem], completions: list[str]) -> list[RewardResult]:
        futures = self.submit(problems, completions)
        verdicts = await asyncio.gather(*(_wrap(f) for f in futures))
        return [self.result(c, v) for c, v in zip(completions, verdicts, strict=True)]

    def result(self, completion: str, verdict: Verdict | None) -> RewardResult:
        """Compose the reward of one completion from its verdict (pure: no sandbox call)."""
        sample = make_sample(completion, verdict)
        components: dict[str, float | None] = {}
        notes = []
        for name, fn in self.components.items():
            try:
                value = fn(sample)
                value = None if value is None else float(value)
                if value is not None and not math.isfinite(value):
                    raise ValueError(f"returned {value}")  # one NaN would poison a whole group's advantages
            except Exception as e:  # a user component's bug must not take the batch down
                value = None
                notes.append(f"component {name} failed: {type(e).__name__}: {e}")
            components[name] = value
        counted = [(self.config.weights[n], v) for n, v in components.items() if v is not None]
        if (verdict is not None and verdict.status in UNJUDGED) or not counted:
            reward = None
        elif verdict is not None and verdict.status == "hack_detected":
            reward = -sum(abs(w) for w, _ in counted)  # the floor: no text shaping lifts a hack
        else:
            reward = sum(w * v for w, v in counted)
        return RewardResult(reward, components, verdict, notes)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


async def _wrap(f: Future | None) -> Verdict | None:
    return None if f is None else await asyncio.wrap_future(f)
