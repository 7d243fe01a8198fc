"""Every recipe parses with the installed TRL / accelerate / our config models, so a stale key fails CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

from kernelrl.rewards.compose import load_config
from kernelrl.train.grpo import GRPOScriptArguments
from kernelrl.train.sft import SFTScriptArguments

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TRAINING = sorted(
    p
    for p in RECIPES.glob("*/*.yaml")
    if p.parent.name not in {"accelerate_configs", "rewards", "data", "eval"}
)


def test_there_are_recipes_for_the_demo_and_a_gpu_family():
    names = {f"{p.parent.name}/{p.name}" for p in TRAINING}
    assert {"smollm2-135m/sft.yaml", "smollm2-135m/grpo.yaml"} <= names
    assert {
        "qwen2.5-coder-7b/sft.yaml",
        "qwen2.5-coder-7b/grpo.yaml",
        "qwen2.5-coder-7b/grpo_server.yaml",
    } <= names


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_training_recipe_parses(path):
    grpo = "grpo" in path.stem
    types = (
        (GRPOScriptArguments, GRPOConfig, ModelConfig)
        if grpo
        else (SFTScriptArguments, SFTConfig, ModelConfig)
    )
    # --use_cpu lets GPU recipes (bf16) pass TrainingArguments' device checks here; every key is still checked.
    script, training, model = TrlParser(types).parse_args_and_config(
        args=["--config", str(path), "--use_cpu", "true"], fail_with_unknown_args=True
    )
    assert model.model_name_or_path and script.dataset_name
    if grpo:
        assert training.generation_batch_size % training.num_generations == 0, "whole groups per generation"
        if script.reward_config:
            load_config(Path(__file__).resolve().parent.parent / script.reward_config)


@pytest.mark.parametrize(
    "path", sorted((RECIPES / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_config_loads(path):
    assert load_config_from_file(str(path)).distributed_type


@pytest.mark.parametrize("path", sorted((RECIPES / "rewards").glob("*.yaml")), ids=lambda p: p.name)
def test_reward_config_loads(path):
    assert load_config(path).weights
