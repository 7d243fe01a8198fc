"""The prompt templates: the one-shot example answer is itself correct, and the compact form drops it."""

from __future__ import annotations

from kernelrl.data_pipeline import prompts
from kernelrl.sandbox import bundled_problems
from kernelrl.sandbox.problem import load_problem


def test_the_one_shot_example_answer_passes_the_sandbox(evaluator):
    verdict = evaluator.evaluate(load_problem(prompts._EXAMPLE_PROBLEM), prompts._EXAMPLE_ANSWER["triton"])
    assert verdict.status == "ok", verdict.error


def test_compact_prompt_keeps_rules_and_problem_but_not_the_example():
    source = bundled_problems()["relu"].source
    full, compact = (prompts.build_prompt(source, one_shot=flag)[1]["content"] for flag in (True, False))
    assert "Example answer" in full and "Example answer" not in compact
    assert source.strip() in compact and "@triton.jit" in prompts.build_prompt(source, "triton")[1]["content"]
    assert len(compact) < len(full) / 2
    assert "load_inline" in prompts.build_prompt(source, "cuda")[1]["content"]
