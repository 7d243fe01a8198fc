"""Tiny real SFT and GRPO runs through train.sft / train.grpo and their recipes on CPU: recipes parse, checkpoints save and load, GRPO
rewards come from real sandbox verdicts (in-process pool, then a live reward server)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import ray
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.rewards import trl_reward
from kernelrl.sandbox import bundled_problems
from kernelrl.train import grpo, sft
from kernelrl.train.recipe_io import as_prompt_completion, load_data

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "smollm2-135m"
NAMES = ["relu", "elementwise_add"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    problems = bundled_problems()
    rows = []
    for name in NAMES:
        p = problems[name]
        answer = f"{p.extras['reasoning'].strip()}\n\n```python\n{p.extras['solution']}```"
        # Compact prompts: short enough that max_length 384 keeps answer tokens.
        prompt = build_prompt(p.source, one_shot=False)
        rows.append({"messages": prompt + [{"role": "assistant", "content": answer}]})
    rl = [
        {"prompt": build_prompt(problems[n].source), "problem": problems[n].source, "name": n} for n in NAMES
    ]
    out = tmp_path_factory.mktemp("data") / "tiny"
    DatasetDict({"train": Dataset.from_list(rows), "rl": Dataset.from_list(rl)}).save_to_disk(str(out))
    yield out
    trl_reward.reset()  # closes the pool this module's GRPO run created
    ray.shutdown()


def _parse(types, recipe: Path, *overrides: str):
    return TrlParser(types).parse_args_and_config(
        args=["--config", str(recipe), *overrides], fail_with_unknown_args=True
    )


def test_sft_data_puts_the_loss_on_the_answer(data_dir):
    rows = as_prompt_completion(load_data(str(data_dir))["train"])
    assert "messages" not in rows.column_names
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert [m["role"] for m in rows[0]["completion"]] == ["assistant"]
    assert "```python" in rows[0]["completion"][0]["content"]
    rl = load_data(str(data_dir))["rl"]
    assert as_prompt_completion(rl).column_names == rl.column_names  # already prompt-shaped: untouched
    unanswered = Dataset.from_list([{"messages": [{"role": "user", "content": "write a kernel"}]}])
    with pytest.raises(ValueError, match="assistant"):
        as_prompt_completion(unanswered)


def test_sft_names_a_max_length_that_leaves_no_answer(data_dir, tmp_path):
    args = _parse(
        (sft.SFTScriptArguments, SFTConfig, ModelConfig),
        RECIPES / "sft.yaml",
        *("--dataset_name", str(data_dir), "--output_dir", str(tmp_path), "--max_length", "64"),
    )
    with pytest.raises(ValueError, match="max_length=64"):
        sft.main(*args)


def test_tiny_sft_saves_a_loadable_checkpoint_with_its_recipe(data_dir, tmp_path):
    out = tmp_path / "sft"
    args = _parse(
        (sft.SFTScriptArguments, SFTConfig, ModelConfig),
        RECIPES / "sft.yaml",
        *(
            "--dataset_name",
            str(data_dir),
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--max_length",
            "384",
        ),
    )
    sft.main(*args)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert 100e6 < model.num_parameters() < 200e6
    recipe = json.loads((out / "kernelrl_recipe.json").read_text())
    assert recipe["stage"] == "sft" and "## kernelrl" in (out / "README.md").read_text()


def _grpo_args(model: Path, data_dir: Path, out: Path, *extra: str):
    return _parse(
        (grpo.GRPOScriptArguments, GRPOConfig, ModelConfig),
        RECIPES / "grpo.yaml",
        *("--model_name_or_path", str(model), "--dataset_name", str(data_dir), "--output_dir", str(out)),
        *("--max_steps", "2", "--per_device_train_batch_size", "2", "--num_generations", "2"),
        *("--max_completion_length", "24", "--sandbox_workers", "1", "--log_completions", "false"),
        *extra,
    )


def _logged(out: Path) -> list[dict]:
    state = (
        json.loads(next(out.glob("**/trainer_state.json")).read_text())
        if list(out.glob("**/trainer_state.json"))
        else None
    )
    return state["log_history"] if state else []


def test_tiny_grpo_with_in_process_sandbox_rewards(data_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "grpo"
    grpo.main(*_grpo_args(tiny_model_dir, data_dir, out, "--save_strategy", "steps", "--save_steps", "2"))
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    history = _logged(out)
    assert len([h for h in history if "reward" in h]) == 2, history
    assert any("kernelrl/execution" in h for h in history), history  # the sandbox verdict reached the trainer
    card = json.loads((out / "kernelrl_recipe.json").read_text())
    assert card["stage"] == "grpo" and card["rewards"]["execution"] == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tiny_grpo_against_a_live_reward_server(data_dir, tiny_model_dir, tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernelrl.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--device",
            "cpu",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).json().get("workers"):
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read()
            time.sleep(1)
        out = tmp_path / "grpo-remote"
        grpo.main(
            *_grpo_args(
                tiny_model_dir,
                data_dir,
                out,
                "--reward_url",
                url,
                "--save_strategy",
                "steps",
                "--save_steps",
                "2",
            )
        )
        history = _logged(out)
        assert any("kernelrl/execution" in h for h in history), history
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        scored = sum(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("kernelrl_verdicts_total{")
        )
        assert scored >= 4  # 2 steps x 2 completions came through the server
    finally:
        server.terminate()
        server.wait(timeout=120)
