"""Repair examples: realistic injected bugs, curation that keeps a repair example only when the bug really fails
in the sandbox and the fix is `ok`, resume without sandbox work, and TRL's SFT path with the loss on the fix only."""

from __future__ import annotations

import json
import random

import pytest

from kernelrl.data_pipeline.curate import CurateConfig, curate
from kernelrl.data_pipeline.generate import generate_problems
from kernelrl.data_pipeline.repair import FAILURES, INJECTORS, inject, repair_case
from kernelrl.data_pipeline.synthesize import synthesize
from kernelrl.sandbox import bundled_problems


def _code(answer: str) -> str:
    return answer.split("```python\n", 1)[1].split("```", 1)[0]


def test_each_bug_kind_changes_the_code_where_it_applies():
    answers = {p.category: synthesize(p) for p in generate_problems(16, seed=3)}
    elementwise, matmul = _code(answers["elementwise"]), _code(answers["matmul"])
    rng = random.Random(0)
    off = inject(elementwise, rng, ["mask_off_by_one"])
    assert off.kind == "mask_off_by_one" and "mask = offsets < n_elements - 1" in off.code
    dropped = inject(elementwise, rng, ["missing_op"])
    assert (
        len(dropped.code.splitlines()) == len(elementwise.splitlines()) - 2 and "was missing" in dropped.note
    )
    epilogue = inject(matmul, rng, ["missing_op"])
    assert epilogue is not None and "epilogue op `acc = " in epilogue.note
    relu = bundled_problems()["linear_relu"].extras["solution"]
    pointer = inject(relu, random.Random(1), ["pointer_as_value"])
    assert pointer.kind == "pointer_as_value" and "bias_ptr[None, :]" in pointer.code
    assert inject("x = 1\n", rng) is None  # nothing applies
    with pytest.raises(ValueError, match="unknown bug kind 'typo'"):
        inject(elementwise, rng, ["typo"])
    a = repair_case(answers["softmax"], random.Random(7))
    b = repair_case(answers["softmax"], random.Random(7))
    assert a == b and a.first != answers["softmax"] and a.fixed.endswith(answers["softmax"])
    assert a.first.split("```python", 1)[0] == answers["softmax"].split("```python", 1)[0]  # same reasoning


@pytest.fixture(scope="module")
def pool():
    from kernelrl.sandbox.pool import SandboxPool

    with SandboxPool(num_workers=2, device="cpu", n_seeds=1, element_budget=4096, run_timeout_s=120) as p:
        yield p


def _config(tmp, name: str) -> CurateConfig:
    return CurateConfig.model_validate(
        {
            "output_dir": str(tmp / name),
            "sources": [{"kind": "generated", "n": 4, "seed": 5, "categories": ["elementwise", "matmul"]}],
            "filters": {"workers": 2},
            "dedup": {"eval_sets": []},
            "teachers": [{"kind": "synthesizer"}],
            "verify": {"device": "cpu", "n_seeds": 1, "element_budget": 4096},
            "output": {"one_shot": False},
            "repair": {"enabled": True},
        }
    )


def test_curation_emits_verified_repair_conversations(pool, tmp_path):
    from datasets import load_from_disk

    seen: list[str] = []
    report = curate(_config(tmp_path, "d"), pool=pool, hook=lambda stage, rec: seen.append(stage))
    rep = report["repair"]
    assert rep["made"] == 4 and rep["kept"] >= 3 and report["funnel"]["repair_rows"] == rep["kept"]
    assert sum(rep["by_kind"].values()) == rep["kept"] and set(rep["by_kind"]) <= set(INJECTORS)
    records = [json.loads(line) for line in (tmp_path / "d.work" / "repair.jsonl").read_text().splitlines()]
    assert len(records) == 4 and seen.count("repair") == 4
    train = load_from_disk(str(tmp_path / "d"))["train"]
    plain = [r for r in train if not r["repair_bug"]]
    repairs = [r for r in train if r["repair_bug"]]
    assert len(plain) == 4 and len(repairs) == rep["kept"]
    by_task = {r["task"]: r for r in records}
    for r in repairs:
        m = r["messages"]
        assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant"]
        answer = next(p for p in plain if p["problem_id"] == r["problem_id"])["messages"][-1]["content"]
        assert m[2]["content"] != answer and m[4]["content"].endswith(answer)
        assert m[3]["content"].startswith("Attempt 1 of 2:\n") and "Fix it and submit" in m[3]["content"]
        rec = by_task[r["problem_id"]]
        assert rec["kind"] == r["repair_bug"]
        assert rec["status"] in FAILURES and rec["fixed_status"] == "ok"
        assert rec["feedback"] in m[3]["content"]
    assert "Repair examples" in (tmp_path / "d" / "README.md").read_text()

    # Resume: the repair turns are not run again.
    seen.clear()
    again = curate(_config(tmp_path, "d"), pool=pool, hook=lambda stage, rec: seen.append(stage))
    assert "repair" not in seen and again["repair"] == rep
    assert load_from_disk(str(tmp_path / "d"))["train"].to_list() == train.to_list()
    _sft_loss_on_the_fix_only(repairs, tmp_path)


def _sft_loss_on_the_fix_only(repairs, tmp_path) -> None:
    """kernelrl.train.sft's data path: curated messages -> prompt/completion -> SFTTrainer's own tokenisation and
    collator. Labels cover the corrected answer and nothing of the buggy attempt or the feedback."""
    from datasets import Dataset
    from multiturn_fixtures import make_tokenizer_and_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from kernelrl.train.recipe_io import as_prompt_completion

    path = make_tokenizer_and_model(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(path)
    rows = Dataset.from_list([{"messages": r["messages"]} for r in repairs[:2]])
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        per_device_train_batch_size=2,
        max_length=16384,
        report_to=[],
        use_cpu=True,
    )
    sft = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        train_dataset=as_prompt_completion(rows),
        processing_class=tok,
    )
    batch = next(iter(sft.get_train_dataloader()))
    for ids, labels, r in zip(batch["input_ids"], batch["labels"], repairs[:2], strict=True):
        trained = tok.decode(ids[labels != -100])
        assert trained.startswith("The feedback points at the bug:") and trained.rstrip().endswith(
            "<|im_end|>"
        )
        assert r["messages"][2]["content"] not in trained and "Attempt 1 of 2" not in trained
        assert r["messages"][4]["content"] in trained
    assert sft.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss.isfinite()
