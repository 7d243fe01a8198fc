"""KernelBench-format problems: loaded from a file, a source string or a directory, with a stable id."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "bundled"


class ProblemError(ValueError):
    """A problem file that cannot be used, with the reason in the message."""


@dataclass(frozen=True)
class Problem:
    id: str  # content hash: the same source is the same problem wherever it lives
    name: str
    source: str
    path: str | None = None
    level: str | None = None  # KernelBench layout: "level1", ... taken from the path
    extras: dict[str, str] = field(
        default_factory=dict, compare=False, hash=False
    )  # bundled: solution, wrong, reasoning


def problem_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def validate_source(source: str, where: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ProblemError(f"{where}: syntax error at line {e.lineno}: {e.msg}") from None
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    missing = [n for n in ("Model", "get_inputs", "get_init_inputs") if n not in names]
    if missing:
        raise ProblemError(f"{where}: not a KernelBench problem, it defines no {', '.join(missing)}")


def load_problem(path_or_source: str | Path, name: str | None = None) -> Problem:
    """A problem from a path, or from source text (anything containing a newline is taken as source)."""
    text = str(path_or_source)
    if isinstance(path_or_source, Path) or "\n" not in text:
        path = Path(text)
        if not path.is_file():
            raise ProblemError(f"problem file not found: {path}")
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ProblemError(f"cannot read problem {path}: {e}") from None
        validate_source(source, str(path))
        level = next((p for p in path.parts if p.lower().startswith("level")), None)
        return Problem(problem_id(source), name or path.stem, source, str(path), level)
    validate_source(text, name or "<source>")
    return Problem(problem_id(text), name or f"problem_{problem_id(text)[:8]}", text)


def load_problems(directory: str | Path) -> list[Problem]:
    """Every problem file below a directory (recursively), in path order; non-problem .py files are skipped."""
    root = Path(directory)
    if not root.is_dir():
        raise ProblemError(f"problem directory not found: {root}")
    problems = []
    for path in sorted(root.rglob("*.py")):
        try:
            problems.append(load_problem(path))
        except ProblemError:
            continue
    return problems


def bundled_problems() -> dict[str, Problem]:
    """Our own problems, each with a correct Triton solution, a wrong one and a reasoning text."""
    out = {}
    for d in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "problem.py").is_file()):
        p = load_problem(d / "problem.py", name=d.name)
        extras = {
            k: (d / f).read_text()
            for k, f in (("solution", "solution.py"), ("wrong", "wrong.py"), ("reasoning", "reasoning.md"))
            if (d / f).is_file()
        }
        out[d.name] = Problem(p.id, d.name, p.source, p.path, None, extras)
    return out
