"""Checkpoint-evaluation metrics as pure functions over per-sample outcomes, so they can be tested by hand.

Conventions (also in every report):
- A sample is *correct* when its verdict is ``ok``: every numerical check passed and no hack was detected.
  A correct-but-hacked sample is a hack, never a success.
- N is every problem of the evaluation set; a problem with no samples counts as a failure (KernelBench).
- pass@k uses the unbiased estimator 1 - C(n-c, k)/C(n, k) per problem, averaged over all N problems.
- fast_p looks at sample 0 of each problem only (KernelBench scores one sample per problem; with k samples,
  sample 0 is the one drawn first, so fast_p does not grow with k).
- sol_fraction = speed-of-light time / measured time (kernelrl.perf.roofline: the problem's roofline bound on
  the GPU that timed it); the group figure is its geometric mean over correct timed samples. 1 is the
  hardware limit.
- Speed metrics are None (never 0) where nothing was timed: fast_p when the run timed nothing (a CPU run: the
  Triton interpreter is never timed), geomean when no correct sample was timed. In a timed (GPU) run a wrong
  or missing answer is simply not fast, so fast_p is a number there even for a group with nothing correct.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FAST_P = (0.0, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class Outcome:
    """What the metrics need from one scored sample."""

    problem_id: str
    sample: int
    status: str
    compiled: bool = False
    speedup: float | None = None
    device: str = "cpu"
    hacks: tuple[str, ...] = ()
    reward: float | None = None
    sol_fraction: float | None = None

    @property
    def correct(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Outcome:
        """From a results.jsonl row (`verdict` is the sandbox's Verdict dict)."""
        v = row.get("verdict") or {"status": "infra_error"}
        return cls(
            problem_id=row["problem_id"],
            sample=int(row["sample"]),
            status=v["status"],
            compiled=bool(v.get("compiled")),
            speedup=v.get("speedup"),
            device=v.get("device", "cpu"),
            hacks=tuple(v.get("hacks") or ()),
            reward=row.get("reward"),
            sol_fraction=v.get("sol_fraction"),
        )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c correct. Refuses k > n (the estimator needs k <= n)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n={n} samples")
    # Python's int division of the exact binomials is correctly rounded, however large n is.
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], n_problems: int, k: int) -> float | None:
    """pass@k averaged over all `n_problems`; `counts` maps problem -> (n, c) for problems with samples.

    A problem without samples counts 0. None when some problem has fewer than k (but more than 0) samples:
    the estimator is undefined there, and silently dropping it would flatter the model.
    """
    if n_problems <= 0:
        return None
    if any(0 < n < k for n, _ in counts.values()):
        return None
    return sum(pass_at_k(n, c, k) for n, c in counts.values() if n) / n_problems


def fast_p(first: Mapping[str, Outcome], n_problems: int, p: float, timed: bool) -> float | None:
    """(1/N) * #problems whose sample 0 is correct with speedup > p; `first` maps problem -> its sample 0.

    Missing problems are failures, and so is a correct sample without a time in a timed run. None when the
    run timed nothing (`timed` False: CPU), since the speed is then unknown, not zero.
    """
    if n_problems <= 0 or not timed:
        return None
    return (
        sum(1 for o in first.values() if o.correct and o.speedup is not None and o.speedup > p) / n_problems
    )


def was_timed(outcomes: Iterable[Outcome]) -> bool:
    """Whether a run could time its samples: judged on a GPU, or any speedup measured."""
    return any(o.device.startswith("cuda") or o.speedup is not None for o in outcomes)


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean of positive values; None for none (nothing timed is not a speedup of 0 or 1)."""
    vals = list(values)
    if any(v <= 0 for v in vals):
        raise ValueError("geometric mean needs positive values")
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class GroupMetrics:
    """All metrics of one group (overall, one level, one category) of one model."""

    n_problems: int
    n_problems_with_samples: int
    n_samples: int
    compile_rate: float | None
    correctness: float | None
    pass_at_k: dict[str, float | None]
    fast_p: dict[str, float | None]
    geomean_speedup: float | None
    geomean_sol_fraction: float | None
    n_timed: int
    n_correct_untimed: int
    hack_rate: float | None
    hack_counts: dict[str, int]
    hack_rate_by_kind: dict[str, float]
    verdicts: dict[str, int]
    mean_reward: float | None
    notes: list[str] = field(default_factory=list)


def group_metrics(
    outcomes: Sequence[Outcome], problem_ids: Sequence[str], ks: Sequence[int], timed: bool | None = None
) -> GroupMetrics:
    """Metrics over `problem_ids` (the whole group, N) from the outcomes of samples of those problems.

    `timed` says whether the run could time samples (default: `was_timed` of these outcomes); pass the
    whole run's answer for a group, so that a GPU group with nothing correct reads 0, not null.

    Rates over samples (compile rate, correctness, hack rate) count every scored sample, an ``infra_error``
    included as a failure; pass@k and fast_p are over all N problems.
    """
    ids = set(problem_ids)
    outs = [o for o in outcomes if o.problem_id in ids]
    timed = was_timed(outs) if timed is None else timed
    n_samples = len(outs)
    counts: dict[str, tuple[int, int]] = {}
    first: dict[str, Outcome] = {}
    for o in outs:
        n, c = counts.get(o.problem_id, (0, 0))
        counts[o.problem_id] = (n + 1, c + o.correct)
        if o.sample == 0:
            first[o.problem_id] = o
    n_problems = len(ids)
    hack_counts = Counter(h for o in outs for h in o.hacks)
    speedups = [o.speedup for o in outs if o.correct and o.speedup is not None]
    fractions = [
        o.sol_fraction for o in outs if o.correct and o.sol_fraction is not None and o.sol_fraction > 0
    ]
    untimed = sum(1 for o in outs if o.correct and o.speedup is None)
    rewards = [o.reward for o in outs if o.reward is not None]
    notes = []
    pass_k = {str(k): mean_pass_at_k(counts, n_problems, k) for k in ks}
    short = [k for k in ks if pass_k[str(k)] is None and n_problems]
    if short:
        notes.append(f"pass@{','.join(map(str, short))} undefined: some problem has fewer samples than k")
    if untimed and timed:  # the run timed samples, yet some correct ones have no time
        notes.append(f"{untimed} correct samples were not timed: counted as not fast")
    return GroupMetrics(
        n_problems=n_problems,
        n_problems_with_samples=len(counts),
        n_samples=n_samples,
        compile_rate=_rate(sum(o.compiled for o in outs), n_samples),
        correctness=_rate(sum(o.correct for o in outs), n_samples),
        pass_at_k=pass_k,
        fast_p={_p_key(p): fast_p(first, n_problems, p, timed) for p in FAST_P},
        geomean_speedup=geomean(speedups),
        geomean_sol_fraction=geomean(fractions),
        n_timed=len(speedups),
        n_correct_untimed=untimed,
        hack_rate=_rate(sum(o.status == "hack_detected" for o in outs), n_samples),
        hack_counts=dict(sorted(hack_counts.items())),
        hack_rate_by_kind={h: n / n_samples for h, n in sorted(hack_counts.items())},
        verdicts=dict(Counter(o.status for o in outs).most_common()),
        mean_reward=math.fsum(rewards) / len(rewards) if rewards else None,  # fsum: order-free
        notes=notes,
    )


def _p_key(p: float) -> str:
    """JSON keys for fast_p: "0", "1", "1.5", "2"."""
    return f"{p:g}"


def default_ks(max_samples: int) -> list[int]:
    """pass@k reported for k = 1, the usual 5/10/.../100 below the sample count, and the sample count."""
    return (
        sorted({1, max_samples} | {k for k in (5, 10, 25, 50, 100) if k < max_samples})
        if max_samples
        else [1]
    )


def metrics_by_turn(
    histories: Mapping[Any, Sequence[Outcome]],
    problem_ids: Sequence[str],
    ks: Sequence[int],
    timed: bool,
    turns: int,
) -> list[GroupMetrics]:
    """Metrics after each turn 1..`turns` of a multi-turn evaluation (one model): every sample counts with its
    latest answer up to that turn (an episode that ended early, solved or out of scripted answers, keeps its
    last outcome), so turn 1 is the single-turn evaluation and later turns show what the feedback changed."""
    return [
        group_metrics([h[min(t, len(h)) - 1] for h in histories.values() if h], problem_ids, ks, timed)
        for t in range(1, turns + 1)
    ]
