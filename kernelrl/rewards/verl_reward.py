"""The kernel reward as a verl custom reward function, loaded by path::

    reward.custom_reward_function.path=/path/to/kernelrl/rewards/verl_reward.py
    reward.custom_reward_function.name=compute_score            # or compute_score_batch with
    reward.custom_reward_function.reward_kwargs.url=http://host:8000   # reward_manager=batch

Rows carry the problem as ``reward_model.ground_truth`` (KernelBench source text or ``bundled:<name>``).
Scoring goes to a `kernelrl serve` reward server (``url`` in ``reward_kwargs``, else ``KERNELRL_REWARD_URL``)
through `RewardClient`, which retries with backoff, since verl does not retry. With no URL it falls back to an
in-process Scorer (Ray sandbox pool; ``config``, ``workers``, ``device`` in ``reward_kwargs`` or the
``KERNELRL_*`` environment, see `kernelrl.rewards.trl_reward`).

**Unjudged samples raise.** verl needs a number for every sample, and 0.0 would teach the model that correct
code is wrong whenever the sandbox or the server failed. So a sample still unjudged after retries
(``infra_error`` re-scored ``rejudge`` times with backoff; ``not_executed``, e.g. CUDA candidates on a server
without a GPU, at once) raises RuntimeError naming the status and the reason, and so does a server that stays
unreachable. Fix the infrastructure and resume from the last checkpoint.

**The dict.** Every sample returns the same keys, all numbers, since verl stacks and averages them:

- ``score``: the composed reward (what verl trains on).
- ``acc`` and ``correct``: 1.0 when the verdict is ``ok`` (``acc`` is the name verl's validation reports as
  its core metric). ``compiled``: 1.0 when the candidate compiled. ``hack``: 1.0 for a detected hack.
- ``fast_1``: 1.0 when correct and timed faster than the reference; its mean is KernelBench's fast_1 (0 on
  CPU, where nothing is timed).
- one key per reward component of the config in use (the server's, in remote mode): its value, or **0.0 where
  the component does not apply** (``speed`` of an incorrect or untimed sample, ``concise`` of an incorrect
  one). 0.0 is chosen because a component that does not apply contributes exactly 0 to ``score``, so
  ``score == sum(weight * value)`` holds over the reported values (a hack's score is instead the floor,
  minus the sum of the weights), and because NaN would turn verl's batch means into NaN. Read a component's
  batch mean as its average contribution per sample, not its mean where it applies (TRL's
  ``kernelrl/<component>`` metrics are the latter). A component named like a fixed key is reported as
  ``component_<name>``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from kernelrl.rewards.compose import RewardResult, Scorer, load_config
from kernelrl.rewards.trl_reward import get_backend

FIXED_KEYS = ("score", "acc", "correct", "compiled", "hack", "fast_1")
NOT_APPLICABLE = 0.0  # reported for a component that does not apply (see the module docstring)
# Chat-template tokens a trainer may leave at the end of a decoded response ("```<|im_end|>" would read as an
# unclosed fence, i.e. a truncated answer).

_lock = threading.Lock()
_backends: dict[tuple, Any] = {}


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The reward of one response to the problem ``ground_truth``: a dict with `FIXED_KEYS` and one key per
    component. ``kwargs`` are verl's ``reward_kwargs``: ``url``, ``token``, ``timeout``, ``retries``,
    ``backoff``, ``rejudge`` (remote); ``config``, ``workers``, ``device`` (in-process)."""
    return score_dict(score_judged([ground_truth], [solution_str], **kwargs)[0])


def compute_score_batch(
    data_sources: list[Any],
    solution_strs: list[str],
    ground_truths: list[str],
    extra_infos: list[dict | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """`compute_score` for verl's ``batch`` reward manager: the whole batch in one request, so the sandbox
    pool runs the samples in parallel instead of one after another."""
    return [score_dict(r) for r in score_judged(list(ground_truths), list(solution_strs), **kwargs)]


def score_dict(result: RewardResult) -> dict[str, float]:
    """The fixed-key, numbers-only dict of a judged result (see the module docstring)."""
    if result.reward is None:
        raise RuntimeError(f"kernelrl could not judge this sample: {_reason(result)}")
    v = result.verdict
    correct = float(v is not None and v.status == "ok")
    out = {
        "score": float(result.reward),
        "acc": correct,
        "correct": correct,
        "compiled": float(v is not None and v.compiled),
        "hack": float(v is not None and (v.status == "hack_detected" or bool(v.hacks))),
        "fast_1": float(v is not None and v.status == "ok" and (v.speedup or 0.0) > 1.0),
    }
    for name, value in result.components.items():
        out[f"component_{name}" if name in FIXED_KEYS else name] = NOT_APPLICABLE if value is None else value
    return out


def score_judged(
    problems: list[str],
    completions: list[str],
    *,
    url: str | None = None,
    token: str | None = None,
    timeout: float = 900.0,
    retries: int = 5,
    backoff: float = 1.0,
    rejudge: int = 2,
    config: str | None = None,
    workers: int | None = None,
    device: str | None = None,
    **_: Any,
) -> list[RewardResult]:
    """Score pairs, re-scoring ``infra_error`` samples up to ``rejudge`` times with backoff; raise
    RuntimeError (status and reason of the first) if any sample is still unjudged. Unknown keyword arguments
    (other ``reward_kwargs`` verl may pass) are ignored."""
    backend = _backend(url, token, timeout, retries, backoff, config, workers, device)
    problems = [str(p) for p in problems]
    completions = [str(c) for c in completions]
    results = backend.score(problems, completions)
    for attempt in range(rejudge):
        todo = [i for i, r in enumerate(results) if r.reward is None and _status(r) == "infra_error"]
        if not todo:
            break
        time.sleep(backoff * 2**attempt)
        again = backend.score([problems[i] for i in todo], [completions[i] for i in todo])
        for i, r in zip(todo, again, strict=True):
            results[i] = r
    unjudged = [i for i, r in enumerate(results) if r.reward is None]
    if unjudged:
        i = unjudged[0]
        raise RuntimeError(
            f"kernelrl could not judge {len(unjudged)} of {len(results)} samples (first: #{i}, "
            f"{_reason(results[i])}); refusing to report a score, since an outage must not read as a wrong "
            "answer. Fix the reward infrastructure and resume."
        )
    return results


def _backend(
    url: str | None,
    token: str | None,
    timeout: float,
    retries: int,
    backoff: float,
    config: str | None,
    workers: int | None,
    device: str | None,
) -> Any:
    """One backend per setting per process: verl calls once per sample, from several threads."""
    url = url or os.environ.get("KERNELRL_REWARD_URL") or None
    if url is None and config is None and workers is None and device is None:
        return get_backend()  # the process-wide in-process scorer (or what rewards.trl_reward.configure set)
    key = (url, token, timeout, retries, backoff) if url else ("local", config, workers, device)
    with _lock:
        if key not in _backends:
            if url:
                from kernelrl.rewards.client import RewardClient

                _backends[key] = RewardClient(
                    url=url, token=token, timeout=timeout, retries=retries, backoff=backoff
                )
            else:
                pool_kwargs: dict[str, Any] = {}
                if workers is not None:
                    pool_kwargs["num_workers"] = int(workers)
                if device is not None:
                    pool_kwargs["device"] = device
                config = config or os.environ.get("KERNELRL_REWARD_CONFIG") or None
                _backends[key] = Scorer(load_config(config), **pool_kwargs)
        return _backends[key]


def _status(result: RewardResult) -> str | None:
    return result.verdict.status if result.verdict is not None else None


def _reason(result: RewardResult) -> str:
    v = result.verdict
    if v is None:
        return "no verdict and no component applied"
    return f"{v.status}: {v.error or 'no reason given'}"
