"""Trainer adapters, called the way each trainer calls them: TRL's reward function (and 2 real GRPOTrainer
steps on a tiny random model), verl's compute_score file and OpenRLHF's reward_func file (both loaded by
path), in-process and against a live `kernelrl serve`. CPU only: one 2-worker sandbox pool for the module."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import pickle
import socket
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest
import ray

from kernelrl.rewards import trl_reward
from kernelrl.rewards.compose import RewardConfig, Scorer
from kernelrl.sandbox import Verdict, bundled_problems

ROOT = Path(__file__).resolve().parents[1]
VERL_FILE = ROOT / "kernelrl" / "rewards" / "verl_reward.py"
OPENRLHF_FILE = ROOT / "kernelrl" / "rewards" / "openrlhf_reward.py"
RELU = bundled_problems()["relu"]
SOLUTION = f"A Triton kernel, one program per block.\n```python\n{RELU.extras['solution']}```\n"
WRONG = RELU.extras["wrong"]  # a bare file: no fence, still a candidate
HACK = """```python
import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
```"""
COMPLETIONS = [SOLUTION, WRONG, HACK]
PROBLEMS = ["bundled:relu"] * 3
STATUSES = ["ok", "mismatch", "hack_detected"]


@pytest.fixture(scope="module")
def server():
    """A `kernelrl serve` started first (its start-up overlaps the other tests); `.url()` waits for it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_ADDRESS": "local"}  # its own Ray, not the test's (whose CPUs the pool holds)
    env.pop("KERNELRL_TOKEN", None)
    cmd = [sys.executable, "-m", "kernelrl.cli", "serve", "--port", str(port), "--workers", "1"]
    cmd += ["--device", "cpu", "--drain-timeout", "5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle = _Server(proc, f"http://127.0.0.1:{port}")
    yield handle
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Server:
    def __init__(self, proc: subprocess.Popen, base: str) -> None:
        self.proc, self.base = proc, base

    def url(self, timeout_s: float = 180.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kernelrl serve exited {self.proc.returncode}: {self.proc.stderr.read()}"
                )
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self.base
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("kernelrl serve did not come up")


@pytest.fixture(scope="module", autouse=True)
def scorer(server):
    """The in-process Scorer every adapter falls back to; Ray goes down with the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KERNELRL_REWARD_URL", raising=False)
        s = Scorer(RewardConfig(), num_workers=2, device="cpu", run_timeout_s=60)
        trl_reward.configure(scorer=s)
        yield s
        trl_reward.reset()
        s.close()
        ray.shutdown()


class _Capture:
    """TRL's log_metric / log_extra, recording what they receive."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list) -> None:
        self.extra.setdefault(column, []).extend(values)


def _trl_call(prompts: list, completions: list, problems: list | None = None, cap: _Capture | None = None):
    """The kwargs GRPOTrainer._calculate_rewards passes: columns, trainer_state, log_extra, log_metric."""
    cap = cap or _Capture()
    columns = {"problem": problems} if problems is not None else {}
    return asyncio.run(
        trl_reward.kernel_reward(
            prompts=prompts,
            completions=completions,
            completion_ids=[[1, 2]] * len(completions),
            **columns,
            name=["relu"] * len(completions),
            trainer_state=None,
            log_extra=cap.log_extra,
            log_metric=cap.log_metric,
        )
    )


# ------------------------------------------------------------------------------------------------ TRL


def test_kernel_reward_ranks_correct_over_wrong_over_hacked_and_logs():
    cap = _Capture()
    rewards = _trl_call(["Write ModelNew for relu."] * 3, COMPLETIONS, PROBLEMS, cap)
    assert rewards[0] > 0 and rewards[1] < rewards[0] and rewards[2] < rewards[1]
    assert cap.extra["status"] == STATUSES
    assert cap.extra["speedup"] == [None] * 3  # nothing is timed on CPU
    m = {k: v[0] for k, v in cap.metrics.items()}
    assert m["kernelrl/status_ok"] == pytest.approx(1 / 3) and m["kernelrl/status_infra_error"] == 0
    assert m["kernelrl/execution"] == pytest.approx(0.0)  # mean of ok 1, mismatch 0, hack -1
    assert "kernelrl/speed" not in m  # applied nowhere: left out, not logged as 0

    conversational = _trl_call(
        [[{"role": "user", "content": "Write ModelNew for relu."}]] * 3,
        [[{"role": "assistant", "content": c}] for c in COMPLETIONS],
        PROBLEMS,
    )
    assert conversational == rewards


def test_missing_problem_column_says_which_column():
    with pytest.raises(ValueError, match="needs a 'problem' dataset column.*columns \\['name'\\]"):
        _trl_call(["p"], ["c"])


def test_kernel_reward_pickles_by_reference():
    trl_reward.get_backend()  # the backend exists: it is module state, not part of the function
    assert pickle.loads(pickle.dumps(trl_reward.kernel_reward)) is trl_reward.kernel_reward
    assert len(ray.cloudpickle.dumps(trl_reward.kernel_reward)) < 200


def test_completion_text_reads_assistant_turns():
    msgs = [
        {"role": "assistant", "reasoning_content": "think", "content": [{"type": "text", "text": "code"}]},
        {"role": "tool", "content": "ignored"},
    ]
    assert trl_reward.completion_text(msgs) == "think\n\ncode"
    assert trl_reward.completion_text("plain") == "plain"


# ----------------------------------------------------------------------------------------------- verl


def _load_like_verl(reward_kwargs: dict | None = None):
    """verl's get_custom_reward_fn: load the file by path as `custom_module`, bind reward_kwargs."""
    spec = importlib.util.spec_from_file_location("custom_module", VERL_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    spec.loader.exec_module(module)
    raw_fn = module.compute_score
    kwargs = dict(reward_kwargs or {})
    return lambda *a, **kw: raw_fn(*a, **kw, **kwargs)


def _verl_calls(fn, completions: list[str]) -> list[dict]:
    return [
        fn(data_source="kernelbench", solution_str=c, ground_truth="bundled:relu", extra_info={"index": i})
        for i, c in enumerate(completions)
    ]


def test_verl_compute_score_fixed_numeric_keys():
    fn = _load_like_verl()
    # "```<|im_end|>": a chat-template token left on the closing fence must not read as a truncated block
    outs = _verl_calls(fn, [SOLUTION.rstrip() + "<|im_end|>", WRONG, HACK])
    keys = list(outs[0])
    assert keys[:6] == ["score", "acc", "correct", "compiled", "hack", "fast_1"]
    assert all(list(o) == keys for o in outs)
    assert all(isinstance(v, float) and math.isfinite(v) for o in outs for v in o.values())
    assert outs[0]["score"] > outs[1]["score"] > outs[2]["score"]
    assert [o["correct"] for o in outs] == [1.0, 0.0, 0.0] == [o["acc"] for o in outs]
    assert [o["hack"] for o in outs] == [0.0, 0.0, 1.0]
    weights = RewardConfig().weights
    for o in outs[:2]:  # a component that does not apply reports 0.0, exactly what it adds to the score
        assert o["score"] == pytest.approx(sum(w * o[name] for name, w in weights.items()))


def test_verl_batch_manager_form_matches_per_sample():
    spec = importlib.util.spec_from_file_location("custom_module", VERL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    batch = module.compute_score_batch(
        data_sources=["kernelbench"] * 3,
        solution_strs=COMPLETIONS,
        ground_truths=PROBLEMS,
        extra_infos=[None] * 3,
    )
    assert batch == _verl_calls(_load_like_verl(), COMPLETIONS)


class _FailingPool:
    """A sandbox pool whose every verdict is `status` (what an outage or a CPU-only server looks like)."""

    def __init__(self, status: str) -> None:
        self.status, self.calls = status, 0

    def submit_many(self, problems, completions):
        self.calls += 1
        futures = []
        for p in problems:
            f: Future = Future()
            f.set_result(Verdict(self.status, error="worker lost", problem_id=p.id))
            futures.append(f)
        return futures


@pytest.mark.parametrize(("status", "calls"), [("infra_error", 3), ("not_executed", 1)])
def test_unjudged_is_none_for_trl_and_raises_for_verl_and_openrlhf(scorer, status, calls):
    pool = _FailingPool(status)
    trl_reward.configure(scorer=Scorer(RewardConfig(), pool=pool))
    try:
        assert _trl_call(["p"], [SOLUTION], ["bundled:relu"]) == [None]
        pool.calls = 0
        with pytest.raises(RuntimeError, match=f"could not judge 1 of 1 samples.*{status}: worker lost"):
            _verl_calls(_load_like_verl({"backoff": 0}), [SOLUTION])
        assert pool.calls == calls  # infra_error is re-scored (rejudge=2); not_executed never will be
        with pytest.raises(RuntimeError, match=status):
            _load_like_openrlhf()([f"p{SOLUTION}"], ["p"], ["bundled:relu"])
    finally:
        trl_reward.configure(scorer=scorer)


# ------------------------------------------------------------------------------------------- OpenRLHF


def _load_like_openrlhf():
    """OpenRLHF's --remote_rm_url /path/to/file.py: load by path as `reward_func` (not in sys.modules)."""
    spec = importlib.util.spec_from_file_location("reward_func", OPENRLHF_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


PROMPT = (
    "<|user|>Write ModelNew for this Model. Answer like:\n```python\nclass ModelNew(nn.Module):\n"
    "    def forward(self, x):\n        return x\n```<eos><|assistant|>"
)


def test_openrlhf_reward_func_tensors():
    import torch

    fn = _load_like_openrlhf()
    out = fn([PROMPT + SOLUTION + "<eos>", PROMPT + WRONG], [PROMPT, PROMPT], ["bundled:relu"] * 2)
    assert out["rewards"].dtype == torch.float32 and out["rewards"].shape == (2,)
    assert out["rewards"][0] > out["rewards"][1]
    assert out["scores"].tolist() == [1.0, 0.0]
    assert set(out["extra_logs"]) == set(_verl_calls(_load_like_verl(), [WRONG])[0]) - {"score"}
    assert all(t.shape == (2,) for t in out["extra_logs"].values())
    with pytest.raises(ValueError, match="--label_key"):
        fn([PROMPT + SOLUTION], [PROMPT], None)


# ---------------------------------------------------------------------------------- GRPOTrainer (TRL)


def test_grpo_trainer_two_steps_with_kernel_reward(tmp_path, tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [
        {"prompt": [{"role": "user", "content": f"Write ModelNew for {n}."}], "problem": f"bundled:{n}"}
        for n in ("relu", "gelu")
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=16,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[trl_reward.kernel_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [h for h in trainer.state.log_history if "rewards/kernel_reward/mean" in h]
    assert len(logged) == 2
    for h in logged:  # junk completions (format errors) still went through the whole reward path
        assert {"kernelrl/format", "kernelrl/execution", "kernelrl/status_ok"} <= set(h)
        assert sum(v for k, v in h.items() if k.startswith("kernelrl/status_")) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ remote (kernelrl serve)


def test_remote_mode_matches_in_process(server, monkeypatch):
    url = server.url()
    local = _verl_calls(_load_like_verl(), [SOLUTION, WRONG])
    remote = _verl_calls(_load_like_verl({"url": url}), [SOLUTION, WRONG])
    assert [list(o) for o in remote] == [list(o) for o in local]
    assert [o["score"] for o in remote] == pytest.approx([o["score"] for o in local])

    monkeypatch.setenv("KERNELRL_REWARD_URL", url)  # OpenRLHF's file reads the server from the environment
    out = _load_like_openrlhf()([PROMPT + SOLUTION, PROMPT + WRONG], [PROMPT] * 2, ["bundled:relu"] * 2)
    assert out["rewards"].tolist() == pytest.approx([o["score"] for o in local])

    scorer = trl_reward.get_backend()
    trl_reward.configure(url=url)
    try:
        cap = _Capture()
        rewards = _trl_call(["p"] * 2, [SOLUTION, WRONG], ["bundled:relu"] * 2, cap)
        assert rewards == pytest.approx([o["score"] for o in local])
        assert cap.extra["status"] == ["ok", "mismatch"]
    finally:
        trl_reward.configure(scorer=scorer)


def test_unreachable_server_raises_instead_of_scoring_zero():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    fn = _load_like_verl({"url": f"http://127.0.0.1:{port}", "retries": 1, "backoff": 0.01, "timeout": 5})
    with pytest.raises(RuntimeError):
        _verl_calls(fn, [SOLUTION])
