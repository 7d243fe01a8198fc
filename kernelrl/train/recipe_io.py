"""What every training entry point shares: loading a curated dataset and the starting model, and recording how
a model was made."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

ADAPTER_FILE = "adapter_config.json"  # what a LoRA stage saves instead of a model (no config.json)


def load_data(name: str, config: str | None = None) -> DatasetDict:
    """A dataset saved by `kernelrl curate` (a directory) or any hub dataset id."""
    if name is None:
        raise ValueError("the recipe sets no dataset_name (a `kernelrl curate` output directory or a hub id)")
    if Path(name).is_dir():
        data = load_from_disk(name)
        if not isinstance(data, DatasetDict):
            raise ValueError(
                f"{name} holds a single split; expected the DatasetDict `kernelrl curate` writes"
            )
        return data
    return load_dataset(name, name=config)


def model_init_kwargs(model_args: Any, training_args: Any) -> dict[str, Any]:
    """How TRL's trainers load the model from the recipe (as TRL's own scripts do): ``dtype`` and
    ``attn_implementation`` of ``ModelConfig``, then the recipe's ``model_init_kwargs`` on top."""
    kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    kwargs.update(training_args.model_init_kwargs or {})
    return kwargs


def is_adapter(path: str) -> bool:
    """Whether `path` is a LoRA stage's output: an adapter on a base model named in it, not a model."""
    p = Path(path)
    return (p / ADAPTER_FILE).is_file() and not (p / "config.json").is_file()


def load_adapter_model(path: str, init_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The base model named in the adapter at `path` with that adapter loaded *trainable*, and the tokenizer
    saved next to it: a LoRA stage that starts from another (SFT LoRA -> GRPO) trains the same adapter on,
    so its output is again one adapter on the original base."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    kwargs = dict(init_kwargs)
    if isinstance(kwargs.get("dtype"), str) and kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=True, **kwargs)
    return model, AutoTokenizer.from_pretrained(path)


def as_prompt_completion(rows: Dataset) -> Dataset:
    """Split curated ``messages`` into ``prompt`` (every turn before the answer) and ``completion`` (the
    assistant's answer), so TRL computes the SFT loss on the answer only (its default for prompt-completion
    data; ``completion_only_loss: false`` restores loss on the whole conversation). Other layouts pass through."""
    if "messages" not in rows.column_names or "prompt" in rows.column_names:
        return rows
    if any(not m or m[-1]["role"] != "assistant" for m in rows["messages"]):
        raise ValueError("every `messages` row must end with the assistant's answer")
    return rows.map(
        lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
        remove_columns=["messages"],
    )


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool, type(None))) else str(obj)


def write_model_card(output_dir: str, stage: str, *args: Any, rewards: dict | None = None) -> None:
    """Append the recipe (all arguments), the data and the reward configuration to the saved model's card,
    and keep them machine-readable in ``kernelrl_recipe.json``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"stage": stage, "arguments": [_plain(a) for a in args], "rewards": rewards}
    (out / "kernelrl_recipe.json").write_text(json.dumps(recipe, indent=2))
    card = out / "README.md"
    text = card.read_text() if card.is_file() else f"# {out.name}\n"
    data = next((a.dataset_name for a in args if hasattr(a, "dataset_name")), None)
    text += (
        f"\n## kernelrl\n\nStage: `{stage}`. Data: `{data}`.\n\n"
        + (f"Reward weights: `{json.dumps(rewards)}`.\n\n" if rewards else "")
        + "The full recipe (every argument) is in `kernelrl_recipe.json`.\n"
    )
    card.write_text(text)
