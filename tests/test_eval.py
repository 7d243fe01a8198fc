"""Checkpoint evaluation: metric formulas by hand, reports from known verdicts, resume, the embedded model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import ray

from kernelrl.cli import main as cli_main
from kernelrl.rewards.compose import Scorer
from kernelrl.sandbox import STATUSES, Verdict, bundled_problems
from kernelrl.sandbox.pool import SandboxPool
from kernelrl.train.eval_metrics import (
    Outcome,
    default_ks,
    fast_p,
    geomean,
    group_metrics,
    mean_pass_at_k,
    pass_at_k,
)
from kernelrl.train.eval_report import build_summary, write_outputs
from kernelrl.train.evaluate import (
    EvalConfig,
    EvalProblem,
    evaluate,
    load_recipe,
    make_config,
    resolve_problems,
)

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "eval" / "bundled_cpu.yaml"
FOUR = "bundled:relu,elementwise_add,gelu,swish"

# ---------------------------------------------------------------- pass@k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 0, 1, 0.0),  # nothing correct
        (5, 5, 1, 1.0),  # everything correct
        (5, 5, 5, 1.0),
        (5, 2, 1, 0.4),  # pass@1 = c/n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (5, 2, 5, 1.0),  # k = n: solved iff any sample is correct
        (5, 0, 5, 0.0),
        (10, 3, 3, 1 - 35 / 120),  # 1 - C(7,3)/C(10,3)
        (4, 3, 2, 1.0),  # n - c < k: every draw of 2 holds a correct one
    ],
)
def test_pass_at_k_by_hand(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 1, 4), (3, 1, 0), (3, 4, 1), (0, 0, 1)])
def test_pass_at_k_refuses_undefined_cases(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_counts_missing_problems_as_zero():
    counts = {"a": (2, 1), "b": (2, 0)}  # problem "c" has no samples
    assert mean_pass_at_k(counts, 3, 1) == pytest.approx(0.5 / 3)
    assert mean_pass_at_k(counts, 3, 2) == pytest.approx(1 / 3)
    assert mean_pass_at_k({"a": (2, 1), "b": (1, 1)}, 2, 2) is None  # b has fewer than k samples
    assert mean_pass_at_k({}, 0, 1) is None


# ---------------------------------------------------------------- fast_p and geomean


def _o(pid: str, status: str = "ok", speedup: float | None = None, sample: int = 0, **kw) -> Outcome:
    return Outcome(
        pid, sample, status, compiled=status not in ("format_error", "compile_error"), speedup=speedup, **kw
    )


def test_fast_p_over_all_problems_with_missing_ones():
    first = {"a": _o("a", speedup=1.2), "b": _o("b", speedup=0.8), "c": _o("c", "mismatch")}  # "d" missing
    assert fast_p(first, 4, 0.0, timed=True) == pytest.approx(2 / 4)  # p=0: correct and timed
    assert fast_p(first, 4, 1.0, timed=True) == pytest.approx(1 / 4)
    assert fast_p(first, 4, 1.5, timed=True) == 0.0
    assert fast_p({"a": _o("a", speedup=1.0)}, 1, 1.0, timed=True) == 0.0  # strictly faster than p


def test_fast_p_is_null_when_nothing_was_timed_and_a_number_when_it_was():
    cpu = {"a": _o("a"), "b": _o("b", "mismatch")}
    assert all(fast_p(cpu, 2, p, timed=False) is None for p in (0, 1, 1.5, 2))
    # A timed run: a correct sample without a time is not fast; nothing correct reads 0, not null.
    assert fast_p({"a": _o("a", speedup=2.5), "b": _o("b")}, 2, 2.0, timed=True) == pytest.approx(0.5)
    assert fast_p({"a": _o("a", "mismatch")}, 1, 0.0, timed=True) == 0.0
    assert fast_p({}, 0, 1.0, timed=True) is None


def test_fast_p_uses_sample_zero_only():
    outs = [
        _o("a", "mismatch", sample=0),
        _o("a", speedup=3.0, sample=1),
        _o("b", speedup=3.0, device="cuda"),
    ]
    m = group_metrics(outs, ["a", "b"], [1, 2])
    assert m.fast_p == {"0": 0.5, "1": 0.5, "1.5": 0.5, "2": 0.5}  # a's correct sample 1 does not count
    assert m.geomean_speedup == pytest.approx(3.0)  # but geomean is over every correct timed sample


def test_geomean():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([0.5, 2.0]) == pytest.approx(1.0)
    assert geomean([]) is None
    with pytest.raises(ValueError):
        geomean([1.0, 0.0])


def test_group_metrics_by_hand_on_cpu():
    outs = [
        _o("a", sample=0),
        _o("a", "mismatch", sample=1),
        _o("b", "hack_detected", sample=0, hacks=("no_kernel", "torch_fallback")),
        _o("b", "format_error", sample=1),
        _o("b", "infra_error", sample=2),
    ]
    m = group_metrics(outs, ["a", "b", "c"], [1, 2])
    assert (m.n_problems, m.n_problems_with_samples, m.n_samples) == (3, 2, 5)
    assert m.compile_rate == pytest.approx(4 / 5)  # infra_error counted compiled by _o; format_error not
    assert m.correctness == pytest.approx(1 / 5)
    assert m.pass_at_k == {"1": pytest.approx((1 / 2) / 3), "2": pytest.approx(1 / 3)}
    assert m.fast_p == {"0": None, "1": None, "1.5": None, "2": None} and m.geomean_speedup is None
    assert m.hack_rate == pytest.approx(1 / 5)
    assert m.hack_counts == {"no_kernel": 1, "torch_fallback": 1}
    assert m.hack_rate_by_kind["no_kernel"] == pytest.approx(1 / 5)
    assert m.verdicts == {"ok": 1, "mismatch": 1, "hack_detected": 1, "format_error": 1, "infra_error": 1}
    assert m.n_correct_untimed == 1


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 4]
    assert default_ks(20) == [1, 5, 10, 20]


# ---------------------------------------------------------------- problems and reports without a sandbox


def test_problem_sets_and_categories(tmp_path):
    b = bundled_problems()
    (tmp_path / "level1").mkdir()
    (tmp_path / "level2").mkdir()
    (tmp_path / "level1" / "19_ReLU.py").write_text(b["relu"].source)
    (tmp_path / "level2" / "5_GELU.py").write_text(b["gelu"].source)
    (tmp_path / "level2" / "helper.py").write_text("x = 1\n")  # not a problem: skipped
    kb = resolve_problems(str(tmp_path))
    assert [(p.name, p.level, p.category) for p in kb] == [
        ("19_ReLU", "level1", "level1"),
        ("5_GELU", "level2", "level2"),
    ]
    bundled = resolve_problems("bundled:relu,matmul")
    assert [(p.name, p.category, p.level) for p in bundled] == [
        ("relu", "activation", None),
        ("matmul", "matmul", None),
    ]
    assert len(resolve_problems("bundled")) == len(b)
    gen = resolve_problems("generated:3", seed=1)
    assert len(gen) == 3 and all(p.level is None and p.category for p in gen)
    assert [p.id for p in gen] == [p.id for p in resolve_problems("generated:3", seed=1)]


def _row(
    model: str, ep: EvalProblem, sample: int, status: str, speedup: float | None = None, hacks=()
) -> dict:
    v = Verdict(
        status,
        backend="triton",
        compiled=status != "format_error",
        correct=status == "ok",
        hacks=list(hacks),
        speedup=speedup,
        device="cuda",
    )
    return {
        "model": model,
        "problem_id": ep.id,
        "problem": ep.name,
        "level": ep.level,
        "category": ep.category,
        "sample": sample,
        "completion": "",
        "reward": 1.0 if status == "ok" else 0.0,
        "verdict": v.to_dict(),
    }


def test_gpu_report_with_two_checkpoints(tmp_path):
    """Timed verdicts (as a GPU run writes them): fast_p and geomean by hand, every plot drawn."""
    problems = resolve_problems("bundled:relu,gelu,softmax,matmul")
    relu, gelu, softmax, matmul = problems
    rows = [
        _row("base", relu, 0, "ok", 2.0),
        _row("base", relu, 1, "ok", 0.5),
        _row("base", gelu, 0, "mismatch"),
        _row("base", gelu, 1, "ok", 1.2),
        _row("base", softmax, 0, "hack_detected", hacks=["side_stream"]),
        _row("base", softmax, 1, "format_error"),
        _row("tuned", relu, 0, "ok", 3.0),
        _row("tuned", relu, 1, "ok", 3.0),
        _row("tuned", gelu, 0, "ok", 1.2),
        _row("tuned", gelu, 1, "ok", 1.2),
        _row("tuned", softmax, 0, "ok", 0.9),
        _row("tuned", softmax, 1, "mismatch"),
    ]  # matmul: no sample from either model
    config = EvalConfig(
        models=["base", "tuned"], problems="bundled:relu,gelu,softmax,matmul", samples=2, out=str(tmp_path)
    )
    summary = build_summary(config, problems, rows, {"base": "model", "tuned": "model"}, {})
    base, tuned = summary["models"]["base"]["overall"], summary["models"]["tuned"]["overall"]
    assert base["fast_p"] == {"0": 0.25, "1": 0.25, "1.5": 0.25, "2": 0.0}  # only relu's sample 0 is correct
    assert tuned["fast_p"] == {"0": 0.75, "1": 0.5, "1.5": 0.25, "2": 0.25}
    assert base["geomean_speedup"] == pytest.approx((2.0 * 0.5 * 1.2) ** (1 / 3))
    assert tuned["geomean_speedup"] == pytest.approx(
        math.exp((2 * math.log(3) + 2 * math.log(1.2) + math.log(0.9)) / 5)
    )
    assert base["pass_at_k"] == {"1": pytest.approx((1 + 0.5) / 4), "2": pytest.approx(2 / 4)}
    assert base["hack_counts"] == {"side_stream": 1}
    # A timed run with nothing correct in a category reads 0, not null.
    assert summary["models"]["base"]["by_category"]["normalization"]["fast_p"]["1"] == 0.0
    assert summary["models"]["base"]["by_category"]["matmul"]["correctness"] is None  # no samples at all
    assert summary["timed"] is True
    write_outputs(tmp_path, summary, rows)
    for png in ("speedup.png", "comparison.png", "correctness_by_category.png"):
        assert (tmp_path / png).stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert (
        "![checkpoint comparison](comparison.png)" in report
        and "![speedup distribution](speedup.png)" in report
    )
    assert "| `tuned` | 4 | 6 | 100.0% | 83.3% | 62.5% | 75.0% | 75.0% | 50.0% | 25.0% | 25.0% |" in report
    assert "| matmul | matmul | missing | missing |" in report


# ---------------------------------------------------------------- end to end through the sandbox

HACK = """I'll just use PyTorch's own GELU.

```python
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return F.gelu(x)
```
"""


@pytest.fixture(scope="module")
def scorer():
    """One warm pool for the module; `submitted` counts the pairs sent to the sandbox."""
    with SandboxPool(num_workers=2, device="cpu", run_timeout_s=60) as pool:
        s = Scorer(pool=pool)
        s.submitted = 0
        submit = s.submit

        def counting(problems, completions):
            s.submitted += len(completions)
            return submit(problems, completions)

        s.submit = counting
        yield s
    ray.shutdown()


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """relu: correct, wrong; elementwise_add: wrong, correct; gelu: torch-only hack, prose only; swish: none."""
    b = bundled_problems()
    path = tmp_path_factory.mktemp("completions") / "known.jsonl"
    rows = [
        {"problem": "relu", "completion": b["relu"].extras["solution"]},
        {"problem": "relu", "completion": b["relu"].extras["wrong"]},
        {
            "problem_id": b["elementwise_add"].id,
            "completion": b["elementwise_add"].extras["wrong"],
            "sample": 0,
        },
        {"problem": "elementwise_add", "completion": b["elementwise_add"].extras["solution"], "sample": 1},
        {"problem": "gelu", "completion": HACK},
        {"problem": "gelu", "completion": "A Triton kernel would load, apply erf and store."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_known_completions_give_the_known_numbers(scorer, known, tmp_path):
    config = EvalConfig(completions=[str(known)], problems=FOUR, out=str(tmp_path))
    summary = evaluate(config, scorer=scorer, progress=False)
    m = summary["models"]["known"]
    o = m["overall"]
    assert o["verdicts"] == {"ok": 2, "mismatch": 2, "hack_detected": 1, "format_error": 1}
    assert (o["n_problems"], o["n_problems_with_samples"], o["n_samples"]) == (4, 3, 6)
    assert o["compile_rate"] == pytest.approx(5 / 6)  # all but the prose-only answer
    assert o["correctness"] == pytest.approx(2 / 6)
    assert o["pass_at_k"] == {"1": pytest.approx((0.5 + 0.5) / 4), "2": pytest.approx(2 / 4)}
    assert o["fast_p"] == {"0": None, "1": None, "1.5": None, "2": None}  # CPU: nothing timed
    assert o["geomean_speedup"] is None and o["n_correct_untimed"] == 2
    assert o["hack_rate"] == pytest.approx(1 / 6) and "no_kernel" in o["hack_counts"]
    act, elem = m["by_category"]["activation"], m["by_category"]["elementwise"]
    assert (act["n_problems"], act["n_samples"], act["correctness"]) == (3, 4, 0.25)
    assert act["pass_at_k"]["1"] == pytest.approx(0.5 / 3)
    assert (elem["pass_at_k"]["1"], elem["pass_at_k"]["2"]) == (0.5, 1.0)
    assert m["by_level"] == {} and summary["pass_k"] == [1, 2] and summary["timed"] is False

    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["verdict"]["status"] for r in rows} <= set(STATUSES)
    assert {(r["problem"], r["sample"]) for r in rows} == {
        (p, i) for p in ("relu", "elementwise_add", "gelu") for i in (0, 1)
    }
    assert all(r["model"] == "known" and r["category"] for r in rows)
    report = (tmp_path / "report.md").read_text()
    assert "| `known` | 4 | 6 | 83.3% | 33.3% | 25.0% | 50.0% | — | — | — | — | — | 16.7% |" in report
    assert "Nothing was timed" in report and "| swish | activation | missing |" in report
    assert (tmp_path / "correctness_by_category.png").is_file() and not (tmp_path / "speedup.png").exists()

    # Resume: a second run finds every sample in results.jsonl and sends nothing to the sandbox.
    before = scorer.submitted
    again = evaluate(config, scorer=scorer, progress=False)
    assert scorer.submitted == before and again["models"]["known"]["run"]["skipped"] == 6
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6
    assert again["models"]["known"]["overall"] == o

    # A crash after three rows, mid-line: the rerun scores exactly the three missing samples.
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    resumed = evaluate(config, scorer=scorer, progress=False)
    assert scorer.submitted == before + 3
    assert resumed["models"]["known"]["overall"] == o


def test_cli_rereports_a_finished_run_without_sandbox_work(scorer, known, tmp_path, capsys):
    evaluate(
        EvalConfig(completions=[str(known)], problems=FOUR, out=str(tmp_path)), scorer=scorer, progress=False
    )
    (tmp_path / "report.md").unlink()
    rc = cli_main(
        ["eval", "--completions", str(known), "--problems", FOUR, "--out", str(tmp_path), "--quiet"]
    )
    assert rc == 0
    assert "known" in capsys.readouterr().out and (tmp_path / "report.md").is_file()


def test_embedded_model_end_to_end(scorer, tmp_path):
    from kernelrl.data_pipeline.embedded_model import EmbeddedModelError, embedded_model_path

    try:
        embedded_model_path()
    except EmbeddedModelError as e:
        pytest.skip(f"embedded model unavailable: {e}")
    config = EvalConfig(
        models=["embedded"],
        problems="bundled:relu,gelu",
        samples=1,
        max_new_tokens=8,
        temperature=0,
        out=str(tmp_path),
    )
    summary = evaluate(config, scorer=scorer, progress=False)
    m = summary["models"]["embedded"]
    assert m["source"] == "model" and m["run"]["scored"] == 2 and m["run"]["generation_s"] > 0
    assert m["overall"]["n_samples"] == 2 and sum(m["overall"]["verdicts"].values()) == 2
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["problem"] for r in rows) == ["gelu", "relu"] and all(r["sample"] == 0 for r in rows)
    assert all(isinstance(r["completion"], str) and r["verdict"]["status"] in STATUSES for r in rows)
    again = evaluate(config, scorer=scorer, progress=False)  # resumed: no generation, no scoring
    run = again["models"]["embedded"]["run"]
    assert (run["scored"], run["skipped"], run["generation_s"]) == (0, 2, 0.0)


# ---------------------------------------------------------------- recipes and usage errors


def test_example_recipe_is_valid():
    config = make_config(load_recipe(RECIPE), str(RECIPE))
    assert config.models == ["embedded"] and config.problems == "bundled" and config.device == "cpu"


@pytest.mark.parametrize(
    ("args", "lines", "message"),
    [
        (["--problems", "bundled:relu"], None, "nothing to evaluate"),
        (
            ["--problems", "bundled:relu", "--model", "/no/such/ckpt"],
            None,
            "model path /no/such/ckpt does not exist",
        ),
        (
            ["--problems", "bundled:nope"],
            [{"problem": "relu", "completion": "x"}],
            "no bundled problem 'nope'",
        ),
        (["--problems", "generated:x"], [{"problem": "relu", "completion": "x"}], "generated:N"),
        (["--problems", "/no/such/dir"], [{"problem": "relu", "completion": "x"}], "not a directory"),
        (
            ["--problems", "bundled:relu"],
            [{"problem": "softmax", "completion": "x"}],
            ":1: unknown problem 'softmax'",
        ),
        (
            ["--problems", "bundled:relu"],
            [{"problem": "relu"}],
            ":1: expected an object with a string 'completion'",
        ),
        (["--problems", "bundled:relu"], ["not json"], ":1: not JSON"),
        (
            ["--problems", "bundled:relu", "--samples", "0"],
            [{"problem": "relu", "completion": "x"}],
            "samples",
        ),
    ],
)
def test_usage_errors_are_one_clear_line(tmp_path, capsys, args, lines, message):
    argv = ["eval", "--out", str(tmp_path / "out"), *args]
    if lines is not None:
        path = tmp_path / "c.jsonl"
        path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
        argv += ["--completions", str(path)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress output
    assert err.startswith("kernelrl: error: ") and message in err


def test_bad_recipe_key_and_missing_completions(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("models: [embedded]\nout: x\nbogus: 1\n")
    assert cli_main(["eval", "--config", str(recipe)]) == 2
    assert "bogus" in capsys.readouterr().err
    assert cli_main(["eval", "--completions", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
