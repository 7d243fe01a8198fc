"""The kernel reward as a TRL GRPOTrainer reward function, with no glue code for the user.

    from kernelrl.rewards.trl_reward import kernel_reward
    # ds has `prompt` and `problem` columns
    trainer = GRPOTrainer(model=..., reward_funcs=[kernel_reward], train_dataset=ds)

or ``trl grpo --reward_funcs kernelrl.rewards.trl_reward.kernel_reward ...``. Each completion is scored against
the problem in its row (``problem``: KernelBench source text or ``bundled:<name>``), on its own: a GRPO group
may be split across ranks, and TRL normalises per group after gathering.

Where scores come from (`kernelrl.rewards.edge.get_backend`), first match wins: `configure(...)`
(kernelrl/train/grpo.py calls it from the recipe), else ``KERNELRL_REWARD_URL`` (+ ``KERNELRL_TOKEN``): a
``kernelrl serve`` reward server (the better choice with several ranks: one sandbox pool for all);
otherwise an in-process `Scorer` whose Ray sandbox pool starts on first use (``KERNELRL_REWARD_CONFIG``
weights YAML, ``KERNELRL_WORKERS``, ``KERNELRL_DEVICE``).

Without kernelrl installed (a trainer environment with other pins) this file still loads by path, next to
``edge.py``, and scores through a reward server (standard library + httpx; no torch import):
``PYTHONPATH=/dir/with/these/files trl grpo --reward_funcs trl_reward.kernel_reward``.

A sample the sandbox could not judge (``infra_error``, ``not_executed``) gets None, which TRL turns into NaN
and, when every reward function says None for a row, an advantage of 0: an outage never reads as a wrong
answer. Combined with other reward functions, TRL's weighted ``nansum`` counts that NaN as 0 instead. A
reward server still unreachable after the client's retries raises, rather than training on nothing.

The backend is module state of ``edge.py``, never captured by `kernel_reward`, so the function pickles by
reference (TRL, accelerate and Ray may all pickle reward functions).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

PROBLEM_COLUMN = "problem"
# Keys TRL adds to the dataset columns it passes; everything else in kwargs is a column.
_TRL_KEYS = frozenset({"trainer_state", "log_extra", "log_metric", "environments"})
_EDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "edge.py")


def configure(url: str | None = None, config: Any = None, scorer: Any = None, **pool_kwargs: Any) -> None:
    """Choose how `kernel_reward` (and the verl/OpenRLHF adapters, when given no settings) score: `scorer`
    (a kernelrl Scorer, used as given: you keep ownership), else a reward server at `url` (or
    ``KERNELRL_REWARD_URL``; its own weights apply), else an in-process Scorer with `config` (a
    RewardConfig or a weights YAML path) and `pool_kwargs` for `SandboxPool` (``num_workers``, ``device``,
    ``run_timeout_s``, ...), its Ray pool started on first use. A backend made here earlier is closed."""
    _edge().configure(url=url, config=config, scorer=scorer, **pool_kwargs)


def get_backend() -> Any:
    """The configured backend (`edge.Remote` or `edge.Local`), made from the environment on first use."""
    return _edge().get_backend()


def reset() -> None:
    """Close the backend made here and forget it; the next call configures from the environment."""
    _edge().reset()


async def kernel_reward(
    prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None = None, **kwargs: Any
) -> list[float | None]:
    """One reward per completion against its row's ``problem``; None where the sandbox could not judge.

    Logs component means (``kernelrl/<component>``), status fractions (``kernelrl/status_<status>``) and the
    geometric-mean speedup of timed correct samples (``kernelrl/speedup_geomean``) with ``log_metric``, and
    per-sample ``status`` and ``speedup`` columns with ``log_extra``, when TRL passes those callables.
    """
    problems = kwargs.get(PROBLEM_COLUMN)
    if problems is None:
        columns = sorted(k for k in kwargs if k not in _TRL_KEYS)
        raise ValueError(
            f"kernel_reward needs a {PROBLEM_COLUMN!r} dataset column (KernelBench source text or "
            f"'bundled:<name>', one per row); the dataset has columns {columns}"
        )
    edge = _edge()
    results = await edge.get_backend().aresults(list(problems), [completion_text(c) for c in completions])
    edge.trl_log(results, kwargs.get("log_metric"), kwargs.get("log_extra"))
    return edge.trl_rewards(results)


def completion_text(completion: Any) -> str:
    """The text to judge: a string as is; for a conversation (list of messages) the assistant turns, with any
    reasoning the chat-template parser split off put back in front (the conciseness term reads it)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    messages = [m for m in completion if m.get("role", "assistant") == "assistant"] or list(completion)
    parts = []
    for m in messages:
        for key in ("reasoning_content", "thinking", "content"):
            text = _content_text(m.get(key))
            if text:
                parts.append(text)
    return "\n\n".join(parts)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _edge() -> Any:
    """kernelrl's reward edge: the installed ``kernelrl.rewards.edge`` when this file belongs to that
    installation, else the ``edge.py`` next to this file (a trainer environment without kernelrl). Looked
    up in sys.modules on each call rather than kept in a global, so this file's functions also pickle by
    value into another process of the same machine (Ray)."""
    edge = sys.modules.get("kernelrl_edge")
    if edge is None:
        try:
            import kernelrl.rewards.edge as edge

            if not os.path.samefile(edge.__file__, _EDGE):
                edge = None
        except ImportError:
            edge = None
        if edge is None:
            spec = importlib.util.spec_from_file_location("kernelrl_edge", _EDGE)
            edge = importlib.util.module_from_spec(spec)
            sys.modules["kernelrl_edge"] = edge
            spec.loader.exec_module(edge)
        sys.modules["kernelrl_edge"] = edge
    return edge
