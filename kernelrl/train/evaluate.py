"""`kernelrl eval`: score checkpoints (or any system's saved completions) on a problem set, resumably.

For each model, k completions per problem come from the shared generation module (vLLM on a GPU,
transformers on CPU) with the same prompts and seed for every model, so checkpoints compare like for like.
Completions files (JSONL: ``problem_id`` or ``problem``, ``completion``, optional ``model`` and ``sample``)
are scored the same way without a model. Every sample goes through the sandbox pool via `kernelrl.rewards.Scorer`
and is appended to ``<out>/results.jsonl`` as soon as its verdict arrives; a rerun skips what is there
(except ``infra_error`` rows: an outage is retried, and the newer row wins). Then ``summary.json`` and
``report.md`` are written from the file, so a report can always be rebuilt from the raw verdicts.

    kernelrl eval --model embedded --model outputs/smollm2-135m-grpo --problems bundled --samples 4 --out runs/cmp
    kernelrl eval --completions answers.jsonl --problems path/to/KernelBench --out runs/api --device cuda
    kernelrl eval --config recipes/eval/bundled_cpu.yaml [flags override the recipe's keys]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.rewards.compose import RewardConfig, Scorer, load_config
from kernelrl.sandbox.problem import Problem, ProblemError, bundled_problems, load_problem, load_problems


def _generate() -> Callable[..., list[list[str]]]:
    """The shared generation function; the one place that says where it lives."""
    from kernelrl.data_pipeline.generation import generate

    return generate


class EvalError(ValueError):
    """A usage error (bad recipe, unknown problem, unreadable completions), one line, naming the culprit."""


# Bundled problems grouped by kind, so a report has breakdowns a person can read.
BUNDLED_CATEGORIES = {
    "relu": "activation",
    "gelu": "activation",
    "swish": "activation",
    "elementwise_add": "elementwise",
    "sum_reduction": "reduction",
    "max_reduction": "reduction",
    "softmax": "normalization",
    "log_softmax": "normalization",
    "layer_norm": "normalization",
    "rms_norm": "normalization",
    "matmul": "matmul",
    "linear_relu": "matmul",
    "matmul_bias_sigmoid": "matmul",
    "mse_loss": "loss",
    "cross_entropy": "loss",
}


@dataclass(frozen=True)
class EvalProblem:
    """A problem with the labels the breakdowns use: KernelBench level (or None) and a category."""

    problem: Problem
    category: str
    level: str | None = None

    @property
    def id(self) -> str:
        return self.problem.id

    @property
    def name(self) -> str:
        return self.problem.name


def resolve_problems(spec: str, seed: int = 0) -> list[EvalProblem]:
    """``bundled``, ``bundled:a,b``, ``generated:N``, a KernelBench-layout directory, or one problem file.

    Category: the level directory for KernelBench (else the file's directory), the generator's category,
    or `BUNDLED_CATEGORIES`. Duplicates (same source, same id) are kept once.
    """
    if spec == "bundled" or spec.startswith("bundled:"):
        bundled = bundled_problems()
        names = [n for n in spec.partition(":")[2].split(",") if n.strip()] or list(bundled)
        unknown = [n for n in names if n.strip() not in bundled]
        if unknown:
            raise EvalError(f"no bundled problem {unknown[0]!r}; choose from {', '.join(bundled)}")
        out = [EvalProblem(bundled[n.strip()], BUNDLED_CATEGORIES.get(n.strip(), n.strip())) for n in names]
    elif spec.startswith("generated:"):
        count = spec.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            raise EvalError(f"--problems {spec!r}: expected generated:N with N a positive integer")
        from kernelrl.data_pipeline.generate import generate_problems

        out = [
            EvalProblem(load_problem(g.source, name=g.name), g.category)
            for g in generate_problems(int(count), seed=seed)
        ]
    else:
        path = Path(spec)
        if path.is_dir():
            problems = load_problems(path)
            root = path
        elif path.is_file():
            problems, root = [load_problem(path)], path.parent
        else:
            raise EvalError(
                f"--problems {spec!r}: not a directory, a problem file, 'bundled[:a,b]' or 'generated:N'"
            )
        if not problems:
            raise EvalError(f"--problems {spec!r}: no KernelBench problem files found there")
        out = [EvalProblem(p, p.level or _folder(p, root), p.level) for p in problems]
    unique: dict[str, EvalProblem] = {}
    for ep in out:
        unique.setdefault(ep.id, ep)
    return list(unique.values())


def _folder(p: Problem, root: Path) -> str:
    parent = Path(p.path).parent if p.path else root
    return parent.name or root.resolve().name


class EvalConfig(BaseModel):
    """One evaluation: the CLI flags and the recipe YAML keys are the same names."""

    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(default_factory=list)
    completions: list[str] = Field(default_factory=list)
    problems: str = "bundled"
    samples: int = Field(1, ge=1)
    out: str | None = None
    label: str | None = None  # model name for completion rows without a `model` field (default: file stem)
    prompt_backend: Literal["triton", "cuda"] = "triton"
    one_shot: bool = True  # the prompts' one-shot example (False for models fine-tuned on compact prompts)
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    generation_backend: str = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int | None = Field(None, ge=1)
    timeout: float = Field(60.0, gt=0)
    address: str | None = None
    reward_config: str | None = None
    pass_k: list[int] | None = None
    turns: int = Field(1, ge=1)  # answers per sample: each later turn reads the previous turn's feedback


def load_recipe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"eval recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise EvalError(f"eval recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise EvalError(f"eval recipe {p} must be a mapping of option: value")
    return data


def make_config(data: dict[str, Any], where: str = "eval options") -> EvalConfig:
    """An EvalConfig, or an EvalError naming the first bad key."""
    try:
        config = EvalConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "?"
        raise EvalError(f"{where}: {key}: {err['msg']}") from None
    if not config.models and not config.completions:
        raise EvalError(f"{where}: nothing to evaluate; give --model and/or --completions")
    if not config.out:
        raise EvalError(f"{where}: no output directory; give --out (or `out:` in the recipe)")
    if config.pass_k and any(k < 1 for k in config.pass_k):
        raise EvalError(f"{where}: pass_k values must be >= 1")
    return config


# ---------------------------------------------------------------- samples and the results file


@dataclass(frozen=True)
class Sample:
    model: str
    problem: EvalProblem
    index: int
    completion: str
    source: str  # "model" or "completions"
    later: tuple[str, ...] = ()  # scripted answers for turns 2, 3, ... (a completions row with a list)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.model, self.problem.id, self.index)


def read_completions(path: str | Path, problems: list[EvalProblem], label: str | None) -> list[Sample]:
    """Samples from a JSONL file or a directory of them; every line names a problem of the set."""
    root = Path(path)
    if not root.exists():
        raise EvalError(f"--completions {root}: no such file or directory")
    files = sorted(root.rglob("*.jsonl")) if root.is_dir() else [root]
    if not files:
        raise EvalError(f"--completions {root}: no .jsonl files in this directory")
    by_id = {ep.id: ep for ep in problems}
    by_name: dict[str, list[EvalProblem]] = {}
    for ep in problems:
        by_name.setdefault(ep.name, []).append(ep)
        if ep.level:
            by_name.setdefault(f"{ep.level}/{ep.name}", []).append(ep)
    out: list[Sample] = []
    seen: set[tuple[str, str, int]] = set()
    counters: dict[tuple[str, str], int] = {}
    for f in files:
        try:
            lines = f.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise EvalError(f"cannot read completions {f}: {e}") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{f}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{where}: not JSON ({e.msg})") from None
            answers = row.get("completion") if isinstance(row, dict) else None
            if isinstance(answers, str):
                answers = [answers]
            if not answers or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise EvalError(
                    f"{where}: expected an object with a string 'completion' (or a list of strings, one per turn)"
                )
            ref = row.get("problem") or row.get("problem_id")
            if not isinstance(ref, str):
                raise EvalError(f"{where}: expected 'problem_id' or 'problem' (a name)")
            if row.get("problem_id") in by_id:
                ep = by_id[row["problem_id"]]
            elif len(by_name.get(ref, [])) == 1:
                ep = by_name[ref][0]
            elif ref in by_name:
                raise EvalError(f"{where}: problem name {ref!r} is ambiguous here; use its problem_id")
            else:
                raise EvalError(f"{where}: unknown problem {ref!r} (not in the --problems set)")
            model = str(row.get("model") or label or f.stem)
            index = row.get("sample", counters.get((model, ep.id), 0))
            if not isinstance(index, int) or index < 0:
                raise EvalError(f"{where}: 'sample' must be a non-negative integer")
            counters[(model, ep.id)] = max(counters.get((model, ep.id), 0), index + 1)
            s = Sample(model, ep, index, answers[0], "completions", tuple(answers[1:]))
            if s.key in seen:
                raise EvalError(f"{where}: a second completion for {model} / {ep.name} / sample {index}")
            seen.add(s.key)
            out.append(s)
    return out


def load_results(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Rows of a results file by (model, problem id, sample); the last row of a key wins. A line cut short
    by a crash is skipped (its sample is simply redone)."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            rows[(row["model"], row["problem_id"], int(row["sample"]))] = row
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return rows


def _is_done(row: dict[str, Any] | None, sample: Sample | None = None) -> bool:
    if row is None or (row.get("verdict") or {}).get("status", "infra_error") == "infra_error":
        return False
    return sample is None or sample.source == "model" or row.get("completion") == sample.completion


class ResultsWriter:
    """Appends one JSON line per scored sample and flushes it, so a crash loses at most the line in flight."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = path.open("a+b")
        if self.f.tell() > 0:  # a line cut short by a crash must not swallow the next row
            self.f.seek(-1, 2)
            if self.f.read(1) != b"\n":
                self.f.write(b"\n")

    def write(self, row: dict[str, Any]) -> None:
        self.f.write(json.dumps(row).encode() + b"\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def score_samples(
    scorer: Scorer,
    samples: list[Sample],
    writer: ResultsWriter,
    desc: str,
    progress: bool = True,
    turn: int | None = None,
) -> None:
    """Submit every sample to the pool at once and write each row the moment its verdict arrives (tagged with
    its ``turn`` in a multi-turn evaluation)."""
    if not samples:
        return
    futures = scorer.submit([s.problem.problem for s in samples], [s.completion for s in samples])
    waiting: dict[Future, list[Sample]] = {}
    for s, f in zip(samples, futures, strict=True):
        waiting.setdefault(f, []).append(s)  # identical pairs share one future
    with tqdm(total=len(samples), desc=desc, unit="sample", disable=not progress) as bar:
        for f in as_completed(waiting):
            verdict = f.result()
            for s in waiting[f]:
                r = scorer.result(s.completion, verdict)
                writer.write(
                    {
                        "model": s.model,
                        "problem_id": s.problem.id,
                        "problem": s.problem.name,
                        "level": s.problem.level,
                        "category": s.problem.category,
                        "sample": s.index,
                        "source": s.source,
                        "completion": s.completion,
                        "reward": r.reward,
                        "components": r.components,
                        "verdict": verdict.to_dict(),
                        **({"turn": turn} if turn is not None else {}),
                    }
                )
                bar.update()


# ---------------------------------------------------------------- the evaluation


def evaluate(config: EvalConfig, *, scorer: Scorer | None = None, progress: bool = True) -> dict[str, Any]:
    """Generate, score and report; returns the summary (also written to ``<out>/summary.json``).

    `scorer` lets callers share one warm sandbox pool between evaluations; otherwise one is made from the
    config and closed at the end. Only samples missing from ``results.jsonl`` cost generation or sandbox time.
    """
    from kernelrl.train import eval_report

    out = Path(config.out or "")
    problems = resolve_problems(config.problems, config.seed)
    given = [s for path in config.completions for s in read_completions(path, problems, config.label)]
    results_path = out / "results.jsonl"
    done = load_results(results_path)
    own = scorer is None
    if scorer is None:
        reward_config = _reward_config(config.reward_config)
        scorer = Scorer(
            reward_config,
            num_workers=config.workers,
            device=config.device,
            address=config.address,
            run_timeout_s=config.timeout,
        )
    elif not scorer.config.needs_verdict:
        raise EvalError("the reward config weights only rule components; evaluation needs sandbox verdicts")
    writer = ResultsWriter(results_path)
    runs: dict[str, dict[str, Any]] = {}
    try:
        todo = [s for s in given if not _is_done(done.get(s.key), s)]
        labels = list(dict.fromkeys(s.model for s in given))
        for label in labels:
            mine = [s for s in todo if s.model == label]
            t0 = time.perf_counter()
            score_samples(scorer, mine, writer, f"score {label}", progress)
            runs[label] = _run_stats(len(mine), sum(s.model == label for s in given) - len(mine), 0.0, t0)
        for model in config.models:
            runs[model] = _evaluate_model(config, model, problems, done, scorer, writer, progress)
        planned = {s.key for s in given} | {
            (m, ep.id, i) for m in config.models for ep in problems for i in range(config.samples)
        }
        rows = [r for k, r in sorted(load_results(results_path).items()) if k in planned]
        histories = _refine(config, rows, given, scorer, progress) if config.turns > 1 else None
    finally:
        writer.close()
        if own:
            scorer.close()
    sources = {**{s.model: "completions" for s in given}, **{m: "model" for m in config.models}}
    summary = eval_report.build_summary(config, problems, rows, sources, runs, histories)
    eval_report.write_outputs(out, summary, rows)
    return summary


def _reward_config(path: str | None) -> RewardConfig:
    try:
        config = load_config(path)
    except ValueError as e:
        raise EvalError(str(e)) from None
    if not config.needs_verdict:
        raise EvalError(f"reward config {path}: weights only rule components; evaluation needs verdicts")
    return config


def _run_stats(scored: int, skipped: int, generation_s: float, t0: float) -> dict[str, Any]:
    return {
        "scored": scored,
        "skipped": skipped,
        "generation_s": round(generation_s, 3),
        "scoring_s": round(time.perf_counter() - t0, 3),
    }


def _evaluate_model(
    config: EvalConfig,
    model: str,
    problems: list[EvalProblem],
    done: dict[tuple[str, str, int], dict[str, Any]],
    scorer: Scorer,
    writer: ResultsWriter,
    progress: bool,
) -> dict[str, Any]:
    """k completions per problem still missing samples (the same seed for every model), then their verdicts.

    A problem with some samples done is generated again in full (same seed, so the same draw where the
    backend is deterministic) and only its missing samples are scored.
    """
    k = config.samples
    missing = {ep.id: [i for i in range(k) if not _is_done(done.get((model, ep.id, i)))] for ep in problems}
    need = [ep for ep in problems if missing[ep.id]]
    skipped = len(problems) * k - sum(len(v) for v in missing.values())
    if not need:
        return _run_stats(0, skipped, 0.0, time.perf_counter())
    prompts = [build_prompt(ep.problem.source, config.prompt_backend, config.one_shot) for ep in need]
    if progress:
        print(f"kernelrl eval: generating {k} x {len(need)} completions with {model}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        texts = _generate()(
            model,
            prompts,
            n=k,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
            batch_size=config.batch_size,
            backend=config.generation_backend,
        )
    except (OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EvalError(f"generation with model {model!r} failed: {type(e).__name__}: {first}") from None
    generation_s = time.perf_counter() - t0
    samples = [
        Sample(model, ep, i, texts[j][i], "model") for j, ep in enumerate(need) for i in missing[ep.id]
    ]
    t1 = time.perf_counter()
    score_samples(scorer, samples, writer, f"score {model}", progress)
    return _run_stats(len(samples), skipped, generation_s, t1)


# ---------------------------------------------------------------- multi-turn: feedback, then another answer


def _refine(
    config: EvalConfig, first: list[dict[str, Any]], given: list[Sample], scorer: Scorer, progress: bool
) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """Turns 2..N: each sample whose episode is not over (`kernelrl.rewards.episode`: solved, or no answers left)
    gets its previous turn's feedback and answers again: the next scripted answer of a completions row, or a
    generation from the model on the whole conversation so far. Rows go to ``turns.jsonl`` (resumed like
    ``results.jsonl``); returns every sample's rows by turn, the first from ``first``."""
    from kernelrl.rewards.episode import Episode

    out = Path(config.out or "")
    episode_config = _episode_config(config)
    scripted = {s.key: s.later for s in given}
    by_id = {ep.id: ep for ep in resolve_problems(config.problems, config.seed)}
    histories = {(r["model"], r["problem_id"], int(r["sample"])): [r] for r in first}
    done = _load_turns(out / "turns.jsonl")
    writer = ResultsWriter(out / "turns.jsonl")
    try:
        for t in range(2, config.turns + 1):
            need: list[tuple[tuple[str, str, int], list[dict[str, Any]]]] = []
            for key, rows in histories.items():
                episode = Episode(episode_config, [_turn(r) for r in rows])
                if len(rows) != t - 1 or episode.done or (key in scripted and len(scripted[key]) < t - 1):
                    continue
                row = done.get((*key, t))
                answer = scripted[key][t - 2] if key in scripted else None
                if _is_done(row) and (answer is None or row.get("completion") == answer):
                    rows.append(row)
                    continue
                need.append((key, rows))
            samples = _next_answers(config, t, need, scripted, by_id, episode_config, progress)
            score_samples(scorer, samples, writer, f"turn {t}", progress, turn=t)
            fresh = _load_turns(out / "turns.jsonl")
            for key, rows in need:
                if (*key, t) in fresh:
                    rows.append(fresh[(*key, t)])
    finally:
        writer.close()
    return histories


def _next_answers(
    config: EvalConfig,
    t: int,
    need: list[tuple[tuple[str, str, int], list[dict[str, Any]]]],
    scripted: dict[tuple[str, str, int], tuple[str, ...]],
    by_id: dict[str, EvalProblem],
    episode_config: Any,
    progress: bool,
) -> list[Sample]:
    """Turn t's answers: scripted ones as they are, the rest generated per model from each conversation."""
    from kernelrl.rewards.episode import Episode

    samples = [
        Sample(k[0], by_id[k[1]], k[2], scripted[k][t - 2], "completions") for k, _ in need if k in scripted
    ]
    for model in dict.fromkeys(k[0] for k, _ in need if k not in scripted):
        mine = [(k, rows) for k, rows in need if k[0] == model and k not in scripted]
        conversations = []
        for k, rows in mine:
            messages = build_prompt(by_id[k[1]].problem.source, config.prompt_backend, config.one_shot)
            for i, r in enumerate(rows):
                observation = Episode(episode_config, [_turn(x) for x in rows[: i + 1]]).observation()
                messages += [
                    {"role": "assistant", "content": r["completion"]},
                    {"role": "user", "content": observation},
                ]
            conversations.append(messages)
        if progress:
            print(f"kernelrl eval: turn {t}: {len(mine)} answers with {model}", file=sys.stderr)
        try:
            texts = _generate()(
                model,
                conversations,
                n=1,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed + t,
                batch_size=config.batch_size,
                backend=config.generation_backend,
            )
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise EvalError(f"generation with model {model!r} failed: {type(e).__name__}: {first}") from None
        samples += [Sample(k[0], by_id[k[1]], k[2], texts[j][0], "model") for j, (k, _) in enumerate(mine)]
    return samples


def _episode_config(config: EvalConfig) -> Any:
    """The reward config's ``episode:`` settings with ``max_turns`` = ``--turns``."""
    from dataclasses import replace

    from kernelrl.rewards.episode import EpisodeConfig, EpisodeConfigError

    try:
        base = EpisodeConfig.from_yaml(config.reward_config)
    except EpisodeConfigError as e:
        raise EvalError(str(e)) from None
    return replace(base, max_turns=config.turns)


def _turn(row: dict[str, Any]) -> Any:
    """A results row as an episode Turn; its feedback is rendered from the verdict (deterministic)."""
    from kernelrl.rewards.episode import Turn
    from kernelrl.rewards.feedback import render
    from kernelrl.rewards.sample import make_sample

    v = row.get("verdict") or {"status": "infra_error"}
    details = make_sample(row["completion"]).static.details if v.get("hacks") else []
    return Turn(row.get("reward"), v["status"], render(v, details=details), v.get("speedup"))


def _load_turns(path: Path) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    rows: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            rows[(row["model"], row["problem_id"], int(row["sample"]), int(row["turn"]))] = row
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return rows


# ---------------------------------------------------------------- CLI

# CLI flag -> EvalConfig field, for flags whose names differ.
_FLAG_FIELDS = {"model": "models", "completions": "completions"}


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        data = load_recipe(args.config) if args.config else {}
        for name, value in vars(args).items():
            if name in ("config", "func", "command", "quiet") or value is None:
                continue
            data[_FLAG_FIELDS.get(name, name)] = value
        config = make_config(data, f"eval recipe {args.config}" if args.config else "kernelrl eval")
        summary = evaluate(config, progress=not args.quiet)
    except (EvalError, ProblemError) as e:
        print(f"kernelrl: error: {e}", file=sys.stderr)
        return 2
    from kernelrl.train.eval_report import print_overview

    print_overview(summary, Path(config.out or ""))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score checkpoints or saved completions: pass@k, fast_p, speedup, hack rate, with a report",
        description="Generate k completions per problem with each --model (or read --completions JSONL), "
        "score them in the sandbox, and write results.jsonl, summary.json and report.md to --out. "
        "Flags override the recipe given with --config (same key names, e.g. recipes/eval/bundled_cpu.yaml).",
    )
    p.add_argument("--config", help="eval recipe YAML (keys as the flags, with models/completions as lists)")
    p.add_argument(
        "--model", action="append", help="checkpoint path, hub id or 'embedded'; repeat to compare"
    )
    p.add_argument(
        "--completions",
        action="append",
        help="JSONL file or directory of them: problem_id or problem, completion[, model, sample]",
    )
    p.add_argument("--problems", help="bundled, bundled:a,b, generated:N, a KernelBench dir, or a file")
    p.add_argument("--samples", type=int, help="completions per problem and model (k; default 1)")
    p.add_argument("--out", help="output directory (results.jsonl is resumed if present)")
    p.add_argument("--label", help="model name for completion rows without a 'model' field")
    p.add_argument("--prompt-backend", choices=["triton", "cuda"], help="what the prompt asks for")
    p.add_argument(
        "--one-shot", action=argparse.BooleanOptionalAction, default=None, help="include the one-shot example"
    )
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="generation seed, the same for every model (default 0)")
    p.add_argument("--batch-size", type=int, help="prompts per generation batch (default 8)")
    p.add_argument("--generation-backend", help="auto, vllm or transformers")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="sandbox device")
    p.add_argument("--workers", type=int, help="sandbox workers (default: one per GPU, or per core)")
    p.add_argument("--timeout", type=float, help="sandbox run budget per sample in seconds (default 60)")
    p.add_argument("--address", help="Ray cluster address for the sandbox pool")
    p.add_argument("--reward-config", help="reward weights YAML (default: the built-in weights)")
    p.add_argument("--pass-k", type=_int_list, help="k values for pass@k, e.g. 1,5,10 (default: 1 and k)")
    p.add_argument(
        "--turns",
        type=int,
        help="answers per sample (default 1): each later turn gets the previous one's sandbox feedback; "
        "metrics are reported after every turn",
    )
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    p.set_defaults(func=cmd_eval)
