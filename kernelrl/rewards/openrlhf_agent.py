"""Multi-turn kernel refinement for OpenRLHF (>= 0.11): an agent file, loaded by path::

    python -m openrlhf.cli.train_ppo_ray --train.agent_func_path /path/to/kernelrl/rewards/openrlhf_agent.py \\
        --data.label_key problem ...

OpenRLHF's `MultiTurnAgentExecutor` makes one `AgentInstance` per prompt, calls `reset` with the prompt and its
label (the problem: KernelBench source text or ``bundled:<name>``), then alternates: the model answers, `step`
scores the answer in the sandbox and returns the feedback as the next user turn (rendered with the model's own
chat template), until the episode is over (`kernelrl.rewards.episode`: turn limit, stop rule).

OpenRLHF adds up the per-step ``rewards``, so each step returns the change of the episode reward: the sum is the
episode reward (discounted or best-of, with the hack floor) after any number of steps, even when OpenRLHF stops
the loop early for length. ``scores`` is 1.0 once the problem is solved (for ``--algo.dynamic_filtering``).

Scores come from ``KERNELRL_REWARD_URL`` (a `kernelrl serve`, recommended: OpenRLHF runs agents inside its vLLM
actors) or an in-process pool; the episode settings from the ``episode:`` section of ``KERNELRL_REWARD_CONFIG``.
A turn the sandbox could not judge raises, as `kernelrl.rewards.openrlhf_reward` does: OpenRLHF needs a number
and 0.0 would teach the model that its code is wrong.
"""

from __future__ import annotations

import contextvars
from typing import Any

import torch
from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from kernelrl.rewards.episode import Episode, default_config, default_scorer

# The tokenizer of the running `execute` call, so the feedback turn uses the model's own chat template.
_tokenizer: contextvars.ContextVar[Any] = contextvars.ContextVar("kernelrl_tokenizer", default=None)


class AgentInstance(AgentInstanceBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.episode = Episode(default_config())
        self.problem: str | None = None
        self.scorer = None

    async def reset(self, states: dict, **kwargs: Any) -> dict:
        label = states.get("label")
        if not label:
            raise ValueError(
                "kernelrl needs the problem as each prompt's label: pass --data.label_key (older: --label_key) "
                "naming the dataset column with KernelBench source text or 'bundled:<name>'"
            )
        self.problem = label
        self.episode = Episode(self.episode.config)
        return {"observation": states["observation"]}

    async def step(self, states: dict, **kwargs: Any) -> dict:
        before = self.episode.reward or 0.0
        if self.scorer is None:
            self.scorer = default_scorer()
        turn = await self.scorer.ascore(self.problem, states["action_text"])
        observation = self.episode.add(turn)
        if self.episode.reward is None:
            raise RuntimeError(
                f"the sandbox could not judge turn {len(self.episode.turns)} ({turn.status}); "
                "fix the infrastructure and resume rather than train on a made-up reward"
            )
        done = self.episode.done
        summary = self.episode.summary()
        return {
            "rewards": torch.tensor(self.episode.reward - before),
            "scores": torch.tensor(summary["solved"]),
            "environment_feedback": "" if done else user_turn(observation, _tokenizer.get()),
            "done": done,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": {k: torch.tensor(v) for k, v in summary.items()},
        }


class AgentExecutor(MultiTurnAgentExecutor):
    """What OpenRLHF loads from ``--train.agent_func_path``."""

    def __init__(self) -> None:
        super().__init__(AgentInstance)

    async def execute(
        self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None
    ):
        token = _tokenizer.set(hf_tokenizer)
        try:
            return await super().execute(
                prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images
            )
        finally:
            _tokenizer.reset(token)


def user_turn(text: str, tokenizer: Any = None) -> str:
    """``text`` as the next user turn after an assistant answer that ended with the EOS token, followed by the
    assistant header, in the tokenizer's chat template (a plain ``User:``/``Assistant:`` frame without one).

    Rendered as TRL renders tool results: the template applied to a conversation with and without the new turn,
    the difference taken after the assistant's end-of-turn token (which the generated answer already holds)."""
    template = getattr(tokenizer, "chat_template", None)
    eos = getattr(tokenizer, "eos_token", None)
    if template and eos:
        base = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
        try:
            before = tokenizer.apply_chat_template(base, tokenize=False)
            after = tokenizer.apply_chat_template(
                [*base, {"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        except Exception:  # a template that cannot render this: the plain frame below
            after = before = ""
        cut = before.rfind(eos)
        if cut >= 0 and after.startswith(before[: cut + len(eos)]):
            return after[cut + len(eos) :]
    return f"\n\nUser: {text}\n\nAssistant: "
