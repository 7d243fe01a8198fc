"""Multi-turn kernel refinement for TRL's GRPOTrainer: an environment whose tool runs an answer in the sandbox.

    from kernelrl.rewards.trl_env import KernelEnv
    trainer = GRPOTrainer(model=..., args=..., train_dataset=ds, environment_factory=KernelEnv)

TRL (>= 1.16, experimental) makes one `KernelEnv` per rollout, calls `reset(**row)` with the dataset row (it
needs a ``problem`` column: KernelBench source text or ``bundled:<name>``), exposes `submit_kernel` to the model
as a tool, appends each tool result (the verdict as feedback, `kernelrl.rewards.feedback`) to the conversation and
lets the model try again, and finally scores the rollout with `get_reward` (the episode reward,
`kernelrl.rewards.episode`). The chat template must support tool calls (Qwen2.5/3, Llama 3.1, ...).

Scores come from the same backend as `kernelrl.rewards.trl_reward.kernel_reward` (`trl_reward.configure(...)`, or
``KERNELRL_REWARD_URL`` for a `kernelrl serve`, else an in-process pool), and the episode settings from the
``episode:`` section of ``KERNELRL_REWARD_CONFIG`` (e.g. ``recipes/rewards/multiturn.yaml``).
"""

from __future__ import annotations

from typing import Any

from kernelrl.rewards.episode import Episode, EpisodeConfig, TurnScorer, default_config, default_scorer


class KernelEnv:
    """One multi-turn episode per rollout: `submit_kernel` is the model's tool, `get_reward` the episode reward."""

    def __init__(self, config: EpisodeConfig | None = None, scorer: TurnScorer | None = None) -> None:
        self.config = config or default_config()
        self.scorer = scorer
        self.problem: str | None = None
        self.episode = Episode(self.config)

    def reset(self, problem: str | None = None, **row: Any) -> str:
        """Start an episode on the row's problem; the returned text is appended to the user's message."""
        if not problem:
            raise ValueError(
                "KernelEnv needs a 'problem' dataset column (KernelBench source text or 'bundled:<name>'); "
                f"the row has {sorted(row)}"
            )
        self.problem = problem
        self.episode = Episode(self.config)
        return (
            f"\n\nSubmit your answer with the submit_kernel tool. You get the sandbox's feedback and up to "
            f"{self.config.max_turns} attempts."
        )

    def submit_kernel(self, answer: str) -> str:
        """Run a kernel answer in the sandbox and get its feedback.

        Args:
            answer: Brief reasoning, then one python code block defining class ModelNew (the whole answer each time).

        Returns:
            The verdict as short feedback: the compiler error, the failing check, detected hacks, or the speed.
        """
        if self.problem is None:
            raise RuntimeError("submit_kernel before reset: no problem for this episode")
        if self.episode.done:
            return "The episode is over; this answer was not scored."
        return self.episode.add(self._scorer().score(self.problem, answer))

    def get_reward(self) -> float | None:
        """The episode reward (None when a turn could not be judged: TRL then ignores the rollout's reward).
        A rollout that never called the tool is scored as an empty answer (a format error)."""
        if not self.episode.turns:
            return self._scorer().score(self.problem, "").reward if self.problem else None
        return self.episode.reward

    def _scorer(self) -> TurnScorer:
        if self.scorer is None:
            self.scorer = default_scorer()
        return self.scorer
