"""Batched chat generation, one function shared by checkpoint evaluation, the demo and data curation.

vLLM where it can run (CUDA + `vllm` importable), transformers otherwise; both return, for each prompt, n
assistant texts. Sampling is nucleus-only (no top-k) on both backends so they draw from the same
distribution. Training passes its in-memory `(model, tokenizer)`; that path leaves the caller's RNG state,
train/eval mode and tokenizer settings as it found them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kernelrl.data_pipeline.embedded_model import resolve_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Messages = list[dict[str, str]]
BACKENDS = ("auto", "transformers", "vllm")


class GenerationError(ValueError):
    """Bad arguments or a model that cannot be loaded."""


def generate(
    model: str | tuple[PreTrainedModel, PreTrainedTokenizerBase],
    prompts: list[Messages],
    n: int = 1,
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 8,
    backend: str = "auto",
) -> list[list[str]]:
    """For each chat prompt, `n` completions (assistant text only). temperature 0 = greedy."""
    _check_args(model, prompts, n, max_new_tokens, temperature, top_p, batch_size, backend)
    if not prompts:
        return []
    if backend == "auto":
        vllm_ok = isinstance(model, str) and _vllm_usable() and not _is_adapter(resolve_model(model))
        backend = "vllm" if vllm_ok else "transformers"
    if backend == "vllm":
        if not isinstance(model, str):
            raise GenerationError("backend 'vllm' needs a model name or path, not an in-memory model")
        path = _checked_path(model)
        if _is_adapter(path):
            raise GenerationError(
                f"{path} is a LoRA adapter: backend 'vllm' needs a merged model (use 'transformers')"
            )
        return _generate_vllm(path, prompts, n, max_new_tokens, temperature, top_p, seed)
    pair = _load(model) if isinstance(model, str) else model
    return _generate_hf(*pair, prompts, n, max_new_tokens, temperature, top_p, seed, batch_size)


def _check_args(
    model: Any,
    prompts: Any,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    backend: str,
) -> None:
    """One clear line per mistake, before anything expensive is loaded."""
    if backend not in BACKENDS:
        raise GenerationError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if not isinstance(model, str) and not (isinstance(model, tuple) and len(model) == 2):
        raise GenerationError(
            f"model must be a name/path or a (model, tokenizer) pair, got {type(model).__name__}"
        )
    for name, value, low in (
        ("n", n, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise GenerationError(f"{name} must be an integer >= {low}, got {value!r}")
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1], got {top_p}")
    if not isinstance(prompts, list):
        raise GenerationError(f"prompts must be a list of chat message lists, got {type(prompts).__name__}")
    for i, msgs in enumerate(prompts):
        ok = (
            isinstance(msgs, list)
            and msgs
            and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in msgs)
        )
        if not ok:
            raise GenerationError(f"prompt {i} is not a non-empty list of {{'role', 'content'}} messages")


def _vllm_usable() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def _checked_path(name: str) -> str:
    """Resolve the name; a local path must hold a checkpoint (hub ids are left to the loader)."""
    path = os.path.expanduser(resolve_model(name))
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")) and not _is_adapter(path):
            raise GenerationError(
                f"model dir {path} has no config.json (nor adapter_config.json): not a Hugging Face checkpoint"
            )
    elif path.startswith(("/", "./", "../", "~")):
        raise GenerationError(f"model path {path} does not exist")
    return path


def _is_adapter(path: str) -> bool:
    """A LoRA stage's output: an adapter on the base model it names, no `config.json` of its own."""
    return os.path.isfile(os.path.join(path, "adapter_config.json")) and not os.path.isfile(
        os.path.join(path, "config.json")
    )


def _load(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load tokenizer and model once per call: float32 on CPU, the checkpoint's own dtype on GPU; a LoRA
    adapter is loaded on its base and merged into it (generation then costs what the base model costs)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _checked_path(name)
    cuda = torch.cuda.is_available()
    dtype = "auto" if cuda else torch.float32
    try:
        tok = AutoTokenizer.from_pretrained(path)
        if _is_adapter(path):
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise GenerationError(f"cannot load model {name!r}: {first}") from None
    return model.to("cuda" if cuda else "cpu"), tok


@contextlib.contextmanager
def _prepared(model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> Iterator[None]:
    """Eval mode, left padding and a pad token for the duration; the caller's settings come back after."""
    was_training, side, pad = model.training, tok.padding_side, tok.pad_token
    model.eval()
    tok.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    try:
        yield
    finally:
        model.train(was_training)
        tok.padding_side = side
        if pad is None:
            tok.pad_token = None


def _generate_hf(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: list[Messages],
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
) -> list[list[str]]:
    import torch
    from tqdm.auto import tqdm

    if not tok.chat_template:
        raise GenerationError("the tokenizer has no chat template; use an instruct/chat model")
    greedy = temperature == 0
    texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
    # Greedy answers are identical, so each prompt runs once and is copied n times.
    rows = [i for i in range(len(texts)) for _ in range(1 if greedy else n)]
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
    out: list[list[str]] = [[] for _ in prompts]
    device = model.device
    batches = range(0, len(rows), batch_size)
    with (
        _prepared(model, tok),
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        torch.inference_mode(),
    ):
        torch.manual_seed(seed)
        for start in tqdm(batches, desc="generate", unit="batch", disable=len(batches) < 2):
            idx = rows[start : start + batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(device)
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=not greedy,
                pad_token_id=tok.pad_token_id,
                **sampling,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True), strict=True):
                out[i].append(text)
    return [answers * n if greedy else answers for answers in out]


def _generate_vllm(
    path: str,
    prompts: list[Messages],
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
) -> list[list[str]]:
    """vLLM's offline chat API: one engine per call, n samples per request, outputs in prompt order."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
    outputs = llm.chat(prompts, sampling_params=params, use_tqdm=True)
    return [[c.text for c in o.outputs] for o in outputs]
