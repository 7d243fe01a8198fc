"""Where curation's problems come from: a KernelBench-layout directory, the procedural generator, the bundled set.

Every source yields the same `Task` record, so filters, dedup, teachers and the dataset writer never care
where a problem came from. A task's id is the sandbox's problem id (a hash of the source), so the same file
is the same task wherever it lives, and stage files written by an interrupted run stay valid on resume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelrl.sandbox.problem import Problem, ProblemError, bundled_problems, load_problem, problem_id

# Categories named after the generator's (data_pipeline.generate.CATEGORIES) plus what KernelBench adds.
# Name keywords, first match wins: "conv" before "norm" (Conv2d_GroupNorm is a conv problem).
_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("attention", "attn", "transformer")),
    ("conv", ("conv",)),
    ("matmul", ("matmul", "gemm", "matrix", "linear", "bmm", "einsum", "mm_")),
    ("softmax", ("softmax", "logsumexp")),
    ("normalization", ("norm",)),
    ("pooling", ("pool",)),
    ("loss", ("loss", "cross_entropy", "divergence", "hinge", "triplet", "cosine_similarity")),
    ("cumulative", ("cumsum", "cumprod", "cumulative", "scan")),
    ("reduction", ("reduction", "argmax", "argmin", "sum", "mean", "max", "min", "prod")),
    (
        "elementwise",
        (
            "relu",
            "gelu",
            "sigmoid",
            "tanh",
            "swish",
            "silu",
            "elu",
            "softplus",
            "softsign",
            "hardtanh",
            "mish",
            "selu",
            "add",
            "mul",
            "scale",
            "clamp",
            "elementwise",
            "activation",
        ),
    ),
)
# KernelBench levels when the name says nothing: level 2 is fused chains, level 3 whole architectures.
_LEVEL_CATEGORY = {"level2": "fusion", "level3": "architecture", "level4": "architecture"}
_LEVEL_DIR = re.compile(r"^level[_-]?\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    """One problem to curate. `spec` is the generator's description (for the synthesiser), never persisted."""

    id: str
    name: str
    category: str
    level: str | None
    source: str
    origin: str  # "generated", "bundled" or "dir:<path>"
    spec: Any = field(default=None, compare=False, repr=False)

    @property
    def problem(self) -> Problem:
        return Problem(self.id, self.name, self.source, level=self.level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "level": self.level,
            "origin": self.origin,
            "source": self.source,
        }


def infer_category(name: str, level: str | None = None) -> str:
    """A category from a problem's file or folder name (KernelBench names say what they compute)."""
    words = name.lower()
    if level and level.lower() in _LEVEL_CATEGORY and words.count("_") >= 2:
        return _LEVEL_CATEGORY[level.lower()]  # "12_Gemm_Multiply_LeakyReLU": a fusion, not a matmul
    for category, keys in _KEYWORDS:
        if any(k in words for k in keys):
            return category
    return _LEVEL_CATEGORY.get((level or "").lower(), "other")


def from_directory(path: str | Path, levels: list[str] | None = None, limit: int | None = None) -> list[Task]:
    """Every problem file below `path` (a KernelBench checkout, or DIR/<category>/<name>.py).

    The level comes from a `levelN` path component; the category from a folder between the root (or the
    level folder) and the file, else from the file name.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ProblemError(f"problem directory not found: {root}")
    wanted = {lv.lower() for lv in levels} if levels else None
    tasks = []
    for file in sorted(root.rglob("*.py")):
        parts = file.relative_to(root).parts[:-1]
        level = next((p.lower() for p in parts if _LEVEL_DIR.match(p)), None)
        if wanted is not None and level not in wanted:
            continue
        try:
            p = load_problem(file)
        except ProblemError:
            continue  # helpers, __init__.py, solutions: not problems
        folders = [x for x in parts if not _LEVEL_DIR.match(x)]
        category = folders[-1] if folders and level is None else infer_category(file.stem, level)
        tasks.append(Task(p.id, file.stem, category, level, p.source, f"dir:{root}"))
        if limit is not None and len(tasks) >= limit:
            break
    return tasks


def from_generator(n: int, seed: int = 0, categories: list[str] | None = None) -> list[Task]:
    """Procedural problems; the same (n, seed, categories) gives the same tasks, so a resumed run matches."""
    from kernelrl.data_pipeline.generate import generate_problems

    return [
        Task(problem_id(g.source), g.name, g.category, None, g.source, "generated", spec=g)
        for g in generate_problems(n, seed=seed, categories=categories)
    ]


def from_bundled(names: list[str] | None = None) -> list[Task]:
    """The bundled problems (they also serve as the evaluation split that dedup decontaminates against)."""
    bundled = bundled_problems()
    unknown = sorted(set(names or []) - set(bundled))
    if unknown:
        raise ProblemError(f"no bundled problem {', '.join(unknown)}; choose from {', '.join(bundled)}")
    return [
        Task(p.id, p.name, infer_category(p.name), None, p.source, "bundled")
        for p in bundled.values()
        if names is None or p.name in names
    ]
