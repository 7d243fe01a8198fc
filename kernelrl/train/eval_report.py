"""summary.json, report.md and its plots, built from results.jsonl rows alone so any run can be re-reported.

Speed figures are null in JSON, "—" in tables and not plotted when nothing was timed (CPU runs): a missing
measurement must never look like a slow kernel.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelrl.sandbox.verdict import STATUSES
from kernelrl.train.eval_metrics import FAST_P, Outcome, default_ks, group_metrics, metrics_by_turn, was_timed

if TYPE_CHECKING:
    from kernelrl.train.evaluate import EvalConfig, EvalProblem

SCHEMA_VERSION = 1
PER_PROBLEM_MAX = 100  # the per-problem table is left out of report.md above this many problems

DEFINITIONS = {
    "correct": "verdict status 'ok': every numerical check passed and no hack was detected",
    "compile_rate": "samples whose candidate compiled / samples scored",
    "correctness": "correct samples / samples scored (an infra_error counts as not correct)",
    "pass_at_k": "mean over all N problems of 1 - C(n-c,k)/C(n,k); a problem without samples counts 0; "
    "null when some problem has fewer than k samples",
    "fast_p": "(1/N) * #problems whose sample 0 is correct with speedup > p; N = all problems, missing = "
    "failure; sample 0 only (KernelBench scores one sample per problem); null when the model's run timed "
    "nothing (CPU)",
    "geomean_speedup": "geometric mean of speedup over correct timed samples (all k); null when none",
    "geomean_sol_fraction": "geometric mean over correct timed samples of speed-of-light time / measured "
    "time (the problem's roofline bound on the GPU that timed it; 1 = the hardware limit); null when none",
    "hack_rate": "samples with status hack_detected / samples scored; by kind: samples flagged with it",
    "verdicts": "samples per verdict status",
}


def build_summary(
    config: EvalConfig,
    problems: list[EvalProblem],
    rows: list[dict[str, Any]],
    sources: dict[str, str],
    runs: dict[str, dict[str, Any]],
    histories: dict[tuple[str, str, int], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The summary.json document: overall, per level and per category metrics of every model (of the first
    answer), and with ``histories`` (a multi-turn evaluation: every sample's rows by turn) the metrics after each
    turn."""
    per_model: dict[str, list[Outcome]] = {m: [] for m in sources}
    for r in rows:
        per_model.setdefault(r["model"], []).append(Outcome.from_row(r))
    most = max(
        (n for outs in per_model.values() for n in Counter(o.problem_id for o in outs).values()), default=1
    )
    ks = sorted(set(config.pass_k)) if config.pass_k else default_ks(most)
    ids = [ep.id for ep in problems]
    levels = _groups(problems, "level")
    categories = _groups(problems, "category")
    models = {}
    for model, outs in per_model.items():
        timed = was_timed(outs)
        models[model] = {
            "source": sources.get(model, "completions"),
            "timed": timed,
            "overall": asdict(group_metrics(outs, ids, ks, timed)),
            "by_level": {k: asdict(group_metrics(outs, v, ks, timed)) for k, v in levels.items()},
            "by_category": {k: asdict(group_metrics(outs, v, ks, timed)) for k, v in categories.items()},
            "run": runs.get(model, {}),
        }
    verdicts = [r.get("verdict") or {} for r in rows]
    turns = _over_turns(config, ids, ks, models, histories) if histories is not None else None
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "problems": {
            "spec": config.problems,
            "n": len(problems),
            "by_level": {k: len(v) for k, v in levels.items()},
            "by_category": {k: len(v) for k, v in categories.items()},
            "list": [
                {"id": ep.id, "name": ep.name, "level": ep.level, "category": ep.category} for ep in problems
            ],
        },
        "samples_per_problem": config.samples if config.models else None,
        "pass_k": ks,
        "fast_p_thresholds": list(FAST_P),
        "fast_p_sample": 0,
        "devices": dict(Counter(v.get("device", "?") for v in verdicts)),
        "isolation": dict(Counter(v.get("isolation", "?") for v in verdicts)),
        "timed": any(m["timed"] for m in models.values()),
        "definitions": DEFINITIONS,
        "config": config.model_dump(),
        "models": models,
        **({"turns": turns} if turns is not None else {}),
    }


def _over_turns(
    config: EvalConfig,
    ids: list[str],
    ks: list[int],
    models: dict[str, Any],
    histories: dict[tuple[str, str, int], list[dict[str, Any]]],
) -> dict[str, Any]:
    """Per model, the metrics after each turn (turn 1 = single-turn) and how many samples answered each turn."""
    out: dict[str, Any] = {"n": config.turns, "models": {}}
    for model, info in models.items():
        mine = {k: [Outcome.from_row(r) for r in rows] for k, rows in histories.items() if k[0] == model}
        per_turn = metrics_by_turn(mine, ids, ks, info["timed"], config.turns)
        out["models"][model] = [
            {
                "turn": t,
                "answered": sum(len(h) >= t for h in mine.values()),
                **{k: getattr(m, k) for k in _TURN_KEYS},
            }
            for t, m in enumerate(per_turn, 1)
        ]
    return out


_TURN_KEYS = (
    "n_samples",
    "compile_rate",
    "correctness",
    "fast_p",
    "geomean_speedup",
    "hack_rate",
    "mean_reward",
)


def _groups(problems: list[EvalProblem], attr: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ep in problems:
        key = getattr(ep, attr)
        if key is not None:
            out.setdefault(key, []).append(ep.id)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- formatting


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def times(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def num(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _metric_cells(m: dict[str, Any], ks: list[int]) -> list[str]:
    return [
        str(m["n_problems"]),
        str(m["n_samples"]),
        pct(m["compile_rate"]),
        pct(m["correctness"]),
        *(pct(m["pass_at_k"][str(k)]) for k in ks),
        *(pct(v) for v in m["fast_p"].values()),
        times(m["geomean_speedup"]),
        pct(m["hack_rate"]),
        num(m["mean_reward"]),
    ]


def _metric_header(first: str, summary: dict[str, Any]) -> list[str]:
    return [
        first,
        "problems",
        "samples",
        "compiled",
        "correct",
        *(f"pass@{k}" for k in summary["pass_k"]),
        *(f"fast_{p:g}" for p in summary["fast_p_thresholds"]),
        "geomean speedup",
        "hack rate",
        "mean reward",
    ]


# ---------------------------------------------------------------- outputs


def write_outputs(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """summary.json, the PNG plots and report.md in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots = make_plots(out, summary, rows)
    (out / "report.md").write_text(render_report(summary, rows, plots))


def render_report(summary: dict[str, Any], rows: list[dict[str, Any]], plots: dict[str, str]) -> str:
    ks, models = summary["pass_k"], summary["models"]
    cfg = summary["config"]
    devices = ", ".join(f"{d} ({n})" for d, n in summary["devices"].items()) or "none"
    isolation = ", ".join(summary["isolation"]) or "none"
    parts = [
        "# Checkpoint evaluation",
        f"Problems: `{summary['problems']['spec']}`, N = {summary['problems']['n']}. "
        + (
            f"Models sampled {summary['samples_per_problem']} times per problem (seed {cfg['seed']}, "
            f"temperature {cfg['temperature']}, top_p {cfg['top_p']}, max_new_tokens "
            f"{cfg['max_new_tokens']}; the same prompts and seed for every model). "
            if summary["samples_per_problem"]
            else ""
        )
        + f"Sandbox device: {devices}; isolation: {isolation}. Created {summary['created']}.",
        "Correct = verdict `ok` (all checks passed, no hack). pass@k: unbiased estimator over all N problems "
        "(a problem without samples counts 0). fast_p: share of all N problems whose **sample 0** is correct "
        "with speedup > p (KernelBench's one-sample protocol; missing = failure). Geomean speedup: over all "
        "correct timed samples. — = not measured / not defined (never zero).",
        "## Overall",
        _table(
            _metric_header("model", summary),
            [[f"`{m}`", *_metric_cells(v["overall"], ks)] for m, v in models.items()],
        ),
    ]
    if "comparison" in plots:
        parts.append(f"![checkpoint comparison]({plots['comparison']})")
    if "turns" in summary:
        parts.append(_turns_section(summary, plots))
    parts.append("## Speed")
    if summary["timed"]:
        parts.append(
            _table(
                ["model", "correct timed samples", "geomean speedup", "SOL fraction (geomean)"],
                [
                    [
                        f"`{m}`",
                        str(v["overall"]["n_timed"]),
                        times(v["overall"]["geomean_speedup"]),
                        pct(v["overall"].get("geomean_sol_fraction")),
                    ]
                    for m, v in models.items()
                ],
            )
        )
    if "speedup" in plots:
        parts.append(f"![speedup distribution]({plots['speedup']})")
    else:
        parts.append(
            "Nothing was timed: speed is not measured on CPU (the Triton interpreter checks correctness only), "
            "so fast_p and the geometric-mean speedup are null rather than zero."
        )
    for title, key in (("By category", "by_category"), ("By level", "by_level")):
        if not summary["problems"][key]:
            continue
        parts.append(f"## {title}")
        if key == "by_category" and "categories" in plots:
            parts.append(f"![correctness by category]({plots['categories']})")
        for m, v in models.items():
            parts.append(f"**`{m}`**")
            parts.append(
                _table(
                    _metric_header(key[3:], summary),
                    [[g, *_metric_cells(gm, ks)] for g, gm in v[key].items()],
                )
            )
    parts.append("## Verdicts")
    seen = {s for v in models.values() for s in v["overall"]["verdicts"]}
    statuses = [s for s in STATUSES if s in seen]
    parts.append(
        _table(
            ["model", *statuses],
            [
                [f"`{m}`", *(str(v["overall"]["verdicts"].get(s, 0)) for s in statuses)]
                for m, v in models.items()
            ],
        )
    )
    parts.append("## Hacks")
    hack_rows = [
        [f"`{m}`", h, str(n), pct(v["overall"]["hack_rate_by_kind"][h])]
        for m, v in models.items()
        for h, n in v["overall"]["hack_counts"].items()
    ]
    parts.append(
        _table(["model", "hack", "samples", "rate"], hack_rows) if hack_rows else "No hack detected."
    )
    parts.append(_per_problem(summary, rows))
    notes = [f"`{m}`: {n}" for m, v in models.items() for n in v["overall"]["notes"]]
    if notes:
        parts.append("## Notes\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def _turns_section(summary: dict[str, Any], plots: dict[str, str]) -> str:
    """Metrics after each turn of a multi-turn evaluation (turn 1 is the single-turn result above)."""
    header = ["model", "turn", "answered", "compiled", "correct"]
    header += [f"fast_{p:g}" for p in summary["fast_p_thresholds"]] + ["hack rate", "mean reward"]
    rows = [
        [
            f"`{m}`",
            str(r["turn"]),
            str(r["answered"]),
            pct(r["compile_rate"]),
            pct(r["correctness"]),
            *(pct(v) for v in r["fast_p"].values()),
            pct(r["hack_rate"]),
            num(r["mean_reward"]),
        ]
        for m, per_turn in summary["turns"]["models"].items()
        for r in per_turn
    ]
    text = (
        f"## Over turns\n\nUp to {summary['turns']['n']} answers per sample; each later answer saw the sandbox's "
        "feedback on the previous one (kernelrl.rewards.feedback). After turn t, every sample counts with its "
        "latest answer so far (a solved episode stops); turn 1 is the single-turn evaluation.\n\n"
        + _table(header, rows)
    )
    if "turns" in plots:
        text += f"\n\n![correctness after each turn]({plots['turns']})"
    return text


def _per_problem(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    problems = summary["problems"]["list"]
    if len(problems) > PER_PROBLEM_MAX:
        return f"## Per problem\nOver {PER_PROBLEM_MAX} problems: see results.jsonl."
    models = list(summary["models"])
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["problem_id"], r["model"]), []).append(r)
    table = []
    for p in sorted(problems, key=lambda p: (p["category"], p["name"])):
        line = [p["name"], p["category"]]
        for m in models:
            rs = sorted(cells.get((p["id"], m), []), key=lambda r: r["sample"])
            ok = sum((r.get("verdict") or {}).get("status") == "ok" for r in rs)
            first = (rs[0].get("verdict") or {}).get("status", "?") if rs else ""
            line.append(f"{ok}/{len(rs)} ({first})" if rs else "missing")
        table.append(line)
    return (
        "## Per problem\nCorrect samples / samples (status of the first sample); missing = no sample, counted "
        "as a failure.\n\n" + _table(["problem", "category", *(f"`{m}`" for m in models)], table)
    )


def make_plots(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str]:
    """PNG files next to report.md; returns {plot: file name} for those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]
    drawn: dict[str, str] = {}

    speedups = {
        m: [
            r["verdict"]["speedup"]
            for r in rows
            if r["model"] == m and r["verdict"]["status"] == "ok" and r["verdict"].get("speedup")
        ]
        for m in models
    }
    if any(speedups.values()):
        fig, ax = plt.subplots(figsize=(7, 4))
        everything = [s for v in speedups.values() for s in v]
        lo, hi = min(everything + [0.5]), max(everything + [2.0])
        bins = [lo * (hi / lo) ** (i / 30) for i in range(31)]
        for m, v in speedups.items():
            if v:
                ax.hist(v, bins=bins, histtype="step", linewidth=2, label=f"{m} (n={len(v)})")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}×")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("speedup over the PyTorch reference (×, log scale)")
        ax.set_ylabel("correct samples")
        ax.set_title("Speedup of correct samples")
        ax.legend(fontsize=8)
        drawn["speedup"] = _save(fig, out / "speedup.png")

    categories = list(summary["problems"]["by_category"])
    if categories:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(categories) * max(1, len(models)) ** 0.5), 4))
        _grouped_bars(
            ax,
            categories,
            {m: [v["by_category"][c]["correctness"] for c in categories] for m, v in models.items()},
        )
        ax.set_ylabel("correct samples")
        ax.set_title("Correctness by category (n/a: no samples)")
        drawn["categories"] = _save(fig, out / "correctness_by_category.png")

    if "turns" in summary:
        drawn["turns"] = _plot_turns(out, summary, plt)

    if len(models) > 1:
        ks = summary["pass_k"]
        metrics = {"compiled": "compile_rate", "correct": "correctness", f"pass@{ks[0]}": ks[0]}
        if ks[-1] != ks[0]:
            metrics[f"pass@{ks[-1]}"] = ks[-1]
        if any(v["overall"]["fast_p"]["1"] is not None for v in models.values()):
            metrics["fast_1"] = "fast_1"
        metrics["hack rate"] = "hack_rate"
        fig, ax = plt.subplots(figsize=(8, 4))
        _grouped_bars(
            ax,
            list(metrics),
            {m: [_metric(v["overall"], key) for key in metrics.values()] for m, v in models.items()},
        )
        ax.set_title("Checkpoint comparison (same problems, prompts and seed)")
        drawn["comparison"] = _save(fig, out / "comparison.png")
    return drawn


def _plot_turns(out: Path, summary: dict[str, Any], plt: Any) -> str:
    """Correctness (and fast_1 where timed) after each turn, one line per model."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, per_turn in summary["turns"]["models"].items():
        xs = [r["turn"] for r in per_turn]
        ax.plot(xs, [r["correctness"] or 0.0 for r in per_turn], marker="o", label=f"{m} correct")
        if any(r["fast_p"]["1"] is not None for r in per_turn):
            ax.plot(
                xs,
                [r["fast_p"]["1"] or 0.0 for r in per_turn],
                marker="s",
                linestyle="--",
                label=f"{m} fast_1",
            )
    ax.set_xticks(range(1, summary["turns"]["n"] + 1))
    ax.set_xlabel("turn (answers so far)")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.0%}")
    ax.set_title("Correctness after each turn")
    ax.legend(fontsize=8)
    return _save(fig, out / "turns.png")


def _metric(m: dict[str, Any], key: str | int) -> float | None:
    if isinstance(key, int):
        return m["pass_at_k"][str(key)]
    if key == "fast_1":
        return m["fast_p"]["1"]
    return m[key]


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float | None]]) -> None:
    """One cluster per group, one bar per model; None is drawn as an 'n/a' label, never as a zero bar."""
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [0.0 if v is None else v for v in values], width, label=label)
        for x, v in zip(xs, values, strict=True):
            ax.text(
                x,
                0.01 if v is None else v + 0.01,
                "n/a" if v is None else f"{v:.0%}",
                ha="center",
                fontsize=7,
            )
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 4 else 0)
    ax.set_ylim(0, 1.1)
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.0%}")
    if len(series) > 1:
        ax.legend(fontsize=8)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def print_overview(summary: dict[str, Any], out: Path) -> None:
    """A compact overall table on the terminal (report.md has everything), and where the files are."""
    from rich.console import Console
    from rich.table import Table

    ks = summary["pass_k"]
    table = Table(title=f"kernelrl eval: {summary['problems']['spec']} (N={summary['problems']['n']})")
    for h in (
        "model",
        "samples",
        "compiled",
        "correct",
        *(f"pass@{k}" for k in ks),
        "fast_1",
        "geomean",
        "SOL",
        "hacks",
    ):
        table.add_column(h, justify="left" if h == "model" else "right")
    for m, v in summary["models"].items():
        o = v["overall"]
        table.add_row(
            m,
            str(o["n_samples"]),
            pct(o["compile_rate"]),
            pct(o["correctness"]),
            *(pct(o["pass_at_k"][str(k)]) for k in ks),
            pct(o["fast_p"]["1"]),
            times(o["geomean_speedup"]),
            pct(o.get("geomean_sol_fraction")),
            pct(o["hack_rate"]),
        )
    console = Console()
    console.print(table)
    for m, per_turn in summary.get("turns", {}).get("models", {}).items():
        console.print(f"{m}: correct after each turn " + " -> ".join(pct(r["correctness"]) for r in per_turn))
    if not summary["timed"]:
        console.print("speed: not measured (nothing was timed; CPU runs check correctness only)")
    console.print(f"wrote {out / 'results.jsonl'}, {out / 'summary.json'}, {out / 'report.md'}")
