"""Trainer adapters against the trainers' own code, on CPU (TRL 1.16, verl 0.9.1, OpenRLHF 0.11.2, installed
--no-deps by scripts/install.sh): TRL's reward function and 2 real GRPOTrainer steps; verl's
`load_reward_manager` (which runs `get_custom_reward_fn`) and reward-loop `NaiveRewardManager.run_single` on
a `DataProto`, configured by the README's own overrides; OpenRLHF's `SingleTurnAgentExecutor.execute` with a
stand-in generation engine, through the HTTP route and the reward file. Against a live `kernelrl serve`
(token-protected, started from a directory holding its own train.py and rewards.py) and in-process; what
each trainer sees when the server is down, slow or cannot judge; and the adapter files loaded by path in a
fresh venv that has only httpx. One 2-worker in-process sandbox pool for the module."""

from __future__ import annotations

import ast
import asyncio
import logging
import math
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import ray
import torch
import uvicorn
import yaml

from kernelrl.rewards import edge, trl_reward
from kernelrl.rewards.compose import RewardConfig, Scorer
from kernelrl.rewards.server import create_app
from kernelrl.sandbox import Verdict, bundled_problems
from kernelrl.sandbox.verdict import STATUSES as VERDICT_STATUSES

ROOT = Path(__file__).resolve().parents[1]
REWARDS_DIR = ROOT / "kernelrl" / "rewards"
VERL_FILE = REWARDS_DIR / "verl_reward.py"
OPENRLHF_FILE = REWARDS_DIR / "openrlhf_reward.py"
ADAPTER_FILES = ("edge.py", "trl_reward.py", "verl_reward.py", "openrlhf_reward.py")
TOKEN = "adapters-token"
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
SLOW = "import time\ntime.sleep({s})\n"  # slows a candidate's import (its compile phase)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A training project with its own train.py and rewards.py, which nothing of kernelrl may import."""
    d = tmp_path_factory.mktemp("project")
    for name in ("train", "rewards"):
        (d / f"{name}.py").write_text(f"raise SystemExit('the project\\'s own {name}.py was imported')\n")
    return d


@pytest.fixture(scope="module")
def server(user_dir):
    """`kernelrl serve` with a token, run from the project directory; `.url()` waits for it."""
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": "local", "KERNELRL_TOKEN": TOKEN}  # its own Ray, not the test's
    cmd = [sys.executable, "-m", "kernelrl.cli", "serve", "--port", str(port), "--workers", "1"]
    cmd += ["--device", "cpu", "--drain-timeout", "5"]
    proc = subprocess.Popen(
        cmd, cwd=user_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@contextmanager
def _remote_by_default(url: str):
    """The process-wide backend made from the environment (KERNELRL_REWARD_URL + KERNELRL_TOKEN), as in a
    trainer's process that never calls configure(); the module's scorer again afterwards."""
    scorer = trl_reward.get_backend()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELRL_REWARD_URL", url)
        mp.setenv("KERNELRL_TOKEN", TOKEN)
        trl_reward.reset()  # the module's scorer was given, not made here: it stays open
        try:
            yield
        finally:
            trl_reward.reset()
            trl_reward.configure(scorer=scorer)


class _Live:
    """A second app over the module's pool (uvicorn in a thread), for settings `kernelrl serve` is not run
    with here (a 1 s deadline)."""

    def __init__(self, app) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def _readme_commands(section: str, program: str) -> list[str]:
    """The README's shell commands of `section` that run `program` (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if program in line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    assert commands, f"no {program} command in the README's {section} section"
    return commands


# ------------------------------------------------------------------------------------------------ TRL


class _Capture:
    """TRL's log_metric / log_extra, recording what they receive."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list) -> None:
        self.extra.setdefault(column, []).extend(values)


def _trl_call(prompts, completions, problems=None, cap=None, fn=None):
    """The kwargs GRPOTrainer._calculate_rewards passes: columns, trainer_state, log_extra, log_metric."""
    cap = cap or _Capture()
    columns = {"problem": problems} if problems is not None else {}
    return asyncio.run(
        (fn or trl_reward.kernel_reward)(
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


def test_edge_statuses_match_the_verdict_contract():
    """edge.py repeats the statuses so it needs no kernelrl; they must not drift."""
    assert edge.STATUSES == VERDICT_STATUSES


# ----------------------------------------------------------------------------------------------- verl


def _verl_config(overrides: list[str]):
    """verl 0.9.1's own default config with command-line overrides applied the way Hydra does: struct mode,
    so a key verl's config lacks needs a leading `+`."""
    import verl
    from omegaconf import OmegaConf, open_dict

    cfg = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    OmegaConf.set_struct(cfg, True)
    for override in overrides:
        key, _, value = override.partition("=")
        if key.startswith("+"):
            with open_dict(cfg):
                OmegaConf.update(cfg, key[1:], yaml.safe_load(value), merge=True)
        else:
            OmegaConf.update(cfg, key, yaml.safe_load(value), merge=True)
    return cfg


def _readme_verl_overrides(url: str) -> list[str]:
    [command] = [c for c in _readme_commands("Trainer adapters", "verl.trainer.main_ppo")]
    overrides = [t for t in command.split() if "=" in t]
    return [o.replace("http://reward-host:8000", url).replace("$KERNELRL_TOKEN", TOKEN) for o in overrides]


def _verl_batch(tok, completions: list[str], problems: list[str]):
    """A DataProto as verl's rollout hands it to the reward loop: prompt and right-padded response token ids,
    the attention mask over both, and the dataset's non-tensor columns."""
    from verl import DataProto

    prompt = tok("Write ModelNew for relu.", add_special_tokens=False)["input_ids"]
    responses = [tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in completions]
    width = max(map(len, responses))
    pad = tok.pad_token_id
    resp = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    mask = torch.tensor([[1] * len(prompt) + [1] * len(r) + [0] * (width - len(r)) for r in responses])
    return DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt] * len(completions)),
            "responses": resp,
            "attention_mask": mask,
        },
        non_tensors={
            "data_source": np.array(["kernelbench"] * len(completions), dtype=object),
            "reward_model": np.array([{"ground_truth": p} for p in problems], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(len(completions))], dtype=object),
        },
    )


def _verl_scores(config, tok, data) -> list[dict]:
    """verl's reward loop for these samples: the manager the config names, run_single per sample, as its
    RewardLoopWorker.compute_score_batch does (concurrently, on one event loop)."""
    from verl.trainer.ppo.reward import load_reward_manager

    async def run():
        manager = load_reward_manager(config, tok)
        return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(len(data))))

    return asyncio.run(run())


def test_verl_readme_command_through_verls_reward_loop(server, tok):
    """The README's overrides on verl's default config: load_reward_manager resolves `naive` and loads
    compute_score by `pkg://`; run_single on real verdicts from the live server."""
    from verl.experimental.reward_loop.reward_manager import NaiveRewardManager

    config = _verl_config(_readme_verl_overrides(server.url()))
    assert config.reward.reward_manager.name == "naive"
    outs = _verl_scores(config, tok, _verl_batch(tok, COMPLETIONS, PROBLEMS))
    scores = [o["reward_score"] for o in outs]
    assert scores[0] > scores[1] > scores[2]
    infos = [o["reward_extra_info"] for o in outs]
    keys = list(infos[0])
    assert keys[:6] == list(edge.METRIC_KEYS) and all(list(i) == keys for i in infos)
    assert all(type(v) is float and math.isfinite(v) for i in infos for v in i.values())
    assert [i["correct"] for i in infos] == [1.0, 0.0, 0.0] == [i["acc"] for i in infos]
    assert [i["hack"] for i in infos] == [0.0, 0.0, 1.0]
    weights = RewardConfig().weights  # a component that does not apply reports 0.0: what it adds
    for i in infos[:2]:
        assert i["score"] == pytest.approx(sum(w * i[name] for name, w in weights.items()))
    assert _manager_class(config) is NaiveRewardManager


def _manager_class(config):
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    return resolve_reward_manager_cls(config)


def test_verl_config_needs_the_plus_and_has_no_batch_manager(server):
    overrides = _readme_verl_overrides(server.url())
    assert any(o.startswith("+reward.custom_reward_function.reward_kwargs.url=") for o in overrides)
    from omegaconf.errors import ConfigKeyError

    with pytest.raises(ConfigKeyError, match="reward_kwargs"):
        _verl_config([o.lstrip("+") for o in overrides])
    with pytest.raises(ValueError, match="Unknown reward manager: batch"):
        _manager_class(_verl_config([*overrides, "reward.reward_manager.name=batch"]))


def test_verl_by_file_path_in_process_and_the_same_dict_as_the_route(server, tok):
    """`path=/path/to/verl_reward.py` (verl loads it without sys.modules) and no URL: in-process scoring
    with the module's scorer; the dict equals what POST /compute_score answers for the same sample."""
    config = _verl_config(
        [
            f"reward.custom_reward_function.path={VERL_FILE}",
            "reward.custom_reward_function.name=compute_score",
        ]
    )
    local = _verl_scores(config, tok, _verl_batch(tok, [SOLUTION, WRONG], PROBLEMS[:2]))
    route = [
        httpx.post(
            f"{server.url()}/compute_score",
            json={"solution_str": c, "ground_truth": "bundled:relu"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=300,
        ).json()
        for c in (SOLUTION, WRONG)
    ]
    assert [o["reward_extra_info"] for o in local] == route


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
def test_unjudged_is_none_for_trl_and_fails_the_step_for_verl_and_openrlhf(scorer, tok, status, calls):
    pool = _FailingPool(status)
    trl_reward.configure(scorer=Scorer(RewardConfig(), pool=pool))
    try:
        assert _trl_call(["p"], [SOLUTION], ["bundled:relu"]) == [None]
        pool.calls = 0
        config = _verl_config(
            [
                "reward.custom_reward_function.path=pkg://kernelrl.rewards.verl_reward",
                "+reward.custom_reward_function.reward_kwargs.backoff=0",
            ]
        )
        with pytest.raises(edge.Unjudged, match=f"could not judge 1 of 1 samples.*{status}: worker lost"):
            _verl_scores(config, tok, _verl_batch(tok, [SOLUTION], ["bundled:relu"]))
        assert pool.calls == calls  # infra_error is re-scored (rejudge=2); not_executed never will be
        out, logged = _openrlhf(str(OPENRLHF_FILE), tok, SOLUTION)
        assert out["reward"] is None and f"{status}: worker lost" in logged  # swallowed, logged at INFO
    finally:
        trl_reward.configure(scorer=scorer)


# ------------------------------------------------------------------------------------------- OpenRLHF


class _Engine:
    """Stands in for OpenRLHF's vLLM engine: `generate` answers a scripted response as token ids."""

    def __init__(self, tok, text: str) -> None:
        self.text, self.ids = text, tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        out = SimpleNamespace(token_ids=self.ids, text=self.text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _openrlhf(remote_url: str, tok, response: str, label: str = "bundled:relu") -> tuple[dict, str]:
    """OpenRLHF's SingleTurnAgentExecutor (as its rollout actor builds it from --reward.remote_url) running
    one prompt; its output and what it logged."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write ModelNew for relu."}], tokenize=False, add_generation_prompt=True
    )
    params = SimpleNamespace(max_tokens=None, logprobs=None)  # the vllm.SamplingParams fields it reads
    log = logging.getLogger("openrlhf.utils.agent")
    handler = _Log()
    log.addHandler(handler)
    try:
        executor = SingleTurnAgentExecutor(remote_url.split(","))  # train_ppo_ray splits the flag on commas
        out = asyncio.run(executor.execute(prompt, label, params, 4096, tok, _Engine(tok, response)))
    finally:
        log.removeHandler(handler)
    return out, "\n".join(handler.lines)


def _readme_openrlhf_urls(url: str) -> tuple[str, str]:
    """The two --reward.remote_url values of the README's OpenRLHF commands: the route and the file."""
    urls = []
    for command in _readme_commands("Trainer adapters", "openrlhf.cli.train_ppo_ray"):
        value = command.split("--reward.remote_url ", 1)[1].split()[0]
        value = value.replace("http://reward-host:8000", url).replace("$KERNELRL_TOKEN", TOKEN)
        urls.append(value.replace("/path/to/openrlhf_reward.py", str(OPENRLHF_FILE)))
    route, file = urls
    return route, file


def test_openrlhf_readme_flags_exist_in_the_installed_trainer():
    """Every flag of the README's OpenRLHF commands is an argument of the installed train_ppo_ray."""
    import openrlhf.cli

    source = (Path(openrlhf.cli.__file__).parent / "train_ppo_ray.py").read_text()
    known = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    flags = {
        t for c in _readme_commands("Trainer adapters", "train_ppo_ray") for t in c.split() if t[:2] == "--"
    }
    assert flags and flags <= known, flags - known
    assert "--remote_rm_url" not in known and "--label_key" not in known  # the names before 0.10.2


def test_openrlhf_executor_route_and_file_agree(server, tok):
    route_url, file_path = _readme_openrlhf_urls(server.url())
    assert f"/t/{TOKEN}/get_reward" in route_url  # OpenRLHF sends no header: the token rides in the path
    by_route = [_openrlhf(route_url, tok, c)[0] for c in COMPLETIONS]
    rewards = [o["reward"][0] for o in by_route]
    assert rewards[0] > rewards[1] > rewards[2]
    assert [o["scores"] for o in by_route] == [[1.0], [0.0], [0.0]]
    assert by_route[2]["extra_logs"]["hack"] == [1.0]
    with _remote_by_default(server.url()):  # the file reads KERNELRL_REWARD_URL and KERNELRL_TOKEN
        by_file = [_openrlhf(file_path, tok, c)[0] for c in COMPLETIONS]
    for a, b in zip(by_route, by_file, strict=True):
        assert (a["reward"], a["scores"], a["extra_logs"]) == (b["reward"], b["scores"], b["extra_logs"])
    in_process = _openrlhf(file_path, tok, SOLUTION)[0]  # no URL: the module's in-process scorer
    assert in_process["reward"] == by_route[0]["reward"]


def test_openrlhf_without_a_label_key(server, tok):
    """OpenRLHF passes '' when --data.label_key is missing: the file says what to do (in OpenRLHF's INFO log,
    the reward stays None); the route refuses it as a bad problem (OpenRLHF retries, then gives up)."""
    out, logged = _openrlhf(str(OPENRLHF_FILE), tok, SOLUTION, label="")
    assert out["reward"] is None and "--data.label_key" in logged


# ------------------------------------------------------------------------------- failures, per trainer


def test_server_down_what_each_trainer_sees(tok):
    """Nothing listens: OpenRLHF tries 5 times 1 s apart, logs at INFO and leaves the reward None; verl's
    step raises naming the URL; TRL's reward function raises (never a 0.0 for an outage)."""
    down = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    out, logged = _openrlhf(f"{down}/t/{TOKEN}/get_reward", tok, SOLUTION)
    assert out["reward"] is None and out["scores"] is None and time.monotonic() - t0 >= 4.5
    assert "Failed to fetch reward" in logged and "Request error for 5 times" in logged
    config = _verl_config(
        [
            "reward.custom_reward_function.path=pkg://kernelrl.rewards.verl_reward",
            f"+reward.custom_reward_function.reward_kwargs.url={down}",
            "+reward.custom_reward_function.reward_kwargs.retries=1",
            "+reward.custom_reward_function.reward_kwargs.backoff=0.01",
        ]
    )
    with pytest.raises(edge.RewardServerError, match=f"{down}/score still failing after 2 attempts"):
        _verl_scores(config, tok, _verl_batch(tok, [SOLUTION], ["bundled:relu"]))
    scorer = trl_reward.get_backend()
    trl_reward.configure(url=down)
    try:
        trl_reward.get_backend().retries, trl_reward.get_backend().backoff = 1, 0.01
        with pytest.raises(edge.RewardServerError, match="ConnectError"):
            _trl_call(["p"], [SOLUTION], ["bundled:relu"])
    finally:
        trl_reward.configure(scorer=scorer)


def test_slow_verdicts_openrlhf_collects_within_its_tries_and_gives_up_past_them(scorer, tok):
    """A route with a 1 s deadline: a 3 s verdict is a 503 on OpenRLHF's first tries and its reward on a
    later one (the retry joins the running pair); a verdict slower than 5 tries is a None reward."""
    live = _Live(create_app(Scorer(RewardConfig(), pool=scorer.pool), deadline_s=1.0))
    try:
        slow = SLOW.format(s=3) + RELU.extras["solution"]
        out, logged = _openrlhf(f"{live.url}/get_reward", tok, f"```python\n{slow}```")
        assert out["scores"] == [1.0] and "503" in logged  # it took more than one try
        too_slow = SLOW.format(s=14) + RELU.extras["solution"]
        out, logged = _openrlhf(f"{live.url}/get_reward", tok, f"```python\n{too_slow}```")
        assert out["reward"] is None and "Request error for 5 times" in logged
    finally:
        live.stop()


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


def test_trl_remote_mode_matches_in_process(server):
    local = _trl_call(["p"] * 2, [SOLUTION, WRONG], ["bundled:relu"] * 2)
    with _remote_by_default(server.url()):
        cap = _Capture()
        remote = _trl_call(["p"] * 2, [SOLUTION, WRONG], ["bundled:relu"] * 2, cap)
        assert isinstance(trl_reward.get_backend(), edge.Remote)
    assert remote == pytest.approx(local)
    assert cap.extra["status"] == ["ok", "mismatch"]


# ------------------------------------------------------------------- without kernelrl: a fresh venv


FRESH_SCRIPT = """
import asyncio, importlib.util, json, sys

def load(name):
    spec = importlib.util.spec_from_file_location(name, sys.argv[1] + "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

url, completions = sys.argv[2], json.loads(sys.argv[3])
verl = load("verl_reward")
openrlhf = load("openrlhf_reward")
trl = load("trl_reward")
out = {
    "verl": [verl.compute_score("kernelbench", c, "bundled:relu", {}, url=url, token=sys.argv[4])["score"]
             for c in completions],
    "openrlhf": [openrlhf.reward_func(["p" + c], ["p"], ["bundled:relu"])["rewards"][0] for c in completions],
    "trl": asyncio.run(trl.kernel_reward(["p"] * 3, completions, problem=["bundled:relu"] * 3)),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "kernelrl", "numpy")),
}
print(json.dumps(out))
"""


def test_adapter_files_load_by_path_in_a_fresh_venv_without_kernelrl(server, tmp_path):
    """A venv with only httpx (no kernelrl, no torch, not the system's packages): the three adapter files,
    copied with edge.py, load by path and score against the live server; all agree on the ranking."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "httpx"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    files = tmp_path / "adapters"
    files.mkdir()
    for name in ADAPTER_FILES:
        shutil.copy(REWARDS_DIR / name, files / name)
    check = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('kernelrl'), u.find_spec('torch'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.stdout.split() == ["None", "None"], check.stdout + check.stderr
    env = {"PATH": os.environ["PATH"], "KERNELRL_REWARD_URL": server.url(), "KERNELRL_TOKEN": TOKEN}
    import json

    run = subprocess.run(
        [python, "-c", FRESH_SCRIPT, str(files), server.url(), json.dumps(COMPLETIONS), TOKEN],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["loaded"] == []
    for trainer in ("verl", "openrlhf", "trl"):
        scores = out[trainer]
        assert scores[0] > scores[1] > scores[2], (trainer, scores)
    assert out["verl"] == out["openrlhf"] == out["trl"]


def test_in_process_fallback_inside_a_trainers_ray_actor_is_refused_unless_sized(scorer):
    """In a Ray actor (verl's reward workers, OpenRLHF's rollout actors) an unsized in-process pool would
    take the trainer's CPUs and GPUs: refused with advice; sized with KERNELRL_WORKERS, it is CPU workers."""

    @ray.remote(num_cpus=0)
    def inside(env: dict) -> str:
        os.environ.pop("KERNELRL_REWARD_URL", None)
        os.environ.update(env)
        from kernelrl.rewards import edge as e

        try:
            backend = e.make_backend()
        except RuntimeError as err:
            return str(err)
        return f"{type(backend).__name__} {backend.scorer._pool_kwargs}"

    refused = ray.get(inside.remote({}))
    assert (
        "Ray worker of a trainer" in refused and "kernelrl serve" in refused and "KERNELRL_WORKERS" in refused
    )
    sized = ray.get(inside.remote({"KERNELRL_WORKERS": "1"}))
    assert sized == "Local {'num_workers': 1, 'device': 'cpu'}"  # the pool itself starts only when used
