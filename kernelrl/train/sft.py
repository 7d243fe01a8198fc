"""Supervised fine-tuning on curated (problem, reasoning, kernel) conversations with TRL's SFTTrainer.

    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml -m kernelrl.train.sft \
        --config recipes/qwen2.5-coder-7b/sft.yaml
    python -m kernelrl.train.sft --config recipes/smollm2-135m/sft.yaml

The dataset is a `kernelrl curate` output directory (its ``train`` split holds ``messages``) or a hub id;
``messages`` are split into prompt and answer so the loss falls on the answer only.
``model_name_or_path: embedded`` is the embedded SmolLM2-135M-Instruct checkpoint; the model loads with the
recipe's ``dtype`` and ``attn_implementation``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from kernelrl.data_pipeline.embedded_model import resolve_model
from kernelrl.train.recipe_io import as_prompt_completion, load_data, model_init_kwargs, write_model_card


@dataclass
class SFTScriptArguments(ScriptArguments):
    pass


def main(script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)  # dtype, attention
    dataset = load_data(script_args.dataset_name, script_args.dataset_config)
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=as_prompt_completion(dataset[script_args.dataset_train_split]),
        eval_dataset=as_prompt_completion(dataset[script_args.dataset_test_split])
        if training_args.eval_strategy != "no"
        else None,
        peft_config=get_peft_config(model_args),
    )
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose answer max_length cut off entirely
        raise ValueError(
            f"no training example has answer tokens left within max_length={training_args.max_length}: "
            "the prompts are longer; raise max_length (or use compact prompts, curation output.one_shot: false)"
        )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        write_model_card(training_args.output_dir, "sft", script_args, training_args, model_args)
    trainer.accelerator.print(f"SFT model saved to {training_args.output_dir}")


if __name__ == "__main__":
    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))
    main(*parser.parse_args_and_config())
