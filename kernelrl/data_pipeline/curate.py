"""Curation: problems -> dedup -> filters -> teacher samples -> sandbox verification -> ConCuR selection -> dataset.

    kernelrl curate --config recipes/data/demo_cpu.yaml
    python -m kernelrl.data_pipeline.curate --config recipes/data/demo_cpu.yaml [--until filter]

Every stage appends one JSON line per finished unit (a problem, a problem's samples from one teacher, a
verified sample) to a file in `work_dir`, tagged with a hash of the settings that produced it. A rerun
(after a crash, Ctrl-C or a changed later stage) reads those files and does only what is missing, so no
finished work is redone or lost; changing a stage's settings makes its old lines stale, not wrong.

Only samples the sandbox judges `ok` (correct on every shape variant and seed, no hack) that also pass the
rule rewards are kept; optionally, on a GPU, only those at least `min_speedup` faster than the reference.
ConCuR selection keeps each problem's `k_per_problem` shortest correct reasonings (shorter correct
reasoning trains better; reasoning length is recorded as a difficulty signal), then categories are capped.

Output (`output_dir`, a `datasets.DatasetDict` saved with `save_to_disk`):
- `train`: TRL conversational SFT rows, ``messages`` = system + user (`build_prompt`) + assistant (the answer);
- `rl`: prompt-only rows for GRPO, ``prompt`` messages plus the ``problem`` source the reward reads;
- with ``repair.enabled``, `train` also holds multi-turn repair examples (``repair_bug`` names the injected bug;
  kernelrl/data_pipeline/repair.py): the answer with a bug, the sandbox's feedback on it, the answer as the fix;
plus README.md (the dataset card: funnel, per-category counts, rejection reasons), lengths.png and
curation_report.json (every removal with its reason).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm.auto import tqdm

from kernelrl.data_pipeline.dedup import DedupConfig, deduplicate
from kernelrl.data_pipeline.filters import FilterConfig, ProblemFilter
from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.data_pipeline.sources import Task, from_bundled, from_directory, from_generator
from kernelrl.data_pipeline.teachers import TeacherConfig, TeacherError, make_teacher
from kernelrl.sandbox.problem import ProblemError

STAGES = ("sources", "dedup", "filter", "samples", "verify", "dataset")
# Verdicts that say nothing about the sample (the sandbox could not judge): retried by the next run.
UNJUDGED = frozenset({"infra_error", "not_executed"})
Hook = Callable[[str, dict[str, Any]], None]
# Teacher settings that change how fast samples come, not which: changing them keeps finished samples.
OPERATIONAL = {"batch_size", "concurrency", "max_retries", "request_timeout_s", "timeout_s"}


# ------------------------------------------------------------------------------------------- config


class SourceConfig(BaseModel):
    """One problem source: `generated` (n, seed, categories), `kernelbench` (path, levels), `bundled` (names)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["generated", "kernelbench", "bundled"]
    n: int | None = Field(default=None, ge=1)
    seed: int = 0
    categories: list[str] | None = None
    path: str | None = None
    levels: list[str] | None = None
    names: list[str] | None = None
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _required(self) -> SourceConfig:
        if self.kind == "generated" and self.n is None:
            raise ValueError("a generated source needs `n` (how many problems)")
        if self.kind == "kernelbench" and not self.path:
            raise ValueError("a kernelbench source needs `path` (a KernelBench-layout directory)")
        return self


class VerifyConfig(BaseModel):
    """The sandbox pool that verifies samples (see sandbox.SandboxPool / Evaluator)."""

    model_config = ConfigDict(extra="forbid")
    device: str = "auto"
    workers: int | None = Field(default=None, ge=1)
    address: str | None = None  # a Ray cluster ("auto", "ray://host:10001"); None = local Ray
    n_variants: int = Field(default=2, ge=1)
    n_seeds: int = Field(default=3, ge=1)
    element_budget: int = Field(default=1 << 14, ge=256)
    run_timeout_s: float = Field(default=60.0, gt=0)
    compile_timeout_s: float = Field(default=180.0, gt=0)
    reward_config: str | None = None  # reward weights YAML; the rule components gate samples too
    min_speedup: float | None = Field(default=None, gt=0)  # GPU only: keep samples at least this fast
    chunk: int = Field(default=256, ge=1)  # pairs in flight at once


class SelectConfig(BaseModel):
    """ConCuR selection and category balance."""

    model_config = ConfigDict(extra="forbid")
    k_per_problem: int = Field(default=1, ge=1)  # shortest correct reasonings kept per problem
    max_per_category: int | None = Field(default=None, ge=1)  # problems per category in `train`
    balance: bool = False  # also cap every category at the smallest category's count
    seed: int = 0


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rl_split: bool = True
    rl_problems: Literal["all", "solved", "unsolved"] = "all"  # which filtered problems go to `rl`
    rl_backend: Literal["triton", "cuda"] = "triton"
    one_shot: bool = True  # the prompts' one-shot example (False: compact prompts, e.g. a small model on CPU)
    push_to_hub: str | None = None  # a hub dataset id
    private: bool = True
    plot: bool = True


class RepairConfig(BaseModel):
    """Multi-turn repair examples (kernelrl/data_pipeline/repair.py): a selected answer with an injected bug, the
    sandbox's feedback on it, the answer as the fix; kept only when the bug really fails and the fix is `ok`."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # Share of the selected answers that also get a repair example.
    fraction: float = Field(default=1.0, gt=0, le=1)
    kinds: list[str] | None = None  # bug kinds (default: all of repair.INJECTORS)
    max_turns: int = Field(default=2, ge=2)  # the attempt count the feedback shows ("Attempt 1 of 2")
    seed: int = 0


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output_dir: str
    work_dir: str | None = None  # stage files; default: <output_dir>.work
    sources: list[SourceConfig] = Field(min_length=1)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    teachers: list[TeacherConfig] = Field(default_factory=lambda: [TeacherConfig()])
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    repair: RepairConfig = Field(default_factory=RepairConfig)

    @model_validator(mode="after")
    def _unique_teachers(self) -> CurateConfig:
        labels = [t.label for t in self.teachers]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"teachers: name {', '.join(dup)} used twice; give each teacher its own `name`")
        return self


class ConfigError(ValueError):
    """A recipe that cannot be used; the message is one line naming the file and the key."""


def load_config(path: str | Path, **overrides: Any) -> CurateConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"curation config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{p}: {_first_error(e)}") from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if err["type"] == "missing":
        return f"missing key {where!r}"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{where}: {msg}{more}"


def _hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- stage files


class StageFile:
    """Append-only JSONL of finished units, keyed; only lines written under the same settings hash count.

    A line cut off by a crash is dropped on open (and the file truncated to its last complete line), so
    the next append starts clean.
    """

    def __init__(self, path: Path, settings: str, key: Callable[[dict[str, Any]], Any]) -> None:
        self.path, self.settings, self.key = path, settings, key
        self.records: dict[Any, dict[str, Any]] = {}
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("settings") == settings:
                    self.records[key(rec)] = rec
        self._f = open(path, "a")  # noqa: SIM115 - closed in close()

    def add(self, rec: dict[str, Any]) -> None:
        rec = {**rec, "settings": self.settings}
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        self.records[self.key(rec)] = rec

    def close(self) -> None:
        self._f.close()


# ------------------------------------------------------------------------------------------- stages


def load_tasks(sources: list[SourceConfig]) -> list[Task]:
    tasks: list[Task] = []
    for s in sources:
        if s.kind == "generated":
            assert s.n is not None
            got = from_generator(s.n, s.seed, s.categories)
        elif s.kind == "kernelbench":
            assert s.path is not None
            got = from_directory(s.path, s.levels, s.limit)
        else:
            got = from_bundled(s.names)
        tasks += got[: s.limit] if s.limit else got
    return tasks


def _reasoning_chars(completion: str) -> int:
    from kernelrl.sandbox.candidate import extract_candidate

    return len(extract_candidate(completion).reasoning)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Curator:
    """Runs the stages for one config; `hook(stage, record)` is called after every record is written."""

    def __init__(self, config: CurateConfig, pool: Any = None, hook: Hook | None = None) -> None:
        self.config = config
        self.pool = pool
        self.hook = hook
        self.work = Path(config.work_dir or f"{config.output_dir.rstrip('/')}.work")
        self.work.mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []

    def _emit(self, stage: str, rec: dict[str, Any]) -> None:
        if self.hook:
            self.hook(stage, rec)

    def run(self, until: str = "dataset") -> dict[str, Any]:
        if until not in STAGES:
            raise ConfigError(f"unknown stage {until!r}; choose from {', '.join(STAGES)}")
        stop = STAGES.index(until)
        tasks = load_tasks(self.config.sources)
        with open(self.work / "tasks.jsonl", "w") as f:
            for t in tasks:
                f.write(json.dumps(t.to_dict()) + "\n")
        print(f"curate: {len(tasks)} problems from {len(self.config.sources)} source(s)", file=sys.stderr)
        state: dict[str, Any] = {"tasks": tasks}
        if stop >= 1:
            state["kept"], state["removals"] = self.dedup(tasks)
        if stop >= 2:
            state["filtered"], state["rejections"] = self.filter(state["kept"])
        if stop >= 3:
            state["samples"] = self.samples(state["filtered"])
        if stop >= 4:
            state["verdicts"] = self.verify(state["filtered"], state["samples"])
        if stop >= 5:
            return self.dataset(state)
        return {"stage": until, **{k: len(v) for k, v in state.items()}}

    def dedup(self, tasks: list[Task]) -> tuple[list[Task], list[dict[str, Any]]]:
        """Cached whole: cheap to redo, but its result must not drift between a run and its resume."""
        c = self.config.dedup
        if not c.enabled:
            return _unique(tasks), []
        key = _hash(c.model_dump(exclude={"workers"}), [t.id for t in tasks])
        path = self.work / "dedup.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("settings") == key:
                kept_ids = set(saved["kept"])
                return [t for t in _unique(tasks) if t.id in kept_ids], saved["removed"]
        kept, removed = deduplicate(tasks, c)
        rem = [r.to_dict() for r in removed]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": key, "kept": [t.id for t in kept], "removed": rem}))
        tmp.replace(path)
        print(
            f"curate: dedup kept {len(kept)}, removed {len(rem)} ({_counts(rem, 'reason')})", file=sys.stderr
        )
        return kept, rem

    def filter(self, tasks: list[Task]) -> tuple[list[Task], list[dict[str, Any]]]:
        c = self.config.filters
        if not c.enabled:
            return tasks, []
        stage = StageFile(
            self.work / "filter.jsonl", _hash(c.model_dump(exclude={"workers"})), lambda r: r["id"]
        )
        todo = [t for t in tasks if t.id not in stage.records]
        try:
            if todo:
                with ProblemFilter(c) as pf:
                    for res in tqdm(pf.run(todo), total=len(todo), desc="filter", unit="problem"):
                        rec = res.to_dict()
                        stage.add(rec)
                        self._emit("filter", rec)
        finally:
            stage.close()
        results = {t.id: stage.records[t.id] for t in tasks}
        kept = [t for t in tasks if results[t.id]["reason"] is None]
        return kept, [results[t.id] for t in tasks if results[t.id]["reason"] is not None]

    def samples(self, tasks: list[Task]) -> dict[tuple[str, str], list[str]]:
        """(task id, teacher) -> completions. A teacher that cannot run here is skipped with its message."""
        out: dict[tuple[str, str], list[str]] = {}
        stage_file = self.work / "samples.jsonl"
        for tc in self.config.teachers:
            settings = _hash(tc.model_dump(exclude=OPERATIONAL))
            stage = StageFile(stage_file, settings, lambda r: (r["task"], r["teacher"]))
            todo = [t for t in tasks if (t.id, tc.label) not in stage.records]
            try:
                if todo:
                    try:
                        teacher = make_teacher(tc)
                    except TeacherError as e:
                        self.notes.append(str(e))
                        print(f"curate: {e}", file=sys.stderr)
                        continue
                    try:
                        bar = tqdm(total=len(todo), desc=f"samples[{tc.label}]", unit="problem")
                        for i in range(0, len(todo), teacher.batch_size):
                            batch = todo[i : i + teacher.batch_size]
                            for t, texts in zip(batch, teacher.sample(batch), strict=True):
                                rec = {"task": t.id, "teacher": tc.label, "completions": texts}
                                stage.add(rec)
                                self._emit("samples", rec)
                            bar.update(len(batch))
                        bar.close()
                    finally:
                        teacher.close()
            finally:
                stage.close()
            for t in tasks:
                if (t.id, tc.label) in stage.records:
                    out[(t.id, tc.label)] = stage.records[(t.id, tc.label)]["completions"]
        return out

    def _scorer(self) -> Any:
        from kernelrl.rewards.compose import Scorer, load_config

        v = self.config.verify
        kwargs: dict[str, Any] = {
            "device": v.device,
            "n_variants": v.n_variants,
            "n_seeds": v.n_seeds,
            "element_budget": v.element_budget,
            "run_timeout_s": v.run_timeout_s,
            "compile_timeout_s": v.compile_timeout_s,
        }
        if v.workers:
            kwargs["num_workers"] = v.workers
        if v.address:
            kwargs["address"] = v.address
        reward = load_config(v.reward_config)
        if not reward.needs_verdict:
            raise ConfigError(
                f"verify.reward_config {v.reward_config}: weights no sandbox component; curation must run the sandbox"
            )
        return Scorer(reward, pool=self.pool, **kwargs)

    def verify(
        self, tasks: list[Task], samples: dict[tuple[str, str], list[str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(task id, completion sha) -> verification record; unjudged verdicts are retried next run."""
        v = self.config.verify
        settings = _hash(v.model_dump(exclude={"chunk", "workers", "address"}))
        stage = StageFile(self.work / "verify.jsonl", settings, lambda r: (r["task"], r["sha"]))
        by_id = {t.id: t for t in tasks}
        pending, seen = [], set()
        for (tid, teacher), texts in samples.items():
            if tid not in by_id:
                continue
            for i, text in enumerate(texts):
                key = (tid, _sha(text))
                done = stage.records.get(key)
                if key in seen or (done and done["status"] not in UNJUDGED):
                    continue
                seen.add(key)
                pending.append((by_id[tid], teacher, i, text))
        scorer = self._scorer() if pending else None
        try:
            bar = tqdm(total=len(pending), desc="verify", unit="sample", disable=not pending)
            for start in range(0, len(pending), v.chunk):
                chunk = pending[start : start + v.chunk]
                futures = scorer.submit([t.problem for t, *_ in chunk], [x[3] for x in chunk])
                index: dict[int, list[int]] = defaultdict(
                    list
                )  # the pool shares one future among equal pairs
                for j, f in enumerate(futures):
                    index[id(f)].append(j)
                unique = list({id(f): f for f in futures}.values())
                for f in as_completed(unique):
                    for j in index[id(f)]:
                        self._record(stage, scorer, chunk[j], f.result())
                        bar.update(1)
            bar.close()
        finally:
            stage.close()
            if scorer is not None and self.pool is None:
                scorer.close()
        return dict(stage.records)

    def _record(self, stage: StageFile, scorer: Any, pair: tuple[Task, str, int, str], verdict: Any) -> None:
        task, teacher, i, text = pair
        res = scorer.result(text, verdict)
        rec = {
            "task": task.id,
            "sha": _sha(text),
            "teacher": teacher,
            "index": i,
            "status": verdict.status,
            "hacks": verdict.hacks,
            "error": (verdict.error or "")[:300],
            "speedup": verdict.speedup,
            "device": verdict.device,
            "reward": res.reward,
            "components": res.components,
            "reasoning_chars": _reasoning_chars(text),
            "completion_chars": len(text),
        }
        stage.add(rec)
        self._emit("verify", rec)

    # --------------------------------------------------------------------------------------- selection

    def judge(self, rec: dict[str, Any]) -> str | None:
        """Why a verified sample is not usable, or None."""
        if rec["status"] != "ok":
            return f"status:{rec['status']}"
        if rec["hacks"]:
            return "hack"
        comps = rec.get("components") or {}
        for name, want in (("format", 1.0), ("kernel", 1.0), ("banned", 0.0)):
            if comps.get(name) is not None and comps[name] != want:
                return f"rule:{name}"
        gate = self.config.verify.min_speedup
        if gate is not None and rec.get("device") == "cuda":
            if rec.get("speedup") is None or rec["speedup"] < gate:
                return "slow"
        return None

    def dataset(self, state: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        tasks: list[Task] = state["filtered"]
        samples, verdicts = state["samples"], state["verdicts"]
        if cfg.verify.min_speedup is not None and any(r.get("device") == "cpu" for r in verdicts.values()):
            self.notes.append("min_speedup ignored for samples verified on CPU (nothing is timed there)")
        teacher_backend = {t.label: t.backend for t in cfg.teachers}
        sample_reasons: Counter[str] = Counter()
        per_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        n_samples: Counter[str] = Counter()
        correct: list[dict[str, Any]] = []
        for t in tasks:
            seen = set()
            for tc in cfg.teachers:
                for i, text in enumerate(samples.get((t.id, tc.label), [])):
                    sha = _sha(text)
                    if sha in seen:
                        sample_reasons["duplicate_sample"] += 1
                        continue
                    seen.add(sha)
                    n_samples[t.id] += 1
                    rec = verdicts.get((t.id, sha))
                    why = "unverified" if rec is None else self.judge(rec)
                    if why:
                        sample_reasons[why] += 1
                        continue
                    correct.append(rec)
                    per_task[t.id].append({**rec, "teacher": tc.label, "index": i, "text": text})
        # ConCuR: the k shortest correct reasonings per problem.
        selected: dict[str, list[dict[str, Any]]] = {}
        for tid, recs in per_task.items():
            recs.sort(key=lambda r: (r["reasoning_chars"], r["completion_chars"], r["teacher"], r["index"]))
            selected[tid] = recs[: cfg.select.k_per_problem]
            if len(recs) > len(selected[tid]):
                sample_reasons["not_selected"] += len(recs) - len(selected[tid])
        by_cat: dict[str, list[Task]] = defaultdict(list)
        for t in tasks:
            if t.id in selected:
                by_cat[t.category].append(t)
        cap = cfg.select.max_per_category
        if cfg.select.balance and by_cat:
            smallest = min(len(v) for v in by_cat.values())
            cap = smallest if cap is None else min(cap, smallest)
        if cap is not None:
            rng = random.Random(cfg.select.seed)
            for ts in by_cat.values():
                ordered = sorted(ts, key=lambda t: t.id)
                rng.shuffle(ordered)
                for t in ordered[cap:]:
                    sample_reasons["category_cap"] += len(selected.pop(t.id))
        rows = []
        for t in sorted(tasks, key=lambda t: (t.category, t.name)):
            for r in selected.get(t.id, []):
                prompt = build_prompt(
                    t.source, teacher_backend.get(r["teacher"], "triton"), cfg.output.one_shot
                )
                rows.append(
                    {
                        "messages": [*prompt, {"role": "assistant", "content": r["text"]}],
                        "problem": t.source,
                        "problem_id": t.id,
                        "name": t.name,
                        "category": t.category,
                        "level": t.level,
                        "origin": t.origin,
                        "teacher": r["teacher"],
                        "reasoning_chars": r["reasoning_chars"],
                        "completion_chars": r["completion_chars"],
                        "n_correct": len(per_task[t.id]),
                        "n_samples": n_samples[t.id],
                        "repair_bug": "",
                    }
                )
        repair_report = None
        if cfg.repair.enabled:
            repair_rows, repair_report = self.repairs(rows)
            rows += repair_rows
        rl_rows = []
        for t in sorted(tasks, key=lambda t: (t.category, t.name)):
            solved = bool(per_task.get(t.id))
            if cfg.output.rl_problems == "solved" and not solved:
                continue
            if cfg.output.rl_problems == "unsolved" and solved:
                continue
            lengths = [r["reasoning_chars"] for r in per_task.get(t.id, [])]
            rl_rows.append(
                {
                    "prompt": build_prompt(t.source, cfg.output.rl_backend, cfg.output.one_shot),
                    "problem": t.source,
                    "problem_id": t.id,
                    "name": t.name,
                    "category": t.category,
                    "level": t.level,
                    "n_correct": len(lengths),
                    "n_samples": n_samples[t.id],
                    "min_reasoning_chars": min(lengths) if lengths else None,
                }
            )
        lengths = [r["reasoning_chars"] for r in correct]
        report = self._report(state, rows, rl_rows, sample_reasons, lengths, per_task)
        if repair_report is not None:
            report["repair"] = repair_report
            report["funnel"]["repair_rows"] = repair_report["kept"]
        write_dataset(cfg, rows, rl_rows, report, correct)
        return report

    def repairs(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Repair examples from selected train rows: inject a bug, run both turns in the sandbox (resumable, in
        ``repair.jsonl``), keep the pairs whose bug is an honest failure and whose fix is `ok`."""
        from kernelrl.data_pipeline.repair import FAILURES, repair_case, repair_messages
        from kernelrl.rewards.episode import Episode, EpisodeConfig, turn_from_result

        c = self.config.repair
        cases = []
        for r in rows:
            rng = random.Random(f"{c.seed}:{r['problem_id']}:{_sha(r['messages'][-1]['content'])}")
            if rng.random() >= c.fraction:
                continue
            case = repair_case(r["messages"][-1]["content"], rng, c.kinds)
            if case is not None:
                cases.append((r, case))
        settings = _hash(
            c.model_dump(), self.config.verify.model_dump(exclude={"chunk", "workers", "address"})
        )
        stage = StageFile(self.work / "repair.jsonl", settings, lambda rec: (rec["task"], rec["sha"]))
        todo = [(r, case) for r, case in cases if (r["problem_id"], _sha(case.first)) not in stage.records]
        scorer = self._scorer() if todo else None
        try:
            for start in range(0, len(todo), self.config.verify.chunk):
                chunk = todo[start : start + self.config.verify.chunk]
                texts = [x for _, case in chunk for x in (case.first, case.fixed)]
                problems = [r["problem"] for r, _ in chunk for _ in (0, 1)]
                results = scorer.score(problems, texts)
                for i, (r, case) in enumerate(chunk):
                    first, fixed = results[2 * i], results[2 * i + 1]
                    turn = turn_from_result(case.first, first)
                    rec = {
                        "task": r["problem_id"],
                        "sha": _sha(case.first),
                        "kind": case.kind,
                        "status": turn.status,
                        "feedback": turn.feedback,
                        "fixed_status": fixed.verdict.status if fixed.verdict else "none",
                    }
                    stage.add(rec)
                    self._emit("repair", rec)
        finally:
            stage.close()
            if scorer is not None and self.pool is None:
                scorer.close()
        kept, rejected, kinds = [], Counter(), Counter()
        for r, case in cases:
            rec = stage.records.get((r["problem_id"], _sha(case.first)))
            why = (
                "unverified"
                if rec is None
                else f"bug:{rec['status']}"
                if rec["status"] not in FAILURES
                else f"fix:{rec['fixed_status']}"
                if rec["fixed_status"] != "ok"
                else None
            )
            if why:
                rejected[why] += 1
                continue
            kinds[case.kind] += 1
            episode = Episode(EpisodeConfig(max_turns=c.max_turns))
            observation = _observation(episode, rec)
            messages = repair_messages(r["messages"][:-1], case, observation)
            kept.append({**r, "messages": messages, "repair_bug": case.kind})
        report = {"made": len(cases), "kept": len(kept), "rejected": dict(rejected), "by_kind": dict(kinds)}
        print(f"curate: repair examples kept {len(kept)} of {len(cases)}", file=sys.stderr)
        return kept, report

    def _report(
        self,
        state: dict[str, Any],
        rows: list[dict[str, Any]],
        rl_rows: list[dict[str, Any]],
        sample_reasons: Counter[str],
        correct_lengths: list[int],
        per_task: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        tasks, kept, filtered = state["tasks"], state["kept"], state["filtered"]
        cat_of = {t.id: t.category for t in tasks}
        categories: dict[str, Counter[str]] = defaultdict(Counter)
        for t in tasks:
            categories[t.category]["loaded"] += 1
        for t in kept:
            categories[t.category]["after_dedup"] += 1
        for t in filtered:
            categories[t.category]["after_filters"] += 1
            if per_task.get(t.id):
                categories[t.category]["solved"] += 1
        for r in rows:
            categories[r["category"]]["train_rows"] += 1
        for r in rl_rows:
            categories[r["category"]]["rl_rows"] += 1
        teachers: dict[str, Counter[str]] = defaultdict(Counter)
        for rec in state["verdicts"].values():
            teachers[rec["teacher"]]["verified"] += 1
            teachers[rec["teacher"]]["accepted"] += self.judge(rec) is None
        return {
            "funnel": {
                "problems": len(tasks),
                "after_dedup": len(kept),
                "after_filters": len(filtered),
                "with_samples": sum(1 for t in filtered if any(k[0] == t.id for k in state["samples"])),
                "solved": sum(1 for t in filtered if per_task.get(t.id)),
                "train_rows": len(rows),
                "rl_rows": len(rl_rows),
            },
            "categories": {k: dict(v) for k, v in sorted(categories.items())},
            "dedup_reasons": dict(Counter(r["reason"] for r in state["removals"])),
            "filter_reasons": dict(Counter(r["reason"] for r in state["rejections"])),
            "sample_reasons": dict(sample_reasons),
            "teachers": {k: dict(v) for k, v in teachers.items()},
            "reasoning_chars": _summary(correct_lengths),
            "selected_reasoning_chars": _summary([r["reasoning_chars"] for r in rows]),
            "notes": self.notes,
            "removed": {
                "dedup": state["removals"],
                "filters": [
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "category": cat_of.get(r["id"]),
                        "reason": r["reason"],
                        "detail": r["detail"],
                    }
                    for r in state["rejections"]
                ],
            },
        }


def _observation(episode: Any, rec: dict[str, Any]) -> str:
    """The observation the model would read after the buggy attempt (attempt 1 of the episode)."""
    from kernelrl.rewards.episode import Turn

    episode.add(Turn(None, rec["status"], rec["feedback"]))
    return episode.observation()


def _unique(tasks: Iterable[Task]) -> list[Task]:
    seen, out = set(), []
    for t in tasks:
        if t.id not in seen:
            seen.add(t.id)
            out.append(t)
    return out


def _counts(recs: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(r[key] for r in recs).most_common()) or "none"


def _summary(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    s = sorted(values)
    return {
        "n": len(s),
        "min": s[0],
        "median": s[len(s) // 2],
        "max": s[-1],
        "mean": round(sum(s) / len(s), 1),
    }


# ------------------------------------------------------------------------------------------- output


def _features() -> tuple[Any, Any]:
    from datasets import Features, List, Value

    msg = {"role": Value("string"), "content": Value("string")}
    train = Features(
        {
            "messages": List(msg),
            "problem": Value("string"),
            "problem_id": Value("string"),
            "name": Value("string"),
            "category": Value("string"),
            "level": Value("string"),
            "origin": Value("string"),
            "teacher": Value("string"),
            "reasoning_chars": Value("int64"),
            "completion_chars": Value("int64"),
            "n_correct": Value("int64"),
            "n_samples": Value("int64"),
            # "" for a plain answer; the injected bug's kind for a repair example
            "repair_bug": Value("string"),
        }
    )
    rl = Features(
        {
            "prompt": List(msg),
            "problem": Value("string"),
            "problem_id": Value("string"),
            "name": Value("string"),
            "category": Value("string"),
            "level": Value("string"),
            "n_correct": Value("int64"),
            "n_samples": Value("int64"),
            "min_reasoning_chars": Value("int64"),
        }
    )
    return train, rl


def write_dataset(
    cfg: CurateConfig,
    rows: list[dict[str, Any]],
    rl_rows: list[dict[str, Any]],
    report: dict[str, Any],
    correct: list[dict[str, Any]],
) -> Path:
    """Save the DatasetDict, card, plot and report; the old output is replaced only once the new one is whole."""
    from datasets import Dataset, DatasetDict

    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()) and not (out / "dataset_dict.json").exists():
        raise ConfigError(
            f"output_dir {out} exists and is not a dataset written by `kernelrl curate`; choose another"
        )
    train_f, rl_f = _features()
    splits = {"train": Dataset.from_list(rows, features=train_f)}
    if cfg.output.rl_split:
        splits["rl"] = Dataset.from_list(rl_rows, features=rl_f)
    data = DatasetDict(splits)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    data.save_to_disk(str(tmp))
    plot = cfg.output.plot and _plot(tmp / "lengths.png", correct, rows)
    (tmp / "README.md").write_text(dataset_card(cfg, report, plot))
    (tmp / "curation_report.json").write_text(json.dumps(report, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    print(
        f"curate: wrote {out} (train {len(rows)} rows, rl {len(rl_rows) if cfg.output.rl_split else 0} rows)",
        file=sys.stderr,
    )
    if cfg.output.push_to_hub:
        push(data, out, cfg.output.push_to_hub, cfg.output.private)
    return out


def _plot(path: Path, correct: list[dict[str, Any]], selected: list[dict[str, Any]]) -> bool:
    """Histograms of reasoning and whole-answer length: every correct sample against those selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, label in (
        (axes[0], "reasoning_chars", "reasoning length (characters outside the code block)"),
        (axes[1], "completion_chars", "answer length (characters)"),
    ):
        a, b = [r[key] for r in correct], [r[key] for r in selected]
        if a or b:
            bins = np.histogram_bin_edges(a + b, bins=30)
            ax.hist(a, bins=bins, alpha=0.6, label=f"all correct ({len(a)})")
            ax.hist(b, bins=bins, alpha=0.6, label=f"selected for train ({len(b)})")
            ax.legend()
        ax.set_xlabel(label)
        ax.set_ylabel("samples")
    fig.suptitle("Verified samples (ConCuR: the shortest correct reasoning per problem is kept)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def dataset_card(cfg: CurateConfig, report: dict[str, Any], plot: bool) -> str:
    f = report["funnel"]
    cols = ["loaded", "after_dedup", "after_filters", "solved", "train_rows", "rl_rows"]
    cats = _table(
        ["category", *cols], [[c, *(v.get(k, 0) for k in cols)] for c, v in report["categories"].items()]
    )

    def reasons(d: dict[str, int]) -> str:
        return (
            _table(["reason", "count"], sorted(([k, v] for k, v in d.items()), key=lambda x: -x[1]))
            if d
            else "none"
        )

    teachers = _table(
        ["teacher", "verified", "accepted"],
        [[k, v.get("verified", 0), v.get("accepted", 0)] for k, v in report["teachers"].items()],
    )
    notes = "".join(f"- {n}\n" for n in report["notes"]) or "none\n"
    return f"""---
tags: [kernelrl, triton, gpu-kernels, sft, grpo]
---
# Curated kernel-writing dataset (kernelrl)

Made by `kernelrl curate`. Splits (`datasets.load_from_disk`):

- `train` ({f["train_rows"]} rows): TRL conversational format, `messages` = system + user prompt + the verified
  answer (reasoning, then one ```python block defining `ModelNew`). Extra columns: `problem` (source),
  `category`, `teacher`, `reasoning_chars` (ConCuR difficulty signal), `n_correct` / `n_samples`.
- `rl` ({f["rl_rows"]} rows): prompt-only, `prompt` messages plus `problem` (the KernelBench source the reward
  function reads), `name`, `category`, `n_correct`, `n_samples`, `min_reasoning_chars`.

Every answer was run in the kernelrl sandbox and kept only when its verdict was `ok` (correct on every shape
variant and seed, no reward hack detected) and it passed the rule rewards; per problem the
{cfg.select.k_per_problem} shortest correct reasoning(s) were kept.

## Funnel

{_table(["stage", "count"], [[k, v] for k, v in f.items()])}
{_repair_card(report.get("repair"))}
## Per category

{cats}

## Rejections

Dedup and decontamination (evaluation sets: {", ".join(cfg.dedup.eval_sets) or "none"}):

{reasons(report["dedup_reasons"])}

Problem filters (reference run in a subprocess):

{reasons(report["filter_reasons"])}

Samples:

{reasons(report["sample_reasons"])}

## Teachers

{teachers}

## Reasoning length

Characters of reasoning, all correct samples: {_fmt(report["reasoning_chars"])}; selected:
{_fmt(report["selected_reasoning_chars"])}.
{"![reasoning length histogram](lengths.png)" if plot else ""}

Every removed problem, with its reason, is listed in `curation_report.json`.

## Notes

{notes}
## Recipe

```yaml
{yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).strip()}
```
"""


def _repair_card(repair: dict[str, Any] | None) -> str:
    if not repair:
        return ""
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(repair["by_kind"].items())) or "none"
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(repair["rejected"].items())) or "none"
    return (
        f"\nRepair examples (multi-turn: an answer with an injected bug, the sandbox's feedback on it, the fix; "
        f"`repair_bug` names the bug): {repair['kept']} kept of {repair['made']} made; by kind: {kinds}; "
        f"rejected: {rejected}. The SFT loss falls on the fix only.\n"
    )


def _fmt(summary: dict[str, float] | None) -> str:
    if not summary:
        return "none"
    return f"n {summary['n']}, median {summary['median']} (min {summary['min']}, max {summary['max']})"


def push(data: Any, out: Path, repo: str, private: bool) -> None:
    """Push the splits, then our card (keeping the Hub's generated metadata header) and the plot."""
    from huggingface_hub import DatasetCard, HfApi

    data.push_to_hub(repo, private=private)
    card = DatasetCard.load(repo, repo_type="dataset")
    text = (out / "README.md").read_text().split("---\n", 2)[-1]
    DatasetCard(f"---\n{card.data.to_yaml()}\n---\n{text}").push_to_hub(repo, repo_type="dataset")
    api = HfApi()
    for name in ("lengths.png", "curation_report.json"):
        if (out / name).exists():
            api.upload_file(
                path_or_fileobj=str(out / name), path_in_repo=name, repo_id=repo, repo_type="dataset"
            )


# ------------------------------------------------------------------------------------------- entry points


def curate(
    config: CurateConfig, *, pool: Any = None, hook: Hook | None = None, until: str = "dataset"
) -> dict[str, Any]:
    """Run (or resume) a curation; returns the report (or stage counts when stopped early)."""
    return Curator(config, pool=pool, hook=hook).run(until)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("curate", help="curate problems and verified samples into SFT/RL datasets")
    _arguments(p)
    p.set_defaults(func=cmd_curate)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="curation recipe YAML (recipes/data/*.yaml)")
    p.add_argument("--output-dir", default=None, help="override output_dir")
    p.add_argument("--work-dir", default=None, help="override work_dir (stage files, for resume)")
    p.add_argument("--until", default="dataset", choices=STAGES, help="stop after this stage")


def cmd_curate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, output_dir=args.output_dir, work_dir=args.work_dir)
        report = curate(config, until=args.until)
    except (ConfigError, TeacherError, ProblemError) as e:
        print(f"kernelrl curate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k not in ("removed",)}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kernelrl.data_pipeline.curate", description=__doc__.splitlines()[0]
    )
    _arguments(p)
    return cmd_curate(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
