"""The kernel reward as a verl custom reward function (checked against verl 0.9.1's reward loop).

With kernelrl installed in verl's environment, by package; else by path (this file and ``edge.py`` next to
it load with the standard library and httpx, no kernelrl, no torch)::

    reward.custom_reward_function.path=pkg://kernelrl.rewards.verl_reward      # or /path/to/verl_reward.py
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://reward-host:8000   # `+`: a key verl's config lacks
    +reward.custom_reward_function.reward_kwargs.token=$KERNELRL_TOKEN

verl's default reward manager (``naive``) calls it once per sample, concurrently; it does not retry.
Rows carry the problem as ``reward_model.ground_truth`` (KernelBench source text or ``bundled:<name>``).
``reward_kwargs``: ``url``, ``token``, ``timeout``, ``retries``, ``backoff``, ``rejudge`` for a
``kernelrl serve`` reward server (``url`` defaults to ``KERNELRL_REWARD_URL``); with no URL, in-process
scoring when kernelrl is installed (``config``, ``workers``, ``device``, or the ``KERNELRL_*`` environment;
inside verl's Ray reward workers only with ``workers`` set, see `kernelrl.rewards.edge.make_backend`).

**Unjudged samples raise.** verl needs a number for every sample, and 0.0 would teach the model that correct
code is wrong whenever the sandbox or the server failed. So a sample still unjudged after the client's
retries (``infra_error`` is also re-scored ``rejudge`` times with backoff; ``not_executed``, e.g. CUDA
candidates on a server without a GPU, at once) raises, naming the status and the reason, and so does a
server that stays unreachable: verl's step fails. Fix the infrastructure and resume from the last checkpoint.

**The dict** (`kernelrl.rewards.edge.metrics`, the same one ``POST /compute_score`` answers): the same keys for
every sample, all numbers: ``score`` (what verl trains on), ``acc``, ``correct``, ``compiled``, ``hack``,
``fast_1``, then one per reward component (0.0 where it does not apply).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

_EDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "edge.py")


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The reward of one response to the problem ``ground_truth``: the fixed numeric keys and one per
    component. ``kwargs`` are verl's ``reward_kwargs`` (others it passes are ignored)."""
    edge = _edge()
    [result] = edge.judged([str(ground_truth)], [str(solution_str)], **kwargs)
    return edge.verl_score(result)


def _edge() -> Any:
    """kernelrl's reward edge: the installed ``kernelrl.rewards.edge`` when this file belongs to that
    installation, else the ``edge.py`` next to this file (a trainer environment without kernelrl). Looked
    up in sys.modules on each call rather than kept in a global, so this file's functions also pickle by
    value into another process of the same machine (verl's ``remote`` reward manager)."""
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
