"""The kernel reward as a TRL GRPOTrainer reward function, with no glue code for the user.

    from kernelrl.rewards.trl_reward import kernel_reward
    # ds has `prompt` and `problem` columns
    trainer = GRPOTrainer(model=..., reward_funcs=[kernel_reward], train_dataset=ds)

or ``trl grpo --reward_funcs rewards.trl_reward.kernel_reward ...``. Each completion is scored against the
problem in its row (``problem``: KernelBench source text or ``bundled:<name>``), on its own: a GRPO group may
be split across ranks, and TRL normalises per group after gathering.

Where scores come from, first match wins: `configure(...)` (kernelrl/train/grpo.py calls it from the recipe), else the
environment: ``KERNELRL_REWARD_URL`` (+ ``KERNELRL_TOKEN``) → a `kernelrl serve` reward server (the better
choice with several ranks: one sandbox pool for all); otherwise an in-process `Scorer` whose Ray sandbox pool
starts on first use (``KERNELRL_REWARD_CONFIG`` weights YAML, ``KERNELRL_WORKERS``, ``KERNELRL_DEVICE``).

A sample the sandbox could not judge (``infra_error``, ``not_executed``) gets None, which TRL turns into NaN
and, when every reward function says None for a row, an advantage of 0: an outage never reads as a wrong
answer. Combined with other reward functions, TRL's weighted ``nansum`` counts that NaN as 0 instead. A
reward server still unreachable after the client's retries raises, rather than training on nothing.

The backend is module state created lazily, never captured by `kernel_reward`, so the function pickles by
reference (TRL, accelerate and Ray may all pickle reward functions).
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

from kernelrl.rewards.compose import RewardConfig, RewardResult, Scorer, load_config
from kernelrl.sandbox.verdict import STATUSES

PROBLEM_COLUMN = "problem"
METRIC_PREFIX = "kernelrl/"
# Keys TRL adds to the dataset columns it passes; everything else in kwargs is a column.
_TRL_KEYS = frozenset({"trainer_state", "log_extra", "log_metric", "environments"})

_lock = threading.Lock()
_backend: Any = None  # a Scorer or a rewards.client.RewardClient: both offer score/ascore
_owned = False  # whether we created _backend (and so may close it)


def configure(
    url: str | None = None,
    config: RewardConfig | str | None = None,
    scorer: Scorer | None = None,
    **pool_kwargs: Any,
) -> None:
    """Choose how `kernel_reward` (and the verl/OpenRLHF adapters, when not given a URL) score.

    ``scorer`` is used as given (you keep ownership). Otherwise ``url`` (or ``KERNELRL_REWARD_URL``) selects
    a reward server, whose own weights apply (``config`` and ``pool_kwargs`` are ignored, with a warning for
    a non-default config). Otherwise an in-process Scorer with ``config`` (a RewardConfig or a weights YAML
    path; default ``KERNELRL_REWARD_CONFIG``) and ``pool_kwargs`` for `SandboxPool` (``num_workers``,
    ``device``, ``run_timeout_s``, ...; defaults ``KERNELRL_WORKERS``, ``KERNELRL_DEVICE``); its Ray pool
    starts on first use. A backend this module created earlier is closed.
    """
    global _backend, _owned
    if scorer is not None and url is not None:
        raise ValueError("configure: pass either a scorer or a url, not both")
    if scorer is not None:
        backend, owned = scorer, False
    else:
        backend, owned = _make_backend(url, config, pool_kwargs), True
    with _lock:
        old, old_owned = _backend, _owned
        _backend, _owned = backend, owned
    if old is not None and old_owned and old is not backend:
        _close(old)


def get_backend() -> Any:
    """The configured backend, created from the environment on first use (see the module docstring)."""
    global _backend, _owned
    with _lock:
        if _backend is None:
            _backend, _owned = _make_backend(None, None, {}), True
        return _backend


def reset() -> None:
    """Close the backend this module created and forget it; the next call configures from the environment."""
    global _backend, _owned
    with _lock:
        old, old_owned = _backend, _owned
        _backend, _owned = None, False
    if old is not None and old_owned:
        _close(old)


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
    texts = [completion_text(c) for c in completions]
    results = await get_backend().ascore(list(problems), texts)
    log_results(results, kwargs.get("log_metric"), kwargs.get("log_extra"))
    return [r.reward for r in results]


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


def log_results(results: list[RewardResult], log_metric: Any = None, log_extra: Any = None) -> None:
    """Report a batch through TRL's ``log_metric`` / ``log_extra`` callables (either may be None)."""
    if not results:
        return
    if log_metric is not None:
        for name in results[0].components:
            values = [r.components.get(name) for r in results]
            values = [v for v in values if v is not None]
            if values:  # a component that applied nowhere (speed on CPU) is left out, not logged as 0
                log_metric(f"{METRIC_PREFIX}{name}", sum(values) / len(values))
        verdicts = [r.verdict for r in results if r.verdict is not None]
        if verdicts:  # every status every time, so a step without hacks averages in a 0, not nothing
            for status in STATUSES:
                frac = sum(v.status == status for v in verdicts) / len(verdicts)
                log_metric(f"{METRIC_PREFIX}status_{status}", frac)
            speedups = [v.speedup for v in verdicts if v.status == "ok" and v.speedup and v.speedup > 0]
            if speedups:
                geomean = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
                log_metric(f"{METRIC_PREFIX}speedup_geomean", geomean)
    if log_extra is not None:
        log_extra("status", [r.verdict.status if r.verdict else None for r in results])
        log_extra("speedup", [r.verdict.speedup if r.verdict else None for r in results])


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _make_backend(url: str | None, config: RewardConfig | str | None, pool_kwargs: dict[str, Any]) -> Any:
    url = url or os.environ.get("KERNELRL_REWARD_URL") or None
    if url:
        from kernelrl.rewards.client import RewardClient

        if isinstance(config, str) or (config is not None and config != RewardConfig()):
            import warnings

            warnings.warn(
                "a reward server scores with its own weights; the reward config given here is ignored",
                stacklevel=3,
            )
        return RewardClient(url=url)
    if config is None or isinstance(config, str):
        config = load_config(config or os.environ.get("KERNELRL_REWARD_CONFIG") or None)
    kwargs = dict(pool_kwargs)
    if "num_workers" not in kwargs and os.environ.get("KERNELRL_WORKERS"):
        kwargs["num_workers"] = int(os.environ["KERNELRL_WORKERS"])
    if "device" not in kwargs and os.environ.get("KERNELRL_DEVICE"):
        kwargs["device"] = os.environ["KERNELRL_DEVICE"]
    return Scorer(config, **kwargs)


def _close(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()
