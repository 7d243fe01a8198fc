"""The kernel reward for OpenRLHF as a reward file (checked against OpenRLHF 0.11.2), loaded by path::

    --reward.remote_url /path/to/openrlhf_reward.py --data.label_key problem

(or point ``--reward.remote_url`` at a ``kernelrl serve`` server's ``/get_reward`` route and skip this file).
This file and ``edge.py`` next to it load with the standard library and httpx: no kernelrl, no torch.
OpenRLHF's ``SingleTurnAgentExecutor`` calls `reward_func` for one sample at a time, in a thread of each
vLLM rollout actor. Scores go to the reward server at ``KERNELRL_REWARD_URL`` (+ ``KERNELRL_TOKEN``); without
one, in-process scoring where kernelrl is installed, inside those Ray actors only when ``KERNELRL_WORKERS``
is set (see `kernelrl.rewards.edge.make_backend`).

Labels are the problems (KernelBench source text or ``bundled:<name>``); a query is prompt + response, and the
response is what follows the prompt. Returns what the ``/get_reward`` route returns
(`kernelrl.rewards.edge.openrlhf_answer`): ``rewards``, ``scores`` (1.0 when correct: what
``--algo.dynamic_filtering_range 0 1`` reads to drop groups that all pass or all fail) and ``extra_logs``.

A sample that cannot be judged raises (an outage must not read as a wrong answer). OpenRLHF logs that at
INFO and leaves the sample's reward None, and its step then fails: watch for
``[SingleTurnExecutor] Failed to fetch reward`` in its logs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

_EDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "edge.py")


def reward_func(queries: list[str], prompts: list[str], labels: list[str] | None, **kwargs: Any) -> dict:
    """Rewards, scores and extra logs for a batch of (query, prompt, label) triples."""
    edge = _edge()
    if labels is None or any(not label for label in labels):
        raise ValueError(
            "kernelrl needs the problem of every sample as its label (OpenRLHF passes '' without one): pass "
            "--data.label_key naming the dataset column with KernelBench source text or 'bundled:<name>'"
        )
    responses = []
    for i, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        try:
            responses.append(edge.response_of(query, prompt))
        except ValueError as e:
            raise ValueError(f"query {i} {e}") from None
    return edge.openrlhf_answer(edge.judged(list(labels), responses))


def _edge() -> Any:
    """kernelrl's reward edge: the installed ``kernelrl.rewards.edge`` when this file belongs to that
    installation, else the ``edge.py`` next to this file (a trainer environment without kernelrl)."""
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
