"""Tiny real SFT and GRPO runs through kernelrl.train.sft / kernelrl.train.grpo and their recipes on CPU.

Every command of the README's Training section (and `trl grpo` from Trainer adapters) runs from a directory
holding its own train.py and rewards.py: the CPU lines as written, the GPU lines' recipes with CPU overrides,
the LoRA chain (SFT LoRA -> GRPO from that adapter) included. Checkpoints save and load; the recipe's dtype
reaches the model; GRPO rewards come from real sandbox verdicts (in-process pool, and a live reward server).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import ray
import yaml
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.rewards import trl_reward
from kernelrl.sandbox import bundled_problems
from kernelrl.train import grpo, sft
from kernelrl.train.recipe_io import as_prompt_completion, is_adapter, load_data

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes" / "smollm2-135m"
NAMES = ["relu", "elementwise_add"]
BIN = Path(sys.executable).parent


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


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A training project with its own train.py and rewards.py, which nothing of kernelrl may import, and
    kernelrl's recipes/ folder (the README's commands name recipes by relative path)."""
    d = tmp_path_factory.mktemp("project")
    for name in ("train", "rewards"):
        (d / f"{name}.py").write_text(f"raise SystemExit('the project\\'s own {name}.py was imported')\n")
    (d / "recipes").symlink_to(ROOT / "recipes")
    return d


@pytest.fixture(scope="module")
def reward_server(user_dir):
    """`kernelrl serve` (one CPU worker), started from the project directory."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "kernelrl.cli", "serve", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "RAY_ADDRESS": "local"}
    env.pop("KERNELRL_TOKEN", None)
    proc = subprocess.Popen(
        [*cmd, "--device", "cpu"], cwd=user_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("workers"):
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "kernelrl serve did not come up"
        time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(timeout=120)


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
    states = list(out.glob("**/trainer_state.json"))
    return json.loads(states[0].read_text())["log_history"] if states else []


def test_tiny_grpo_with_in_process_sandbox_rewards(data_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "grpo"
    grpo.main(*_grpo_args(tiny_model_dir, data_dir, out, "--save_strategy", "steps", "--save_steps", "2"))
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    history = _logged(out)
    assert len([h for h in history if "reward" in h]) == 2, history
    assert any("kernelrl/execution" in h for h in history), history  # the sandbox verdict reached the trainer
    card = json.loads((out / "kernelrl_recipe.json").read_text())
    assert card["stage"] == "grpo" and card["rewards"]["execution"] == 1.0


# -- every README command, from a project with its own train.py and rewards.py ---------------------------


def _readme_lines(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = re.split(r"\n###? ", text.split(f"\n## {section}\n", 1)[1], maxsplit=1)[0]  # not its subsections
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(" ".join(line.split()))
    return lines


def _sft_overrides(model: Path, data_dir: Path, out: Path) -> list[str]:
    return [
        *("--model_name_or_path", str(model), "--dataset_name", str(data_dir), "--output_dir", str(out)),
        *("--max_steps", "1", "--max_length", "2048", "--per_device_train_batch_size", "1"),
        *("--gradient_accumulation_steps", "1", "--use_cpu", "true", "--bf16", "false"),
        *("--gradient_checkpointing", "false", "--report_to", "none", "--save_strategy", "no"),
    ]


def _grpo_overrides(model: Path, data_dir: Path, out: Path, reward_url: str) -> list[str]:
    return [
        *("--model_name_or_path", str(model), "--dataset_name", str(data_dir), "--output_dir", str(out)),
        *("--max_steps", "1", "--per_device_train_batch_size", "2", "--num_generations", "2"),
        *("--steps_per_generation", "1", "--max_completion_length", "16", "--use_vllm", "false"),
        *("--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false"),
        *("--report_to", "none", "--save_strategy", "no", "--log_completions", "false"),
        *("--reward_url", reward_url),
    ]


def _run(command: list[str], cwd: Path, env: dict | None = None) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def _verdicts(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("kernelrl_verdicts_total{")
    )


def test_readme_training_commands_from_a_users_project(
    data_dir, tiny_model_dir, user_dir, reward_server, tmp_path, monkeypatch
):
    """Each line of the README's Training block, from a directory with its own train.py and rewards.py:
    CPU lines as subprocesses, as written plus tiny sizes; GPU lines' recipes in-process with CPU
    overrides (their DeepSpeed/DDP launch configs need GPUs; tests/test_recipes.py parses them). The GRPO
    runs score through the live reward server."""
    lines = _readme_lines("Training (SFT, then GRPO)")
    assert len(lines) == 7, lines
    outputs: dict[str, Path] = {}  # by recipe, e.g. "qwen2.5-coder-7b/sft_lora"
    verdicts = _verdicts(reward_server)
    monkeypatch.chdir(user_dir)
    for i, line in enumerate(lines):
        argv = shlex.split(line)
        module, config = argv[argv.index("-m") + 1], argv[argv.index("--config") + 1]
        recipe = ROOT / config
        family = recipe.parent.name
        stage = "grpo" if module == "kernelrl.train.grpo" else "sft"
        assert module == f"kernelrl.train.{stage}", line
        out = tmp_path / f"{i}-{family}-{recipe.stem}"
        if stage == "sft":
            overrides = _sft_overrides(tiny_model_dir, data_dir, out)
        else:  # GRPO starts from its family's SFT output; the LoRA chain from the LoRA SFT output (an adapter)
            start = outputs[f"{family}/{recipe.stem.replace('grpo', 'sft')}"]
            overrides = _grpo_overrides(start, data_dir, out, reward_server)
        if recipe.stem == "sft_lora":
            overrides += ["--lora_r", "8", "--lora_alpha", "16"]  # the GRPO adapter must keep this rank
        if "accelerate" in argv and "cpu.yaml" not in line:  # a GPU launch config: the recipe, in-process
            types = (
                (grpo.GRPOScriptArguments, GRPOConfig, ModelConfig)
                if stage == "grpo"
                else (sft.SFTScriptArguments, SFTConfig, ModelConfig)
            )
            (grpo if stage == "grpo" else sft).main(*_parse(types, recipe, *overrides))
        else:  # as written, from the project directory
            _run([*argv, *overrides], cwd=user_dir)
        outputs[f"{family}/{recipe.stem}"] = out
        assert json.loads((out / "kernelrl_recipe.json").read_text())["stage"] == stage, line
    trl_reward.reset()

    assert set(outputs) == {
        "smollm2-135m/sft",
        "smollm2-135m/grpo",
        "qwen2.5-coder-7b/sft",
        "qwen2.5-coder-7b/grpo",
        "qwen2.5-coder-7b/sft_lora",
        "qwen2.5-coder-7b/grpo_lora",
    }
    assert AutoModelForCausalLM.from_pretrained(outputs["smollm2-135m/sft"]).num_parameters() > 0
    assert _verdicts(reward_server) >= verdicts + 4 * 2  # 4 GRPO runs x 2 completions through the server
    for name in ("qwen2.5-coder-7b/sft", "qwen2.5-coder-7b/grpo"):  # the recipes' dtype: bfloat16
        config = json.loads((outputs[name] / "config.json").read_text())
        assert config["dtype"] == "bfloat16", name  # TRL's default, had the recipe's been dropped: float32
    # the LoRA chain: both stages save adapters; GRPO trained the SFT adapter on (its rank, its base)
    from peft import AutoPeftModelForCausalLM, PeftConfig

    sft_lora, grpo_lora = outputs["qwen2.5-coder-7b/sft_lora"], outputs["qwen2.5-coder-7b/grpo_lora"]
    assert is_adapter(str(sft_lora)) and is_adapter(str(grpo_lora))
    adapter = PeftConfig.from_pretrained(grpo_lora)
    assert adapter.r == 8 and Path(adapter.base_model_name_or_path) == Path(tiny_model_dir)
    assert AutoPeftModelForCausalLM.from_pretrained(grpo_lora).num_parameters() > 0


def test_readme_trl_grpo_command_from_a_users_project(
    data_dir, tiny_model_dir, user_dir, reward_server, tmp_path
):
    """`trl grpo` (TRL's own script) with the README's dataset mixture for a curated directory and
    `--reward_funcs kernelrl.rewards.trl_reward.kernel_reward`, run where a rewards.py would shadow a
    top-level `rewards` package."""
    text = (ROOT / "README.md").read_text().split("\n## Trainer adapters\n", 1)[1]
    [command] = [c for c in _readme_lines("Trainer adapters") if " trl grpo " in f" {c} "]
    recipe = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1))
    recipe["model_name_or_path"] = str(tiny_model_dir)
    recipe["datasets"][0]["data_files"] = recipe["datasets"][0]["data_files"].replace(
        "outputs/data/demo_cpu", str(data_dir)
    )
    recipe["output_dir"] = str(tmp_path / "grpo-trl")
    (user_dir / "grpo_trl.yaml").write_text(yaml.safe_dump(recipe))
    argv = shlex.split(command)
    env = dict(a.split("=", 1) for a in argv if re.match(r"^[A-Z_]+=", a))
    assert env.pop("KERNELRL_REWARD_URL") == "http://reward-host:8000"
    argv = [a for a in argv if not re.match(r"^[A-Z_]+=", a)]
    before = _verdicts(reward_server)
    _run(
        [
            *argv,
            *("--max_steps", "1", "--per_device_train_batch_size", "2", "--num_generations", "2"),
            *("--max_completion_length", "16", "--use_cpu", "true", "--bf16", "false", "--report_to", "none"),
            *("--save_strategy", "no", "--log_completions", "false"),
        ],
        cwd=user_dir,
        env={"KERNELRL_REWARD_URL": reward_server},
    )
    assert (tmp_path / "grpo-trl" / "model.safetensors").is_file()
    assert _verdicts(reward_server) >= before + 2


def test_grpo_server_recipe_ports_do_not_collide():
    """`trl vllm-serve` (TRL's default port 8000) must not take the reward server's port."""
    recipe = ROOT / "recipes" / "qwen2.5-coder-7b" / "grpo_server.yaml"
    config = yaml.safe_load(recipe.read_text())
    [serve] = [
        line for line in recipe.read_text().splitlines() if "trl vllm-serve" in line and "--model" in line
    ]
    vllm_port = int(serve.split("--port", 1)[1].split()[0])
    assert vllm_port == config["vllm_server_port"] != int(config["reward_url"].rsplit(":", 1)[1])
