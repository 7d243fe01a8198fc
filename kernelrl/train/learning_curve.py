"""Did a GRPO run learn? The per-step training reward, first quarter against last, with standard errors, and
the reward curve with its error band.

    python -m kernelrl.train.learning_curve outputs/demo/grpo_long [--plot curve.png]

Reads the `trainer_state.json` of the run's last checkpoint (TRL logs the mean reward of every step's
completions). The test is the one a reader would do by hand: the difference of the two quarter means over
its standard error (Welch, steps as samples), so a trend has to beat the step-to-step noise of prompt
difficulty and sampling to count.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def step_rewards(run_dir: str | Path) -> list[tuple[int, float]]:
    """(step, mean reward) of every logged step of a GRPO run, from its last checkpoint's trainer state."""
    run = Path(run_dir)
    states = sorted(
        run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])
    )
    path = states[-1] if states else run / "trainer_state.json"
    if not path.is_file():
        raise FileNotFoundError(f"no trainer_state.json under {run} (was the run saved with save_steps?)")
    history = json.loads(path.read_text())["log_history"]
    return [(h["step"], float(h["reward"])) for h in history if h.get("reward") is not None]


def quarter_test(rewards: list[float]) -> dict[str, Any]:
    """First vs last quarter of the per-step rewards: means, standard errors, difference and its z."""
    q = len(rewards) // 4
    if q < 2:
        raise ValueError(f"{len(rewards)} logged steps: need at least 8 for two quarters of 2")
    first, last = rewards[:q], rewards[-q:]

    def se(xs: list[float]) -> float:
        return statistics.stdev(xs) / math.sqrt(len(xs))

    diff, se_diff = statistics.fmean(last) - statistics.fmean(first), math.hypot(se(first), se(last))
    z = diff / se_diff if se_diff > 0 else math.copysign(math.inf, diff) if diff else 0.0
    return {
        "steps": len(rewards),
        "quarter_steps": q,
        "first_mean": statistics.fmean(first),
        "first_se": se(first),
        "last_mean": statistics.fmean(last),
        "last_se": se(last),
        "diff": diff,
        "se_diff": se_diff,
        "z": z,
        "learned": z > 2.0,
    }


def plot(curve: list[tuple[int, float]], path: str | Path, title: str = "GRPO training reward") -> None:
    """Per-step rewards, their running mean over a quarter of the run, and a ±2 SE band around it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, ys = [s for s, _ in curve], [r for _, r in curve]
    w = max(2, len(ys) // 4)
    mids, means, band = [], [], []
    for i in range(len(ys) - w + 1):
        window = ys[i : i + w]
        mids.append(statistics.fmean(steps[i : i + w]))
        means.append(statistics.fmean(window))
        band.append(2 * statistics.stdev(window) / math.sqrt(w))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, ys, "o", ms=3, alpha=0.5, label="step reward")
    ax.plot(mids, means, "-", label=f"running mean ({w} steps)")
    ax.fill_between(
        mids,
        [m - b for m, b in zip(means, band, strict=True)],
        [m + b for m, b in zip(means, band, strict=True)],
        alpha=0.25,
        label="±2 SE",
    )
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward of the step's completions")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kernelrl.train.learning_curve", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_dir", help="a GRPO output directory (its checkpoint-*/trainer_state.json)")
    p.add_argument("--plot", help="write the reward curve here (PNG)")
    args = p.parse_args(argv)
    try:
        curve = step_rewards(args.run_dir)
        result = quarter_test([r for _, r in curve])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.plot:
        plot(curve, args.plot)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
