"""Three levers on a CPU GRPO step of `grpo_long.yaml`'s shape, each against its baseline in the same run:
the update (forward and backward of the LoRA policy) with gradient checkpointing, TRL's GRPOConfig default,
against without it; and the generation (a step's 8 sampled answers) with float32 weights and transformers'
default growing (dynamic) KV cache, against a bfloat16 copy and against a preallocated (static) cache.

    .venv/bin/python bench/grpo_cpu_step.py [--model outputs/demo/sft] [--batch 8] [--repeats 2]

The shape: LoRA r 32 on all linear layers, bf16 autocast for the update, 8 sequences of a ~400-token prompt
and a ~550-token answer, loss on the answer tokens only (TRL's `logits_to_keep`); generation times a fixed
number of new tokens. Each setting runs in its own process so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.progress import track
from rich.table import Table

# child name -> (part, setting); the first of each part is its baseline (what the trainer does now)
SETTINGS = {
    "checkpointing": ("update", {"checkpointing": True}),
    "no checkpointing": ("update", {"checkpointing": False}),
    "float32": ("generate", {}),
    "bfloat16": ("generate", {"bf16": True}),
    "static cache": ("generate", {"cache": "static"}),
}


def measure(model_name: str, batch: int, prompt: int, answer: int, repeats: int, checkpointing: bool) -> dict:
    """Seconds per forward+backward (first call excluded: it allocates) and this process's peak RSS."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kernelrl.data_pipeline.embedded_model import resolve_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(model_name), dtype=torch.float32)
    if checkpointing:  # what GRPOTrainer does with gradient_checkpointing on and a PEFT model
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, target_modules="all-linear"))
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt + answer))
    times = []
    for _ in range(repeats + 1):
        t = time.monotonic()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, logits_to_keep=answer + 1).logits[:, :-1]
            logps = torch.log_softmax(logits.float(), dim=-1)
            loss = -logps.gather(-1, ids[:, -answer:, None]).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.monotonic() - t)
    return {"seconds": statistics.median(times[1:]), "peak_gib": _peak_gib()}


def measure_generation(
    model_name: str,
    batch: int,
    prompt: int,
    answer: int,
    repeats: int,
    bf16: bool = False,
    cache: str | None = None,
) -> dict:
    """Seconds to sample `answer` new tokens for `batch` sequences (after a short warm-up call) and the peak RSS.
    `cache` is GenerationConfig's `cache_implementation` (GRPOConfig passes its own on)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from kernelrl.data_pipeline.embedded_model import resolve_model

    torch.manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolve_model(model_name), dtype=dtype).eval()
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt))
    mask = torch.ones_like(ids)

    def sample(tokens: int) -> float:
        config = GenerationConfig(
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=True,
            temperature=0.7,
            pad_token_id=model.config.eos_token_id,
            cache_implementation=cache,
        )
        t = time.monotonic()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        return time.monotonic() - t

    sample(8)  # warm-up: first allocations
    times = [sample(answer) for _ in range(repeats)]
    return {"seconds": statistics.median(times), "peak_gib": _peak_gib()}


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="outputs/demo/sft", help="a local model, or `embedded`")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=400)
    p.add_argument("--answer-tokens", type=int, default=550)
    p.add_argument(
        "--generated-tokens", type=int, default=512, help="new tokens per generation timing (answers: ~570)"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        what, setting = SETTINGS[a.child]
        if what == "update":
            r = measure(a.model, a.batch, a.prompt_tokens, a.answer_tokens, a.repeats, **setting)
        else:
            r = measure_generation(
                a.model, a.batch, a.prompt_tokens, a.generated_tokens, a.repeats, **setting
            )
        print(json.dumps(r))
        return
    results = {}
    for child in track(SETTINGS, description="settings"):
        out = subprocess.run([sys.executable, *sys.argv, "--child", child], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{child}: failed\n{out.stderr[-2000:]}")
        results[child] = json.loads(out.stdout.strip().splitlines()[-1])
    table = Table(
        title=f"CPU GRPO step parts: {a.batch} sequences, {a.prompt_tokens}-token prompts, update over "
        f"{a.answer_tokens}-token answers, generation of {a.generated_tokens} tokens"
    )
    for col in ("part", "setting", "seconds", "peak RSS GiB", "time vs baseline"):
        table.add_column(col)
    for child, r in results.items():
        part = SETTINGS[child][0]
        baseline = results[next(c for c, (what, _) in SETTINGS.items() if what == part)]
        ratio = r["seconds"] / baseline["seconds"]
        table.add_row(part, child, f"{r['seconds']:.1f}", f"{r['peak_gib']:.1f}", f"{ratio:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
