"""The end-to-end demo on the embedded model and a CPU: curate -> SFT -> GRPO -> evaluate base, SFT and GRPO
on held-out generated problems, then one table and the GRPO reward curve. `--rl` goes on with a longer GRPO
run (`recipes/smollm2-135m/grpo_long.yaml`) on fresh problems the SFT model solves sometimes but not always
(screened by sampling), and tests whether it learned.

    kernelrl demo [--out outputs/demo] [--train 48] [--heldout 12] [--sft-steps 24] [--grpo-steps 2]
    kernelrl demo --repair --out outputs/demo_repair           (SFT on repair examples too; held-out over 2 turns)
    kernelrl demo --rl [--rl-candidates 12] [--rl-problems 4] [--rl-steps 12]   (the demo, then the learning run)
    python -m kernelrl.train.demo ...                         (the same)

Every stage reuses the real entry points and recipes (`recipes/data/demo_cpu.yaml`,
`recipes/smollm2-135m/{sft,grpo}.yaml`) with smaller numbers; compact prompts (no one-shot example) keep the
sequences short enough for two cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml

from kernelrl.data_pipeline.curate import curate
from kernelrl.data_pipeline.curate import load_config as load_curate_config
from kernelrl.data_pipeline.generate import generate_problems, write_problems
from kernelrl.train.evaluate import EvalConfig, evaluate, load_results

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ANSWER_TOKENS = 768  # synthesised elementwise answers: median ~570 tokens, 96% under 768
SCREEN_SAMPLES = 4  # sampled answers per candidate RL problem
RL_STEP_ANSWERS = 8  # completions per step of the learning run, shared out over its problems


def main(args: argparse.Namespace) -> dict:
    from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser  # here, so `kernelrl --help` stays quick

    from kernelrl.train import grpo, sft

    out = Path(args.out)
    times: dict[str, float] = {}
    t = time.monotonic()
    cfg = load_curate_config(RECIPES / "data" / "demo_cpu.yaml", output_dir=str(out / "data"))
    source = cfg.sources[0]
    source.n, source.categories = args.train, ["elementwise"]
    cfg.select.max_per_category = None
    cfg.output.one_shot = False
    cfg.repair.enabled = args.repair
    report = curate(cfg)
    times["curate"] = time.monotonic() - t

    # Held out: not a training problem, nor the same op chain at other sizes (a memorised answer would pass).
    trained = generate_problems(source.n, seed=source.seed, categories=source.categories)
    train_ops = {json.dumps(g.spec["ops"]) for g in trained}
    held = generate_problems(4 * args.heldout, seed=source.seed + 1000, categories=source.categories)
    held = [g for g in held if json.dumps(g.spec["ops"]) not in train_ops][: args.heldout]
    write_problems(held, out / "heldout")

    t = time.monotonic()
    if not (out / "sft" / "config.json").is_file():  # a rerun skips finished stages
        sft.main(
            *TrlParser((sft.SFTScriptArguments, SFTConfig, ModelConfig)).parse_args_and_config(
                args=[
                    *("--config", str(RECIPES / "smollm2-135m" / "sft.yaml")),
                    *("--dataset_name", str(out / "data"), "--output_dir", str(out / "sft")),
                    *("--max_steps", str(args.sft_steps), "--logging_steps", "4"),
                ]
            )
        )
    times["sft"] = time.monotonic() - t

    t = time.monotonic()
    if not list((out / "grpo").glob("checkpoint-*/trainer_state.json")):
        grpo.main(
            *TrlParser((grpo.GRPOScriptArguments, GRPOConfig, ModelConfig)).parse_args_and_config(
                args=[
                    *("--config", str(RECIPES / "smollm2-135m" / "grpo.yaml")),
                    *("--model_name_or_path", str(out / "sft"), "--dataset_name", str(out / "data")),
                    *("--output_dir", str(out / "grpo"), "--max_steps", str(args.grpo_steps)),
                    *("--per_device_train_batch_size", "2", "--num_generations", "2"),
                    *("--max_completion_length", str(ANSWER_TOKENS), "--save_strategy", "steps"),
                    *("--save_steps", str(args.grpo_steps), "--log_completions", "false"),
                ]
            )
        )
    times["grpo"] = time.monotonic() - t

    t = time.monotonic()
    models = {"base": "embedded", "sft": str(out / "sft"), "grpo": str(out / "grpo")}
    summary = _evaluate_heldout(list(models.values()), out, out / "eval", turns=2 if args.repair else 1)
    times["eval"] = time.monotonic() - t

    rows = {}
    for label, name in models.items():
        m = summary["models"][name]["overall"]
        rows[label] = {k: m.get(k) for k in ("compile_rate", "correctness", "mean_reward")}
        if args.repair:  # each unsolved answer got the sandbox's feedback and a second turn
            rows[label]["correctness_turn2"] = summary["turns"]["models"][name][-1]["correctness"]
    state = json.loads(next((out / "grpo").glob("checkpoint-*/trainer_state.json")).read_text())
    curve = [(h["step"], h["reward"]) for h in state["log_history"] if "reward" in h]
    _plot(curve, out / "reward_curve.png")
    times = _add_seconds(out / "demo_summary.json", times)
    result = {"table": rows, "reward_curve": curve, "seconds": times, "curation": report.get("funnel", {})}
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{'model':<6} {'compile':>8} {'correct':>8} {'reward':>8}" + (" 2 turns" if args.repair else ""))
    for label, r in rows.items():
        print(
            f"{label:<6} {_f(r['compile_rate']):>8} {_f(r['correctness']):>8} {_f(r['mean_reward']):>8}"
            + (f" {_f(r['correctness_turn2']):>7}" if args.repair else "")
        )
    print(
        "seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
        + f"; total {sum(times.values()):.0f}"
    )
    if args.rl:
        seen = train_ops | {json.dumps(g.spec["ops"]) for g in held}
        result["rl"] = learning_run(args, out, source.seed, source.categories, seen)
    return result


def learning_run(
    args: argparse.Namespace, out: Path, seed: int, categories: list[str], seen: set[str]
) -> dict:
    """The longer GRPO run from the demo's SFT model: `grpo_long.yaml` on fresh problems (no training or held-out
    op chain), then the quarter test on its per-step rewards and the held-out evaluation against SFT."""
    from datasets import Dataset, DatasetDict
    from trl import GRPOConfig, ModelConfig, TrlParser

    from kernelrl.data_pipeline.prompts import build_prompt
    from kernelrl.train import grpo, learning_curve

    times: dict[str, float] = {}
    t = time.monotonic()
    fresh = generate_problems(8 * args.rl_candidates, seed=seed + 2000, categories=categories)
    fresh = [g for g in fresh if json.dumps(g.spec["ops"]) not in seen][: args.rl_candidates]
    screened = _screen(str(out / "sft"), fresh, out)
    times["screen"] = time.monotonic() - t
    print(
        "SFT model's screened answers (correct, reward spread): "
        + ", ".join(f"{g.name} {_rate(screened[g.name]):.2f} {_spread(screened[g.name]):.2f}" for g in fresh)
    )
    chosen = choose_rl_problems(fresh, screened, args.rl_problems)
    if not chosen:
        raise SystemExit(
            f"every candidate RL problem's screened answers scored the same ({len(fresh)} screened): "
            "raise --rl-candidates"
        )
    print(f"RL problems: {', '.join(g.name for g in chosen)}")
    if len(chosen) == 1 < args.rl_problems:
        print(
            "warning: one problem's answers differ: every step trains on one prompt, which overfit it in "
            "the README's runs 3 and 6 (held-out answers fell into loops); raise --rl-candidates for more"
        )
    rows = [{"prompt": build_prompt(g.source, one_shot=False), "problem": g.source} for g in chosen]
    DatasetDict({"rl": Dataset.from_list(rows)}).save_to_disk(str(out / "rl_data"))
    generations, batch = step_shape(len(chosen))

    t = time.monotonic()
    run = out / "grpo_long"
    if not list(run.glob("checkpoint-*/trainer_state.json")):
        grpo.main(
            *TrlParser((grpo.GRPOScriptArguments, GRPOConfig, ModelConfig)).parse_args_and_config(
                args=[
                    *("--config", str(RECIPES / "smollm2-135m" / "grpo_long.yaml")),
                    *("--model_name_or_path", str(out / "sft"), "--dataset_name", str(out / "rl_data")),
                    *("--output_dir", str(run), "--max_steps", str(args.rl_steps)),
                    *("--save_steps", str(args.rl_steps), "--max_completion_length", str(ANSWER_TOKENS)),
                    *("--num_generations", str(generations), "--per_device_train_batch_size", str(batch)),
                ]
            )
        )
    times["grpo"] = time.monotonic() - t

    t = time.monotonic()
    models = {"sft": str(out / "sft"), "grpo_long": str(run)}
    # SFT's greedy held-out answers are the demo's own (same problems, settings and batch): reused, not redone
    _reuse_answers(out / "eval" / "results.jsonl", out / "eval_rl" / "results.jsonl", models["sft"])
    summary = _evaluate_heldout(list(models.values()), out, out / "eval_rl")
    times["eval"] = time.monotonic() - t
    curve = learning_curve.step_rewards(run)
    test = learning_curve.quarter_test([r for _, r in curve])
    learning_curve.plot(
        curve, out / "rl_reward_curve.png", title="GRPO training reward (embedded model, CPU)"
    )
    table = {}
    for label, name in models.items():
        m = summary["models"][name]["overall"]
        table[label] = {k: m.get(k) for k in ("compile_rate", "correctness", "mean_reward")}
    state = json.loads(sorted(run.glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    steps = [h for h in state["log_history"] if "reward" in h]
    where = {k: _mean([h.get(k) for h in steps]) for k in ("step_time", "time/generate", "time/reward")}
    times = _add_seconds(out / "rl_summary.json", times)
    result = {
        "quarters": test,
        "table": table,
        "reward_curve": curve,
        "seconds": times,
        "step_seconds": where,
    }
    (out / "rl_summary.json").write_text(json.dumps(result, indent=2, default=str))
    print(
        f"\nGRPO reward, first quarter {test['first_mean']:.3f} ± {test['first_se']:.3f}, last quarter "
        f"{test['last_mean']:.3f} ± {test['last_se']:.3f}: difference {test['diff']:+.3f} = {test['z']:.1f} SE"
    )
    print(f"\n{'model':<10} {'compile':>8} {'correct':>8} {'reward':>8}")
    for label, r in table.items():
        print(f"{label:<10} {_f(r['compile_rate']):>8} {_f(r['correctness']):>8} {_f(r['mean_reward']):>8}")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return result


def choose_rl_problems(problems: list, screened: dict[str, list[tuple[bool, float]]], n: int) -> list:
    """At most `n` problems whose screened (correct, reward) answers differ: first those the model solves
    sometimes but not always, nearest an even split; then those none or all of whose answers are correct but
    whose graded rewards still spread (some compile, some do not), widest first. A group whose answers all
    score the same has zero advantage and teaches nothing, so such a problem is never taken."""

    def order(g) -> tuple[int, float]:
        rate = _rate(screened[g.name])
        return (0, abs(rate - 0.5)) if 0 < rate < 1 else (1, -_spread(screened[g.name]))

    varied = [g for g in problems if _spread(screened[g.name]) > 0]
    return sorted(varied, key=order)[:n]


def _rate(answers: list[tuple[bool, float]]) -> float:
    return statistics.fmean(c for c, _ in answers) if answers else 0.0


def _spread(answers: list[tuple[bool, float]]) -> float:
    """Population standard deviation of the rewards: exactly 0 when they are all the same (`pstdev` computes
    exactly, where a float mean of three 0.1s already leaves a 1e-17 spread)."""
    return statistics.pstdev(r for _, r in answers) if answers else 0.0


def step_shape(problems: int) -> tuple[int, int]:
    """(completions per prompt, completions per step) so that every step answers every chosen problem: the
    step means then differ by learning and sampling only, not by which prompt a step happened to draw (in
    run 2, one prompt per step, that alone moved step rewards by more than the gain being tested)."""
    generations = max(2, RL_STEP_ANSWERS // problems)
    return generations, generations * problems


def _screen(model: str, problems: list, out: Path) -> dict[str, list[tuple[bool, float]]]:
    """(correct, reward) of SCREEN_SAMPLES sampled answers per problem, at the run's temperature."""
    recipe = yaml.safe_load((RECIPES / "smollm2-135m" / "grpo_long.yaml").read_text())
    write_problems(problems, out / "rl_candidates")
    _evaluate(
        [model],
        out / "rl_candidates",
        out / "rl_screen",
        samples=SCREEN_SAMPLES,
        temperature=recipe["temperature"],
        batch_size=8,
    )
    answers: dict[str, list[tuple[bool, float]]] = {g.name: [] for g in problems}
    for (name, _, _), row in load_results(out / "rl_screen" / "results.jsonl").items():
        if name == model and row["problem"] in answers:
            correct = bool((row["verdict"] or {}).get("correct"))
            answers[row["problem"]].append((correct, float(row["reward"] or 0.0)))
    return answers


def _evaluate_heldout(models: list[str], out: Path, eval_dir: Path, turns: int = 1) -> dict:
    """Greedy answers of `models` on the demo's held-out problems, all in one batch, scored on 2 CPU workers;
    with `turns` 2, every unsolved answer gets the sandbox's feedback and a second try."""
    batch = len(list((out / "heldout").glob("*/*.py")))
    return _evaluate(
        models, out / "heldout", eval_dir, samples=1, temperature=0.0, batch_size=batch, turns=turns
    )


def _reuse_answers(source: Path, results: Path, model: str) -> None:
    """Start a new evaluation's results file with `model`'s scored rows from another evaluation of the same
    problems (the evaluation resumes from them); a results file already begun is left alone."""
    if results.exists() or not source.is_file():
        return
    rows = [row for row in load_results(source).values() if row["model"] == model]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _add_seconds(summary: Path, times: dict[str, float]) -> dict[str, float]:
    """Each stage's seconds over every run into this folder: a rerun skips or resumes finished work, so its own
    times alone would overwrite what the stages took (e.g. `demo --rl` after `make demo`)."""
    before = json.loads(summary.read_text()).get("seconds", {}) if summary.is_file() else {}
    return {k: before.get(k, 0.0) + v for k, v in times.items()}


def _evaluate(models: list[str], problems: Path, eval_dir: Path, **settings: object) -> dict:
    """`kernelrl eval` as the demo runs it: compact prompts, the demo's answer budget, 2 CPU sandbox workers."""
    return evaluate(
        EvalConfig(
            models=models,
            problems=str(problems),
            max_new_tokens=ANSWER_TOKENS,
            one_shot=False,
            device="cpu",
            workers=2,
            timeout=60,
            out=str(eval_dir),
            **settings,
        )
    )


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _plot(curve: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([s for s, _ in curve], [r for _, r in curve], marker="o")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    ax.set_title("GRPO reward (embedded model, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="outputs/demo", help="output directory (a rerun skips finished stages)")
    p.add_argument("--train", type=_positive, default=48, help="generated training problems")
    p.add_argument(
        "--heldout", type=_positive, default=12, help="held-out generated problems for the evaluation"
    )
    p.add_argument("--sft-steps", type=_positive, default=24, help="SFT optimizer steps (batches of 2)")
    p.add_argument(
        "--grpo-steps", type=_positive, default=2, help="GRPO steps (2 completions of one prompt each)"
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="SFT data with repair examples too, and the held-out evaluation over 2 turns (feedback, retry)",
    )
    p.add_argument(
        "--rl", action="store_true", help="then the longer GRPO run (grpo_long.yaml; ~60 min on 2 cores)"
    )
    p.add_argument(
        "--rl-candidates", type=_positive, default=12, help="fresh problems screened for the learning run"
    )
    p.add_argument(
        "--rl-problems",
        type=_positive,
        default=4,
        help="at most this many of them, those whose answers differ, are trained on (every step answers each)",
    )
    p.add_argument(
        "--rl-steps", type=_positive, default=12, help="steps of the learning run (8 answers each)"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole chain on the embedded model and a CPU: curate, SFT, GRPO, evaluate (~14 min on 2 cores)",
        description=__doc__.split("\n\n")[0],
    )
    _arguments(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    main(args)
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m kernelrl.train.demo", description=__doc__.split("\n\n")[0])
    _arguments(ap)
    main(ap.parse_args())
