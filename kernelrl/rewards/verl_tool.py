"""Multi-turn kernel refinement for verl (>= 0.9): a tool for its `ToolAgentLoop`, and the episode's reward.

Tool config (``actor_rollout_ref.rollout.multi_turn.tool_config_path``)::

    tools:
      - class_name: kernelrl.rewards.verl_tool.KernelTool
        config: {type: native}          # optional: url, token (a `kernelrl serve`), episode: {max_turns: ...}

and the reward (``reward.custom_reward_function.path=.../kernelrl/rewards/verl_tool.py``, ``name=compute_score``).
Rows carry the problem for the tool (``extra_info.tools_kwargs.submit_kernel.create_kwargs.problem``) and for the
reward (``reward_model.ground_truth``): KernelBench source text or ``bundled:<name>``.

verl's ToolAgentLoop creates, executes and releases a tool instance for every call, and hands the loop's
`AgentData` to `execute`; the episode (`kernelrl.rewards.episode`) therefore lives in ``agent_data.extra_fields``
as plain data, which verl passes on to the reward function as ``extra_info["kernelrl_episode"]``. `compute_score`
returns the episode reward from it (discounted or best-of, with the hack floor), or scores the final answer as a
one-turn episode when the model never called the tool. Each `execute` returns the change of the episode reward as
its step reward. Scores come from ``url`` in the tool config (or ``KERNELRL_REWARD_URL``), else an in-process
pool; the episode settings from the tool config's ``episode`` or the ``episode:`` section of
``KERNELRL_REWARD_CONFIG``. A turn the sandbox could not judge raises in `compute_score`, never a 0.0.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from kernelrl.rewards.episode import Episode, EpisodeConfig, TurnScorer, default_config, default_scorer

STATE_KEY = "kernelrl_episode"
SCHEMA = {
    "type": "function",
    "function": {
        "name": "submit_kernel",
        "description": "Run a kernel answer in the sandbox and get its feedback (compiler error, failing check, "
        "detected hacks, or speed). Each answer is judged on its own: submit the whole answer every time.",
        "parameters": {
            "type": "object",
            "properties": {
                "answer": {
                    "type": "string",
                    "description": "Brief reasoning, then one python code block defining class ModelNew.",
                }
            },
            "required": ["answer"],
        },
    },
}


class KernelTool(BaseTool):
    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None = None) -> None:
        super().__init__(config, tool_schema or OpenAIFunctionToolSchema.model_validate(SCHEMA))
        episode = config.get("episode")
        self.episode_config = EpisodeConfig.from_dict(episode) if episode else default_config()
        self.scorer = _scorer(config.get("url"), config.get("token"))
        self._problems: dict[str, str] = {}
        self._states: dict[str, dict] = {}  # only for callers that pass no agent_data

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        instance_id = instance_id or uuid4().hex
        create_kwargs = kwargs.get("create_kwargs") or kwargs
        problem = create_kwargs.get("problem")
        if problem:
            self._problems[instance_id] = problem
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        problem = self._problems.get(instance_id)
        if not problem:
            return (
                ToolResponse(
                    text="No problem was given to this episode (tools_kwargs create_kwargs.problem)."
                ),
                0.0,
                {},
            )
        answer = parameters.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            return (
                ToolResponse(text="submit_kernel needs `answer`: reasoning, then one python block."),
                0.0,
                {},
            )
        store = self._store(instance_id, kwargs.get("agent_data"))
        episode = Episode.from_state(store[STATE_KEY]) if STATE_KEY in store else Episode(self.episode_config)
        if episode.done:
            return ToolResponse(text="The episode is over; this answer was not scored."), 0.0, {}
        before = episode.reward or 0.0
        turn = await self.scorer.ascore(problem, answer)
        observation = episode.add(turn)
        store[STATE_KEY] = episode.state()
        step = episode.reward - before if episode.reward is not None else 0.0
        return ToolResponse(text=observation), step, {"status": turn.status, **episode.summary()}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        store = self._store(instance_id, kwargs.get("agent_data"))
        reward = Episode.from_state(store[STATE_KEY]).reward if STATE_KEY in store else None
        return 0.0 if reward is None else reward

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._problems.pop(instance_id, None)
        self._states.pop(instance_id, None)

    def _store(self, instance_id: str, agent_data: Any) -> dict:
        """Where the episode lives: the trajectory's ``extra_fields`` (verl passes them to the reward), else a
        per-instance dict."""
        if agent_data is not None:
            return agent_data.extra_fields
        return self._states.setdefault(instance_id, {})


def compute_score(
    data_source: Any, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs: Any
) -> dict[str, float]:
    """The episode reward for verl's reward loop: ``score`` plus ``acc`` (solved), ``turns``, ``solved_turn`` (0 =
    never) and ``hacked``, the same keys every time. ``kwargs`` (verl's ``reward_kwargs``): ``url``, ``token``."""
    state = (extra_info or {}).get(STATE_KEY)
    if state:
        episode = Episode.from_state(state)
    else:  # no tool call: the final answer is a one-turn episode
        episode = Episode(EpisodeConfig(max_turns=1))
        episode.add(_scorer(kwargs.get("url"), kwargs.get("token")).score(ground_truth, solution_str))
    reward = episode.reward
    if reward is None:
        statuses = [t.status for t in episode.turns]
        raise RuntimeError(
            f"the sandbox could not judge this episode (turn statuses {statuses}); not scoring 0.0"
        )
    s = episode.summary()
    return {
        "score": reward,
        "acc": s["solved"],
        "turns": s["turns"],
        "solved_turn": s["solved_turn"],
        "hacked": s["hacked"],
    }


def _scorer(url: str | None, token: str | None) -> TurnScorer:
    if url:
        from kernelrl.rewards.client import RewardClient

        return TurnScorer(RewardClient(url, token))
    return default_scorer()
