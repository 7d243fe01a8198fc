"""The kernel reward for OpenRLHF, loaded by path::

    --reward.remote_url /path/to/kernelrl/rewards/openrlhf_reward.py --data.label_key problem
    (older releases: --remote_rm_url ... --label_key problem)

(or point the flag at a `kernelrl serve` server's ``/get_reward`` route and skip this file). Labels are the
problems (KernelBench source text or ``bundled:<name>``); a query is prompt + response, and the response is
what follows the prompt. Scores go to the reward server at ``KERNELRL_REWARD_URL`` when set (recommended:
OpenRLHF calls this from many threads or Ray tasks, and a server keeps one sandbox pool for all of them),
else to an in-process Scorer (see `kernelrl.rewards.trl_reward`).

Returns ``rewards`` (the composed reward), ``scores`` (1.0 when correct, else 0.0: what OpenRLHF's dynamic
filtering reads, so a range of 0 1 drops groups that all pass or all fail) and ``extra_logs`` with the keys
of `kernelrl.rewards.verl_reward.score_dict` (0.0 where a component does not apply). As with verl, a sample that
cannot be judged raises RuntimeError instead of reading as a wrong answer.
"""

from __future__ import annotations

from typing import Any

import torch

from kernelrl.rewards.verl_reward import score_dict, score_judged


def reward_func(queries: list[str], prompts: list[str], labels: list[str] | None, **kwargs: Any) -> dict:
    """Rewards, scores and extra logs for a batch of (query, prompt, label) triples."""
    if labels is None or any(label is None for label in labels):
        raise ValueError(
            "kernelrl needs the problem of every sample as its label: pass --data.label_key "
            "(older: --label_key) naming the dataset column with KernelBench source text or 'bundled:<name>'"
        )
    responses = [_response(q, p) for q, p in zip(queries, prompts, strict=True)]
    dicts = [score_dict(r) for r in score_judged(list(labels), responses)]
    keys = list(dicts[0]) if dicts else []
    return {
        "rewards": torch.tensor([d["score"] for d in dicts], dtype=torch.float32),
        "scores": torch.tensor([d["correct"] for d in dicts], dtype=torch.float32),
        "extra_logs": {
            k: torch.tensor([d[k] for d in dicts], dtype=torch.float32) for k in keys if k != "score"
        },
    }


def _response(query: str, prompt: str) -> str:
    """What follows the prompt in ``query``. Never the whole query: the prompt's example code would be judged
    in place of a response that has none."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    for p in (prompt, prompt.strip()):  # a BOS token the prompt string does not carry
        at = query.find(p) if p else -1
        if at >= 0:
            return query[at + len(p) :]
    raise ValueError("a query does not contain its prompt: cannot tell the response apart")
