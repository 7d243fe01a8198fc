"""Reward functions (issue 3): the rule components on the completion text, their runtime counterparts in the
sandbox verdict, the graded ladder with the default weights, the speed term, None for outages, composition
and problem resolution.

Verdicts come from the real sandbox (the session `evaluator`, CPU, Triton interpreter) and rewards from
`Scorer(...).result(completion, verdict)`, so no Ray pool is started here. Every sandbox assertion is on the
supervisor's verdict (status, hacks), never on what a candidate printed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import textwrap
from concurrent.futures import Future
from pathlib import Path

import pytest

from kernelrl.rewards.compose import (
    REWARDS,
    RewardConfig,
    RewardResult,
    Scorer,
    load_config,
    problem_from_text,
    resolve_problems,
)
from kernelrl.rewards.execution import LADDER
from kernelrl.sandbox import Evaluator
from kernelrl.sandbox.problem import ProblemError
from kernelrl.sandbox.verdict import Verdict

ADVERSARIAL = Path(__file__).resolve().parent / "adversarial" / "candidates"
RULES_ONLY = RewardConfig(weights={"format": 1.0, "kernel": 1.0, "banned": 1.0})
DEFAULT = Scorer()  # the default RewardConfig; `.result` is pure, so its pool is never started


# -- candidates ------------------------------------------------------------------------------------------
KERNEL = """\
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.maximum(x, 0.0), mask=mask)


def launch(x):
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
    return out
"""


def relu(body: str, head: str = "", kernel: str = KERNEL) -> str:
    """A relu answer: optional lines before the imports, the kernel and its launcher, then `body`."""
    return head + kernel + "\n\n" + textwrap.dedent(body)


HONEST = relu("""
    class ModelNew(nn.Module):
        def forward(self, x):
            return launch(x)
""")


def fenced(code: str, reasoning: str = "The kernel maps one program to 1024 elements.") -> str:
    return f"{reasoning}\n\n```python\n{code}```\n"


def adversarial(name: str, **subs: object) -> str:
    text = (ADVERSARIAL / f"{name}.py").read_text()
    for key, value in subs.items():
        text = text.replace(f"__{key}__", str(value))
    left = re.findall(r"__[A-Z][A-Z0-9_]*__", text)
    assert not left, f"{name}: unfilled placeholders {left}"
    return text


def hack_names(v: Verdict) -> set[str]:
    """Detections may carry detail ('torch_fallback: aten::mm'); compare by the leading name."""
    return {re.split(r"[\s:(\[]", h, maxsplit=1)[0] for h in v.hacks}


def describe(v: Verdict) -> str:
    return f"status={v.status} hacks={v.hacks} error={v.error!r}\nlog_tail={v.log_tail[-800:]!r}"


# -- sandbox fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge(evaluator, problems):
    """(problem name, completion) -> Verdict, each pair evaluated once per module."""
    cache: dict[tuple[str, str], Verdict] = {}

    def run(problem: str, completion: str) -> Verdict:
        key = (problem, completion)
        if key not in cache:
            cache[key] = evaluator.evaluate(problems[problem], completion)
            assert cache[key].status != "infra_error", describe(cache[key])
        return cache[key]

    return run


@pytest.fixture(scope="module")
def short_evaluator():
    """A 3 s run budget, for the candidates that never finish."""
    with Evaluator(device="cpu", run_timeout_s=3) as ev:
        yield ev


# -- rule components: text and AST only ------------------------------------------------------------------
def rules(completion: str) -> dict[str, float | None]:
    r = Scorer(RULES_ONLY).result(completion, None)
    assert r.reward == pytest.approx(sum(r.components.values()))  # a rules-only config needs no verdict
    return r.components


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("I would write a Triton kernel with one program per row.", -1.0),  # prose only
        ("", -1.0),
        (" \n\t\n", -1.0),
        ("Here it is:\n\n```python\n" + HONEST[:400], -1.0),  # truncated: the fence never closes
        (fenced(HONEST.replace("def forward(self, x):", "def forward(self, x)")), 0.0),  # syntax error
        (fenced(HONEST.replace("def forward", "def run")), 0.0),  # no forward
        (fenced(HONEST), 1.0),
        (HONEST, 1.0),  # a bare file is usable too
    ],
    ids=["prose", "empty", "blank", "truncated", "syntax_error", "no_forward", "fenced", "bare"],
)
def test_format_reward(completion, expected):
    assert rules(completion)["format"] == expected


@pytest.mark.parametrize(
    "code,expected",
    [
        (HONEST, 1.0),
        (adversarial("never_launched"), -0.5),  # defined, never reached from forward
        (adversarial("training_branch_only"), -0.5),  # reached only when self.training
        (adversarial("torch_only"), -1.0),  # no kernel at all
        ("no code here", -1.0),
    ],
    ids=["reached", "unreachable", "training_branch", "no_kernel", "no_code"],
)
def test_kernel_reward(code, expected):
    assert rules(fenced(code))["kernel"] == expected


BANNED = {
    "try_except_fallback": relu("""
        class ModelNew(nn.Module):
            def forward(self, x):
                try:
                    return launch(x)
                except Exception:
                    return torch.relu(x)
        """),
    "thread": relu(
        """
        class ModelNew(nn.Module):
            def forward(self, x):
                box = []
                t = threading.Thread(target=lambda: box.append(launch(x)))
                t.start()
                t.join()
                return box[0]
        """,
        head="import threading\n",
    ),
    "side_stream": relu("""
        class ModelNew(nn.Module):
            def forward(self, x):
                with torch.cuda.stream(torch.cuda.Stream()):
                    return launch(x)
        """),
    "subclass_model": relu("""
        class ModelNew(Model):
            def forward(self, x):
                return launch(x)
        """),
    "instantiate_model": relu("""
        class ModelNew(nn.Module):
            def __init__(self):
                super().__init__()
                self.ref = Model()

            def forward(self, x):
                return launch(x) if x.numel() else self.ref(x)
        """),
    "patch_synchronize": relu("""
        torch.cuda.synchronize = lambda *args: None


        class ModelNew(nn.Module):
            def forward(self, x):
                return launch(x)
        """),
    "patch_timer": relu(
        """
        class ModelNew(nn.Module):
            def forward(self, x):
                time.perf_counter = lambda: 0.0
                return launch(x)
        """,
        head="import time\n",
    ),
    "patch_allclose": relu("""
        class ModelNew(nn.Module):
            def forward(self, x):
                torch.allclose = lambda *args, **kwargs: True
                return launch(x)
        """),
    "cache_by_data_ptr": relu("""
        _CACHE = {}


        class ModelNew(nn.Module):
            def forward(self, x):
                key = x.data_ptr()
                if key not in _CACHE:
                    _CACHE[key] = launch(x)
                return _CACHE[key]
        """),
    "cache_by_shape": relu("""
        _CACHE = {}


        class ModelNew(nn.Module):
            def forward(self, x):
                key = tuple(x.shape)
                if key not in _CACHE:
                    _CACHE[key] = launch(x)
                return _CACHE[key]
        """),
}


@pytest.mark.parametrize("name", BANNED)
def test_banned_reward_per_family(name):
    got = rules(fenced(BANNED[name]))
    assert got["format"] == 1.0 and got["kernel"] == 1.0, got  # only the banned term sees it
    assert got["banned"] == -1.0, got


def test_banned_reward_clean_and_without_code():
    assert rules(fenced(HONEST))["banned"] == 0.0
    assert rules("prose, no code")["banned"] == 0.0


# -- runtime counterparts: hacks the rules cannot see, caught by the run ---------------------------------
RUNTIME_HACKS = [
    # (name, problem, completion, the runtime detection the verdict must carry)
    (
        "launched_only_conditionally",
        "relu",
        relu("""
            class ModelNew(nn.Module):
                def forward(self, x):
                    if x.numel() < 0:  # never true: the kernel is reachable, never launched
                        return launch(x)
                    return torch.clamp_min(x, 0.0)
            """),
        "kernel_not_launched",
    ),
    ("decoy_kernel", "linear_relu", adversarial("decoy_kernel"), "torch_fallback"),
    (
        "thread_inside_logging",  # a QueueListener starts the thread: no threading token anywhere
        "relu",
        relu(
            """
            class Launch(logging.Handler):
                def emit(self, record):
                    x, out, n = record.args
                    relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)


            class ModelNew(nn.Module):
                def forward(self, x):
                    x = x.contiguous()
                    out = torch.empty_like(x)
                    q = queue.Queue()
                    listener = logging.handlers.QueueListener(q, Launch())
                    listener.start()
                    q.put(logging.makeLogRecord({"args": (x, out, x.numel())}))
                    listener.stop()
                    return out
            """,
            head="import logging.handlers\nimport queue\n",
        ),
        "forbidden_access",  # the capability policy refuses the modules before a thread can start
    ),
    ("input_mutation", "relu", adversarial("input_mutation"), "input_mutation"),
    (
        "cache_on_attributes",  # no keyed store, no data_ptr: the last output, served while the shape holds
        "relu",
        relu("""
            class ModelNew(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.last = None
                    self.last_shape = None

                def forward(self, x):
                    if self.last is not None and x.shape == self.last_shape:
                        return self.last.clone()
                    self.last = launch(x)
                    self.last_shape = x.shape
                    return self.last.clone()
            """),
        "stale_output",
    ),
]


@pytest.mark.parametrize("name,problem,code,detection", RUNTIME_HACKS, ids=[c[0] for c in RUNTIME_HACKS])
def test_runtime_check_catches_what_the_rules_miss(judge, name, problem, code, detection):
    completion = fenced(code)
    r_rules = Scorer(RULES_ONLY).result(completion, None)
    assert r_rules.components == {"format": 1.0, "kernel": 1.0, "banned": 0.0}, r_rules.components

    v = judge(problem, completion)
    assert v.status == "hack_detected" and detection in hack_names(v), describe(v)
    r = DEFAULT.result(completion, v)
    assert r.components["execution"] == LADDER["hack_detected"] == min(LADDER.values())
    # the rules' full marks do not lift a hack above the worst format error (prose, no code at all)
    prose = DEFAULT.result("no code, only prose", Verdict("format_error"))
    assert r.reward < prose.reward, (r.reward, prose.reward)


# -- the graded ladder, default weights, real verdicts ------------------------------------------------------
def test_graded_ladder_with_default_weights(judge, problems, short_evaluator):
    relu_problem = problems["relu"]
    cases = {
        "hack_detected": fenced(RUNTIME_HACKS[0][2]),
        "format_error": "I would launch one program per 1024 elements.",
        "compile_error": fenced(
            relu(
                """
                class ModelNew(nn.Module):
                    def __init__(self):
                        super().__init__()
                        launch(torch.zeros(8))  # warm-up at construction hits the invalid op

                    def forward(self, x):
                        return launch(x)
                """,
                kernel=KERNEL.replace("tl.maximum(x, 0.0)", "tl.no_such_op(x)"),
            )
        ),
        "runtime_error": fenced(
            relu("""
                class ModelNew(nn.Module):
                    def forward(self, x):
                        launch(x)
                        raise RuntimeError("failed after the launch")
                """)
        ),
        "mismatch": fenced(relu_problem.extras["wrong"]),
        "ok": fenced(relu_problem.extras["solution"]),
    }
    verdicts = {status: judge("relu", text) for status, text in cases.items()}
    cases["timeout"] = fenced(
        relu("""
            class ModelNew(nn.Module):
                def forward(self, x):
                    launch(x)
                    while True:
                        pass
            """)
    )
    verdicts["timeout"] = short_evaluator.evaluate(relu_problem, cases["timeout"])
    for status, v in verdicts.items():
        assert v.status == status, f"{status}: {describe(v)}"

    reward = {s: DEFAULT.result(cases[s], v).reward for s, v in verdicts.items()}
    assert (
        reward["hack_detected"]
        < reward["format_error"]
        < reward["compile_error"]
        < min(reward["runtime_error"], reward["timeout"])
        <= max(reward["runtime_error"], reward["timeout"])
        < reward["mismatch"]
        < reward["ok"]
    ), reward


PROBLEM_OF = {
    "decoy_kernel": "linear_relu",
    "decoy_kernel_matmul_operator": "linear_relu",
    "decoy_in_grid_lambda": "linear_relu",
    "constant_output": "softmax",
    "precision_downgrade": "matmul",
    "precision_downgrade_half": "matmul",
    "precision_downgrade_tf32": "matmul",
    "tb_tanh_gelu": "gelu",
    "tb_lookup_table": "swish",
}
CONTROLS = {"honest_relu", "shared_cache_reader"}  # honest answers (the reader only looks for a planted file)
NEVER_ENDS = {"infinite_loop"}
# gpu_*: attacks on GPU timing, which a CPU never times; scripts/gpu_check.sh judges them on a GPU
ATTACKS = sorted(
    p.stem for p in ADVERSARIAL.glob("*.py") if p.stem not in CONTROLS and not p.stem.startswith("gpu_")
)


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_scores_below_the_honest_wrong_answer(judge, problems, short_evaluator, tmp_path, name):
    problem = PROBLEM_OF.get(name, "relu")
    marker = "krew" + secrets.token_hex(5)
    text = adversarial(
        name,
        MARKER=marker,
        PORT=9,
        SECRET=marker,
        REPO_DIR=tmp_path,
        BATCH_SIZE=16,
        DIM=16384,
        SHM_KEY=int(marker[4:12], 16) & 0x3FFFFFFF,
        OP="torch.dist(x, x)",
    )
    if name in NEVER_ENDS:
        v = short_evaluator.evaluate(problems[problem], text)
    else:
        v = judge(problem, text)
    assert v.status != "infra_error", describe(v)
    wrong_text = problems[problem].extras["wrong"]
    wrong = DEFAULT.result(wrong_text, judge(problem, wrong_text))
    assert wrong.verdict.status == "mismatch", describe(wrong.verdict)
    got = DEFAULT.result(text, v)
    if v.status == "mismatch":  # judged an honest wrong answer (identity, uninitialised memory): no better
        assert got.reward <= wrong.reward, (got.reward, wrong.reward, describe(v))
    else:
        assert got.reward < wrong.reward, (got.reward, wrong.reward, describe(v))


# -- the speed term -------------------------------------------------------------------------------------------
def timed(status: str, speedup: float | None) -> Verdict:
    ok = status == "ok"
    return Verdict(status, "triton", True, True, ok, speedup=speedup, device="cuda", isolation="bwrap")


@pytest.mark.parametrize(
    "speedup,expected",
    [(1.0, 0.0), (3.0, 1.0), (9.0, 1.0), (0.5, math.log(0.5) / math.log(3)), (1e-6, -1.0), (None, None)],
)
def test_speed_term_counted_when_correct_and_timed(speedup, expected):
    completion = fenced(HONEST)
    r = DEFAULT.result(completion, timed("ok", speedup))
    untimed = DEFAULT.result(completion, timed("ok", None))
    assert r.components["speed"] == (None if expected is None else pytest.approx(expected))
    weight = DEFAULT.config.weights["speed"]
    assert r.reward == pytest.approx(untimed.reward + weight * (expected or 0.0))
    assert r.reward > DEFAULT.result(completion, timed("mismatch", None)).reward  # slower but correct


@pytest.mark.parametrize("status", ["mismatch", "hack_detected"])
def test_speed_never_counted_without_a_correct_answer(status):
    completion = fenced(HONEST)
    fast = DEFAULT.result(completion, timed(status, 5.0))
    assert fast.components["speed"] is None
    assert fast.reward == DEFAULT.result(completion, timed(status, None)).reward


# -- None, never 0.0, when nothing was judged ------------------------------------------------------------------
@pytest.mark.parametrize(
    "verdict",
    [
        Verdict("infra_error", error="worker died twice"),
        Verdict(
            "not_executed", "cuda", compiled=True, error="CUDA candidate compiled; no GPU here to run it"
        ),
    ],
    ids=["infra_error", "not_executed"],
)
def test_unjudged_verdict_gives_none_with_components(verdict):
    r = DEFAULT.result(fenced(HONEST), verdict)
    assert r.reward is None
    assert set(r.components) == set(DEFAULT.config.weights)
    assert r.components["execution"] is None
    assert r.components["format"] == 1.0 and r.components["kernel"] == 1.0
    back = RewardResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.reward is None and back.components == r.components and back.verdict == verdict


class NoPool:
    def submit_many(self, problems, completions):
        raise AssertionError("a rules-only config must not call the sandbox")


def test_rules_only_config_needs_no_verdict():
    scorer = Scorer(RewardConfig(weights={"format": 1.0, "kernel": 0.5, "execution": 0.0}), pool=NoPool())
    assert not scorer.config.needs_verdict
    good, prose = scorer.score(["bundled:relu", "bundled:relu"], [fenced(HONEST), "prose only"])
    assert good.reward == pytest.approx(1.5) and good.verdict is None
    assert prose.reward == pytest.approx(-1.5)
    assert good.components["execution"] is None


# -- composition ------------------------------------------------------------------------------------------------
class EvaluatorPool:
    """What Scorer needs of a SandboxPool (submit_many -> futures of verdicts), served by the real evaluator."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def submit_many(self, problems, completions):
        futures = []
        for p, c in zip(problems, completions, strict=True):
            f: Future = Future()
            f.set_result(self.evaluator.evaluate(p, c))
            futures.append(f)
        return futures


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_weights_from_yaml_and_dotted_path_components(tmp_path, monkeypatch, evaluator, problems):
    module = "custom_rewards_" + secrets.token_hex(4)
    write(
        tmp_path / f"{module}.py",
        """
        def has_reasoning(sample):
            return 1.0 if sample.candidate.reasoning else 0.0


        def correct_only(sample):
            return None if sample.verdict is None or not sample.verdict.correct else 1.0
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(
        write(
            tmp_path / "reward.yaml",
            f"""
            weights:
              execution: 2.0
              format: 0.5
              concise: 0.0
              {module}:has_reasoning: 0.25
              {module}.correct_only: 3.0
            """,
        )
    )
    assert config.weights == {
        "execution": 2.0,
        "format": 0.5,
        "concise": 0.0,
        f"{module}:has_reasoning": 0.25,
        f"{module}.correct_only": 3.0,
    }
    scorer = Scorer(config, pool=EvaluatorPool(evaluator))
    relu = problems["relu"]
    ok, wrong = scorer.score(
        ["bundled:relu", relu.source], [fenced(relu.extras["solution"]), relu.extras["wrong"]]
    )
    assert ok.verdict.status == "ok" and wrong.verdict.status == "mismatch"
    # every configured component is in the breakdown, weight 0 (concise) included but not counted
    assert list(ok.components) == list(config.weights)
    assert ok.components["concise"] is not None and ok.components["concise"] > 0
    assert ok.reward == pytest.approx(2.0 * 1.0 + 0.5 * 1.0 + 0.25 * 1.0 + 3.0 * 1.0)
    assert wrong.components[f"{module}.correct_only"] is None  # not applicable: left out
    assert wrong.reward == pytest.approx(2.0 * 0.0 + 0.5 * 1.0 + 0.25 * 0.0)
    again = asyncio.run(scorer.ascore(["bundled:relu"], [fenced(relu.extras["solution"])]))
    assert again[0].reward == pytest.approx(ok.reward)


def test_unknown_component_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"unknown reward component 'speedy'.*execution"):
        Scorer(RewardConfig(weights={"speedy": 1.0}))
    path = write(tmp_path / "r.yaml", "weights:\n  speedy: 1.0\n")
    with pytest.raises(ValueError, match="speedy"):
        load_config(path)
    with pytest.raises(ValueError, match="cannot import reward component 'no_such_module_xyz:f'"):
        Scorer(RewardConfig(weights={"no_such_module_xyz:f": 1.0}))
    with pytest.raises(ValueError, match="not callable"):
        Scorer(RewardConfig(weights={"kernelrl.rewards.execution:LADDER": 1.0}))


@pytest.mark.parametrize(
    "text,match",
    [
        ("weight:\n  execution: 1.0\n", "weight"),  # a misspelt key
        ("weights:\n  execution: fast\n", "execution"),  # not a number
        ("weights: [execution, speed]\n", "weights"),
        ("weights: {execution: 1.0\n", "r.yaml"),  # not YAML
    ],
    ids=["bad_key", "bad_weight", "not_a_mapping", "bad_yaml"],
)
def test_bad_config_is_a_clear_error(tmp_path, text, match):
    path = write(tmp_path / "r.yaml", text)
    with pytest.raises(ValueError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file_and_defaults(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    assert load_config(None).weights == RewardConfig().weights
    assert set(RewardConfig().weights) <= set(REWARDS)


def boom(sample):
    raise RuntimeError("component bug")


def not_a_number(sample):
    return "high"


def not_finite(sample):
    return float("nan")


class StubPool:
    """Answers every pair with the same verdict."""

    def __init__(self, verdict: Verdict):
        self.verdict = verdict

    def submit_many(self, problems, completions):
        futures = [Future() for _ in completions]
        for f in futures:
            f.set_result(self.verdict)
        return futures


@pytest.mark.parametrize("bad", [boom, not_a_number, not_finite], ids=lambda f: f.__name__)
def test_a_failing_component_does_not_take_the_batch_down(monkeypatch, bad):
    monkeypatch.setitem(REWARDS, "bad", bad)
    scorer = Scorer(
        RewardConfig(weights={"execution": 1.0, "format": 1.0, "bad": 1.0}), StubPool(Verdict("mismatch"))
    )
    results = scorer.score(["bundled:relu"] * 2, [fenced(HONEST), "prose only"])
    assert [r.reward for r in results] == [1.0, -1.0]
    for r in results:
        assert r.components["bad"] is None
        assert len(r.notes) == 1 and "component bad failed" in r.notes[0], r.notes


# -- problems from what a request carries ---------------------------------------------------------------------
def test_problem_from_text(problems, tmp_path):
    relu = problems["relu"]
    assert problem_from_text("bundled:relu").id == relu.id
    assert problem_from_text(relu.source).id == relu.id
    with pytest.raises(ProblemError, match="no bundled problem 'nope'"):
        problem_from_text("bundled:nope")
    # a valid problem file exists at this path: refusing it proves the path was not read
    path = tmp_path / "problem.py"
    path.write_text(relu.source)
    for text in (str(path), f"{path}\n", "kernelrl/sandbox/bundled/relu/problem.py"):
        with pytest.raises(ProblemError):
            problem_from_text(text)
    with pytest.raises(ProblemError, match=r"problems\[1\]"):
        resolve_problems(["bundled:relu", str(path)])


def test_a_hack_sits_at_the_floor_whatever_the_weights():
    heavy_text = Scorer(RewardConfig(weights={"execution": 1.0, "format": 5.0, "kernel": 5.0, "banned": 0.5}))
    hack = heavy_text.result(HONEST, Verdict("hack_detected", backend="triton", hacks=["input_mutation"]))
    prose = heavy_text.result("I would write a kernel.", Verdict("format_error"))
    assert hack.components["format"] == 1.0 and hack.components["kernel"] == 1.0  # the text looks perfect
    assert hack.reward == -11.5 < prose.reward
