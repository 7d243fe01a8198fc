"""Shared by the multi-turn tests: scripted episodes on the bundled relu problem, a tiny Qwen-style chat model
whose template supports tool calls (built here, no hub), and a stand-in generation engine that replays a script.

The three cases every trainer hook must score right, with the test reward config (default weights, 2 turns,
discounted, gamma 0.4): fixed on turn 2 (mismatch 0.2, then correct 1.2 -> 0.2 + 0.4 * 1.2 = 0.68), never fixed
(mismatch 0.2, then a compile error -0.1 -> 0.2 - 0.04 = 0.16), hacked on turn 2 (mismatch, then a torch-only
answer -> the floor -1.3 for the whole episode).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kernelrl.sandbox import bundled_problems

RELU = bundled_problems()["relu"]
SOLUTION = f"One program per 1024-element block, masked tail.\n```python\n{RELU.extras['solution']}```"
WRONG = f"A leaky variant by mistake.\n```python\n{RELU.extras['wrong']}```"
BROKEN = (
    "Import first.\n```python\n"
    + RELU.extras["solution"].replace(
        "import triton.language as tl", "import triton.language as tl\nundefined_helper()"
    )
    + "```"
)
HACK = """Just call torch.
```python
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
```"""
CASES = {"fixed": [WRONG, SOLUTION], "never": [WRONG, BROKEN], "hacked": [WRONG, HACK]}
EXPECTED = {"fixed": 0.2 + 0.4 * 1.2, "never": 0.2 + 0.4 * -0.1, "hacked": -1.3}
STATUSES = {
    "fixed": ["mismatch", "ok"],
    "never": ["mismatch", "compile_error"],
    "hacked": ["mismatch", "hack_detected"],
}
REWARD_YAML = """weights: {execution: 1.0, speed: 0.5, format: 0.1, kernel: 0.1, banned: 0.1}
episode: {max_turns: 2, aggregate: discounted, gamma: 0.4, stop: correct}
"""


def case_of(text: str) -> str:
    """Which scripted case a prompt (or conversation) belongs to: its user message names it."""
    for name in CASES:
        if f"[case {name}]" in text:
            return name
    raise AssertionError(f"no case marker in {text[:200]!r}")


def tool_call(answer: str, name: str = "submit_kernel") -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': {'answer': answer}})}\n</tool_call>"


def make_tokenizer_and_model(out: Path):
    """A byte-level BPE with Qwen's special tokens and TRL's Qwen2.5 chat template (tool calls supported), and a
    2-layer Qwen2 model, saved like any checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from trl.chat_template_utils import qwen2_5_chat_template

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
    specials += ["<tool_response>", "</tool_response>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([SOLUTION, WRONG, BROKEN, HACK, RELU.source, qwen2_5_chat_template], trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=qwen2_5_chat_template,
        additional_special_tokens=specials[1:],
    )
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16384,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def scripted_reply(context: str, turn: int, wrap=tool_call) -> str:
    """The stand-in model's reply: the case's answer for this turn as a tool call, then a closing message."""
    script = CASES[case_of(context)]
    return wrap(script[turn]) if turn < len(script) else "Done."


class ServeProcess:
    """`kernelrl serve` in a subprocess on a free port, with its own local Ray; `.url()` waits until it answers."""

    def __init__(self, config: str, workers: int = 1) -> None:
        import os
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "RAY_ADDRESS": "local"}
        env.pop("KERNELRL_TOKEN", None)
        cmd = [
            sys.executable,
            "-m",
            "kernelrl.cli",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        cmd += ["--device", "cpu", "--drain-timeout", "5", "--config", config]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, timeout_s: float = 240.0) -> str:
        import time

        import httpx

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

    def turn_requests(self) -> float:
        """How many /turn requests the server answered 200 (from its Prometheus metrics)."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.base}/metrics").text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "kernelrl_requests_total" and s.labels == {"route": "/turn", "code": "200"}
        )

    def stop(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def readme_snippet(name: str) -> str:
    """The fenced block that follows ``<!-- test: name -->`` in the README: the docs show what the tests run."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    marker = f"<!-- test: {name} -->"
    assert marker in text, f"README has no {marker}"
    block = text.split(marker, 1)[1].split("```", 2)
    return block[1].split("\n", 1)[1]
