"""GRPO with rewards from real sandbox runs, on TRL's GRPOTrainer.

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m kernelrl.train.grpo \
        --config recipes/qwen2.5-coder-7b/grpo.yaml
    python -m kernelrl.train.grpo --config recipes/smollm2-135m/grpo.yaml

The dataset's RL split has a ``prompt`` (chat messages) and a ``problem`` column (KernelBench source) that
the reward reads. Rewards: `kernelrl.rewards.trl_reward.kernel_reward`, its components and weights from
``reward_config``; scored in-process through a Ray sandbox pool, or by a reward server when ``reward_url``
is set (the better choice with several training processes: one pool for all ranks). The model loads with
the recipe's ``dtype`` and ``attn_implementation``; a LoRA SFT output (an adapter) is loaded on its base and
its adapter trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig, GRPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

from kernelrl.data_pipeline.embedded_model import resolve_model
from kernelrl.rewards import trl_reward
from kernelrl.rewards.compose import load_config
from kernelrl.train.recipe_io import (
    is_adapter,
    load_adapter_model,
    load_data,
    model_init_kwargs,
    write_model_card,
)


@dataclass
class GRPOScriptArguments(ScriptArguments):
    dataset_train_split: str = field(default="rl", metadata={"help": "split with prompt + problem columns"})
    reward_config: str | None = field(
        default=None, metadata={"help": "reward weights YAML (default: rewards.compose defaults)"}
    )
    reward_url: str | None = field(
        default=None, metadata={"help": "a `kernelrl serve` base URL; unset = in-process sandbox pool"}
    )
    sandbox_workers: int | None = field(default=None, metadata={"help": "in-process pool size"})
    sandbox_device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    sandbox_run_timeout: float = field(default=60.0, metadata={"help": "seconds per candidate run"})


class KernelGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, logging where a step's time goes: ``time/generate`` and ``time/reward`` (seconds
    per step, next to TRL's ``step_time``; the rest is the policy update), so the biggest cost can be cut."""

    def _timed(self, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][key].append(time.perf_counter() - t)
        return out

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("time/generate", super()._generate_single_turn, *args, **kwargs)

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("time/reward", super()._calculate_rewards, *args, **kwargs)


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> None:
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    reward_config = load_config(script_args.reward_config)
    pool_kwargs = {"device": script_args.sandbox_device, "run_timeout_s": script_args.sandbox_run_timeout}
    if script_args.sandbox_workers:
        pool_kwargs["num_workers"] = script_args.sandbox_workers
    trl_reward.configure(url=script_args.reward_url, config=reward_config, **pool_kwargs)
    dataset = load_data(script_args.dataset_name, script_args.dataset_config)
    model, tokenizer, peft_config = model_args.model_name_or_path, None, get_peft_config(model_args)
    if is_adapter(model):  # e.g. the output of sft_lora.yaml: train that adapter on
        model, tokenizer = load_adapter_model(model, model_init_kwargs(model_args, training_args))
        peft_config = None
        training_args.model_init_kwargs = None
    else:
        training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    trainer = KernelGRPOTrainer(
        model=model,
        reward_funcs=[trl_reward.kernel_reward],
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trl_reward.reset()  # free the in-process sandbox pool's Ray resources (a later pool would wait on them)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        write_model_card(
            training_args.output_dir,
            "grpo",
            script_args,
            training_args,
            model_args,
            rewards=reward_config.weights,
        )
    trainer.accelerator.print(f"GRPO model saved to {training_args.output_dir}")


if __name__ == "__main__":
    parser = TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig))
    main(*parser.parse_args_and_config())
