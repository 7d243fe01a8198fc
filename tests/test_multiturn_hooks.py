"""The three trainers' own multi-turn classes drive whole episodes against the real sandbox, in-process and
through `kernelrl serve`: TRL's GRPOTrainer with `environment_factory=KernelEnv` (one training step), OpenRLHF's
MultiTurnAgentExecutor with our agent file loaded by path, verl's ToolAgentLoop with our tool and verl's reward
manager with our `compute_score`. Only the generation engine is a stand-in (a script of the model's turns).

Every trainer must score the three episodes of `multiturn_fixtures.CASES` right (fixed on turn 2, never fixed,
hacked on turn 2), and its second turn must see the first turn's feedback.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from multiturn_fixtures import (
    CASES,
    EXPECTED,
    REWARD_YAML,
    SOLUTION,
    STATUSES,
    WRONG,
    ServeProcess,
    make_tokenizer_and_model,
    readme_snippet,
    scripted_reply,
)

from kernelrl.rewards import trl_reward
from kernelrl.rewards.client import RewardClient, RewardServerError
from kernelrl.rewards.compose import Scorer, load_config

ROOT = Path(__file__).resolve().parents[1]
AGENT_FILE = ROOT / "kernelrl" / "rewards" / "openrlhf_agent.py"
VERL_FILE = ROOT / "kernelrl" / "rewards" / "verl_tool.py"
MODES = ["in-process", "server"]


@pytest.fixture(scope="module")
def reward_yaml(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("multiturn") / "reward.yaml"
    path.write_text(REWARD_YAML)
    return str(path)


@pytest.fixture(scope="module")
def server(reward_yaml):
    proc = ServeProcess(reward_yaml)  # starts first: its start-up overlaps the in-process tests
    yield proc
    proc.stop()


@pytest.fixture(scope="module", autouse=True)
def scorer(server, reward_yaml):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELRL_REWARD_CONFIG", reward_yaml)
        mp.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
        mp.delenv("KERNELRL_REWARD_URL", raising=False)
        s = Scorer(load_config(reward_yaml), num_workers=2, device="cpu", run_timeout_s=60)
        trl_reward.configure(scorer=s)
        yield s
        trl_reward.reset()
        s.close()
        ray.shutdown()


@pytest.fixture
def mode(request, scorer, server, monkeypatch):
    """Where turns are scored: the in-process pool, or the server (its /turn route; counted in its metrics)."""
    if request.param == "server":
        url = server.url()
        before = server.turn_requests()
        monkeypatch.setenv("KERNELRL_REWARD_URL", url)
        trl_reward.configure(url=url)
        yield url
        assert server.turn_requests() > before, "the episode did not go through the server"
        trl_reward.configure(scorer=scorer)
    else:
        yield None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    path = make_tokenizer_and_model(tmp_path_factory.mktemp("tiny-qwen"))
    return path, AutoTokenizer.from_pretrained(path)


def _check_second_turn_saw_feedback(contexts: list[str]) -> None:
    second = [c for c in contexts if "Attempt 1 of 2" in c]
    assert second, "no turn was generated after the first feedback"
    assert all("Wrong result: 6 of 6 checks failed" in c for c in second)
    assert not any("/work/" in c or "runner.py" in c for c in contexts)  # nothing from the host


# ---------------------------------------------------------------------------------------------------- TRL


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_trl_grpo_trainer_environment_factory(mode, tiny, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig

    path, tokenizer = tiny
    model = AutoModelForCausalLM.from_pretrained(path)
    contexts: list[str] = []

    def engine(input_ids, attention_mask=None, generation_config=None, **kwargs):
        """Stand-in for model.generate: appends the scripted turn (a submit_kernel tool call) to each row."""
        replies = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = tokenizer.decode(ids[mask.bool()].tolist())
            contexts.append(text)
            reply = scripted_reply(text, text.count("<tool_response>")) + "<|im_end|>"
            replies.append(tokenizer(reply, add_special_tokens=False)["input_ids"])
        width = max(len(r) for r in replies)
        padded = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in replies]
        return torch.cat([input_ids, input_ids.new_tensor(padded)], dim=1)

    model.generate = engine
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Write ModelNew. [case {c}]"}],
                "problem": "bundled:relu",
            }
            for c in CASES
        ]
    )
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=len(CASES) * 2,
        num_generations=2,
        max_completion_length=8192,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    scope = {"model": model, "args": args, "dataset": dataset, "tokenizer": tokenizer}
    exec(readme_snippet("trl_env"), scope)  # the README's snippet, as written
    trainer = scope["trainer"]

    envs = trainer._environment_pool[None]
    assert len(envs) == 2 * len(CASES)
    seen = {}
    for env in envs:
        case = _case(env)
        assert [t.status for t in env.episode.turns] == STATUSES[case]
        assert env.get_reward() == pytest.approx(EXPECTED[case])
        seen[case] = seen.get(case, 0) + 1
    assert seen == {c: 2 for c in CASES}  # both generations of every prompt ran their whole episode
    logged = trainer.state.log_history[0]
    assert logged["rewards/KernelEnv/mean"] == pytest.approx(sum(EXPECTED.values()) / len(CASES), abs=1e-4)
    assert logged["tools/call_frequency"] == pytest.approx(2.0)
    _check_second_turn_saw_feedback(contexts)


def _case(env) -> str:
    """The scripted case of a finished TRL episode, told by its second answer's status."""
    return {"ok": "fixed", "compile_error": "never", "hack_detected": "hacked"}[env.episode.turns[-1].status]


# ----------------------------------------------------------------------------------------------- OpenRLHF


class _Sampling:
    """The attributes of vLLM's SamplingParams that OpenRLHF's executor reads and writes."""

    def __init__(self) -> None:
        self.max_tokens = None
        self.logprobs = None


class _VllmEngine:
    """Stand-in for OpenRLHF's vLLM engine: `generate(token ids, params)` -> an object shaped like vLLM's."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.contexts = tokenizer, []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        from types import SimpleNamespace

        text = self.tokenizer.decode(prompt_token_ids)
        self.contexts.append(text)
        reply = scripted_reply(text, text.count("Attempt "), wrap=lambda answer: answer)
        ids = self.tokenizer(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
        out = SimpleNamespace(token_ids=ids, text=reply, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def _load_agent_like_openrlhf():
    """OpenRLHF's `_load_agent_executor` (its module imports vLLM, so its steps are repeated here)."""
    from openrlhf.utils.agent import AgentExecutorBase

    spec = importlib.util.spec_from_file_location("agent_module", AGENT_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.AgentExecutor, AgentExecutorBase)
    return module.AgentExecutor()


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_openrlhf_multi_turn_agent_executor(mode, tiny):
    pytest.importorskip("openrlhf.utils.agent")
    _, tokenizer = tiny
    snippet = readme_snippet("openrlhf_agent")
    assert "--train.agent_func_path" in snippet and "/openrlhf_agent.py" in snippet
    executor = _load_agent_like_openrlhf()
    engine = _VllmEngine(tokenizer)

    async def run(case: str) -> dict:
        messages = [{"role": "user", "content": f"Write ModelNew. [case {case}]"}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return await executor.execute(prompt, "bundled:relu", _Sampling(), 16384, tokenizer, engine)

    for case in CASES:
        out = asyncio.run(run(case))
        assert out["reward"] == pytest.approx(EXPECTED[case], abs=1e-6)  # OpenRLHF's sum of step rewards
        assert float(out["scores"]) == (1.0 if case == "fixed" else 0.0)
        assert len(out["action_ranges"]) == 2
        assert float(out["extra_logs"]["hacked"]) == (1.0 if case == "hacked" else 0.0)
        text = tokenizer.decode(out["observation_tokens"])
        assert text.count("<|im_start|>user\nAttempt 1 of 2:") == 1  # feedback as a user turn, ChatML
    _check_second_turn_saw_feedback(engine.contexts)


def test_openrlhf_agent_needs_the_label():
    pytest.importorskip("openrlhf.utils.agent")
    executor = _load_agent_like_openrlhf()
    with pytest.raises(ValueError, match="--data.label_key"):
        asyncio.run(executor.execute("p", None, _Sampling(), 100, None, None))


# --------------------------------------------------------------------------------------------------- verl


class _VerlServer:
    """Stand-in for verl's LLM server manager: `generate(...)` -> TokenOutput with the scripted turn."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.contexts = tokenizer, []

    async def generate(self, request_id, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        text = self.tokenizer.decode(prompt_ids)
        self.contexts.append(text)
        reply = scripted_reply(text, text.count("<tool_response>")) + "<|im_end|>"
        ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
        return TokenOutput(token_ids=ids, stop_reason="completed")


def _verl_reward_input(out, tokenizer, row: dict):
    """The DataProto verl's AgentLoopWorker._compute_score hands to a reward manager for one trajectory."""
    from tensordict import TensorDict
    from verl import DataProto

    prompts = torch.tensor(out.prompt_ids)
    responses = torch.tensor(out.response_ids)
    input_ids = torch.cat([prompts, responses])
    batch = TensorDict(
        {
            "prompts": prompts[None],
            "responses": responses[None],
            "input_ids": input_ids[None],
            "attention_mask": torch.ones_like(input_ids)[None],
            "position_ids": torch.arange(len(input_ids))[None],
        },
        batch_size=1,
    )
    non_tensor = {
        **{k: np.array([v]) for k, v in row.items()},
        "__num_turns__": np.array([out.num_turns]),
        "tool_extra_fields": np.array([out.extra_fields], dtype=object),
    }
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_verl_tool_agent_loop_and_reward_manager(mode, tiny, tmp_path):
    pytest.importorskip("verl.experimental.agent_loop.tool_agent_loop")
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
    from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.tools.tool_registry import initialize_tools_from_config
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset

    _, tokenizer = tiny
    tool_yaml = readme_snippet("verl_tool")
    if mode:  # the server: `url` in the tool's config and in the reward function's kwargs
        tool_yaml = tool_yaml.replace("type: native", f"type: native\n      url: {mode}")
    (tmp_path / "kernel_tool.yaml").write_text(tool_yaml)
    tools = initialize_tools_from_config(str(tmp_path / "kernel_tool.yaml"))
    rollout = {
        "multi_turn": {
            "max_user_turns": 4,
            "max_assistant_turns": 4,
            "max_parallel_calls": 1,
            "max_tool_response_length": 4096,
            "tool_response_truncate_side": "middle",
            "format": "hermes",
        },
        "prompt_length": 4096,
        "response_length": 8192,
        "full_determinism": False,
    }
    config = OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": rollout},
            "reward": {
                "custom_reward_function": {
                    "path": str(VERL_FILE),
                    "name": "compute_score",
                    "reward_kwargs": {"url": mode} if mode else {},
                }
            },
        }
    )
    server = _VerlServer(tokenizer)

    async def episode(case: str):
        loop = ToolAgentLoop(
            trainer_config=DictConfigWrap(config),
            server_manager=server,
            tokenizer=tokenizer,
            processor=None,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(OmegaConf.create({})),
            tools=ToolListWrap(tools),
            hf_model_type="qwen2",
        )
        row = {
            "data_source": "kernelrl",
            "reward_model": {"ground_truth": "bundled:relu"},
            "extra_info": {},
        }
        out = await loop.run(
            {},
            raw_prompt=[{"role": "user", "content": f"Write ModelNew. [case {case}]"}],
            tools_kwargs={"submit_kernel": {"create_kwargs": {"problem": "bundled:relu"}}},
            extra_info={},
        )
        reward_manager = NaiveRewardManager(
            config, tokenizer, get_custom_reward_fn(config)
        )  # binds this loop
        result = await reward_manager.run_single(_verl_reward_input(out, tokenizer, row))
        return out, result

    for case in CASES:
        out, result = asyncio.run(episode(case))
        turns = out.extra_fields["kernelrl_episode"]["turns"]
        assert [t["status"] for t in turns] == STATUSES[case]
        assert sum(out.extra_fields["tool_rewards"]) == pytest.approx(EXPECTED[case])  # step rewards add up
        assert result["reward_score"] == pytest.approx(EXPECTED[case])
        info = result["reward_extra_info"]
        assert info["acc"] == (1.0 if case == "fixed" else 0.0) and info["turns"] == 2.0
        assert info["hacked"] == (1.0 if case == "hacked" else 0.0)
    _check_second_turn_saw_feedback(server.contexts)


def test_verl_compute_score_without_tool_call_scores_the_final_answer():
    pytest.importorskip("verl.tools.base_tool")
    spec = importlib.util.spec_from_file_location("custom_module", VERL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ok = module.compute_score("kernelrl", SOLUTION, "bundled:relu", {})
    wrong = module.compute_score("kernelrl", WRONG, "bundled:relu", {"num_turns": 1})
    assert ok == {"score": pytest.approx(1.2), "acc": 1.0, "turns": 1.0, "solved_turn": 1.0, "hacked": 0.0}
    assert wrong["score"] == pytest.approx(0.2) and list(wrong) == list(ok)


# ------------------------------------------------------------------------------------- the /turn route


def test_turn_route_and_client(server):
    with RewardClient(server.url(), backoff=0.05) as client:
        t = client.turn("bundled:relu", WRONG)
        assert t["status"] == "mismatch" and t["reward"] == pytest.approx(0.2) and not t["correct"]
        assert t["feedback"].startswith("Wrong result: 6 of 6 checks failed")
        assert set(t) == {"reward", "status", "feedback", "speedup", "components", "correct", "hack"}
        with pytest.raises(RewardServerError, match=r"problem: .*paths are not read") as e:
            client.turn(os.path.abspath(__file__), WRONG)
        assert e.value.status == 422
