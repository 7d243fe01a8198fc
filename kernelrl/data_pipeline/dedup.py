"""Dedup and decontamination: one problem once in the pool, and nothing the evaluation sets already ask.

Three tests, cheapest first, each against the pool seen so far (first occurrence wins) and against the
evaluation sets:

- exact: sha256 of the normalised source (comments, docstrings, formatting dropped via the AST);
- near: MinHash-LSH (datasketch) over token 5-grams of the normalised source, with the Jaccard estimate
  checked before a match counts (LSH only proposes candidates);
- op signature (eval sets only): the sequence of torch ops and modules `Model.forward` calls, read from the
  AST (``self.fc`` resolved to ``nn.Linear`` through ``__init__``; shape plumbing such as view/reshape left
  out). Two problems that chain the same ops differ only in sizes and names, which is contamination for
  evaluation purposes. Signatures shorter than `op_signature_min_ops` are not matched: a single-op problem
  ("relu") would otherwise match every problem that uses that op.

Fingerprints are computed in worker processes when the pool is large (100k problems in well under a minute
on two cores; see bench/curation_throughput.py).
"""

from __future__ import annotations

import ast
import hashlib
import re
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from pydantic import BaseModel, ConfigDict, Field

SHINGLE = 5
# Triple-quoted strings (docstrings) and comments; a '#' inside a one-line string is rare in problem files.
_NOISE = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|#[^\n]*')
_MODEL_CLASS = re.compile(r"^class Model\b.*?(?=^[^\s#)\]}]|\Z)", re.MULTILINE | re.DOTALL)
_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\S")
# Calls that move or describe data rather than compute: they differ between equivalent formulations.
_PLUMBING = frozenset(
    """view reshape permute transpose contiguous unsqueeze squeeze flatten unflatten expand expand_as size dim
    shape to float double half bfloat16 int long cuda cpu clone detach type_as view_as numel item chunk split
    unbind stack cat narrow select repeat t len range int float tuple list super print isinstance getattr""".split()
)
_ALIASES = {"mm": "matmul", "bmm": "matmul", "einsum": "matmul", "__matmul__": "matmul", "silu": "swish"}
_BINOPS = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.MatMult: "matmul",
    ast.Pow: "pow",
    ast.FloorDiv: "floordiv",
    ast.Mod: "mod",
}


class DedupConfig(BaseModel):
    """Thresholds and evaluation sets (paths to KernelBench-layout directories, or "bundled")."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    near_threshold: float = Field(default=0.9, gt=0, le=1)  # within the pool
    eval_threshold: float = Field(default=0.8, gt=0, le=1)  # against the evaluation sets: stricter removal
    num_perm: int = Field(default=128, ge=16)
    eval_sets: list[str] = Field(default_factory=lambda: ["bundled"])
    op_signature: bool = True
    op_signature_min_ops: int = Field(default=2, ge=1)
    workers: int = Field(default=2, ge=1)


@dataclass
class Fingerprint:
    exact: str
    minhash: np.ndarray  # datasketch hash values (uint32, affine32 scheme)
    signature: tuple[str, ...]


@dataclass
class Removal:
    id: str
    name: str
    reason: str  # duplicate_exact | duplicate_near | eval_exact | eval_near | eval_op_signature
    match_id: str
    match_name: str
    similarity: float | None = None
    signature: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- fingerprints


def normalize_source(source: str) -> str:
    """The source as one space-separated token stream: comments, docstrings and formatting gone.

    Regex-based rather than ast.unparse: 10x faster, which is what makes 100k problems cheap.
    """
    return " ".join(_tokens(source))


def _tokens(source: str) -> list[str]:
    return _TOKEN.findall(_NOISE.sub(" ", source))


def _call_name(func: ast.expr) -> str | None:
    """`torch.nn.functional.relu` -> "relu"; `x.sum` -> "sum"; `F.gelu` -> "gelu"."""
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def op_signature(source: str) -> tuple[str, ...]:
    """The ops `Model.forward` runs, in evaluation order (arguments before the call), lower-cased."""
    block = _MODEL_CLASS.search(source)  # parsing the class alone halves the cost
    try:
        tree = ast.parse(block.group(0) if block else source)
    except SyntaxError:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return ()
    model = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"), None)
    if model is None:
        return ()
    methods = {f.name: f for f in model.body if isinstance(f, ast.FunctionDef)}
    modules: dict[str, str] = {}  # self.<attr> -> module class, from __init__
    for node in ast.walk(methods["__init__"]) if "__init__" in methods else ():
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            name = _call_name(node.value.func)
            for t in node.targets:
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    and name
                ):
                    modules[t.attr] = name
    ops: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            visit(child)  # post-order: arguments are computed before the op that uses them
        name = None
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self":
                name = modules.get(f.attr)  # self.fc(x) -> "Linear"; self.helper(x) -> nothing
            else:
                name = _call_name(f)
        elif isinstance(node, ast.BinOp):
            name = _BINOPS.get(type(node.op))
        if name:
            name = name.lower().removesuffix("_")
            name = _ALIASES.get(name, name)
            if name not in _PLUMBING and name not in ("dim", "self"):
                ops.append(name)

    if "forward" in methods:
        for stmt in methods["forward"].body:
            visit(stmt)
    return tuple(ops)


_PERMS: dict[int, Any] = {}


def _minhash(tokens: list[str], num_perm: int) -> np.ndarray:
    if num_perm not in _PERMS:
        _PERMS[num_perm] = MinHash(num_perm=num_perm, seed=1).permutations
    m = MinHash(num_perm=num_perm, hashfunc=zlib.crc32, permutations=_PERMS[num_perm], scheme="affine32")
    grams = [" ".join(tokens[i : i + SHINGLE]).encode() for i in range(max(1, len(tokens) - SHINGLE + 1))]
    m.update_batch(grams)
    return m.hashvalues


def fingerprint(source: str, num_perm: int = 128) -> Fingerprint:
    tokens = _tokens(source)
    exact = hashlib.sha256(" ".join(tokens).encode()).hexdigest()
    return Fingerprint(exact, _minhash(tokens, num_perm), op_signature(source))


def _fingerprint_chunk(args: tuple[list[str], int]) -> list[Fingerprint]:
    sources, num_perm = args
    return [fingerprint(s, num_perm) for s in sources]


def fingerprints(sources: list[str], num_perm: int = 128, workers: int = 1) -> list[Fingerprint]:
    """Fingerprints of many sources, in order; in `workers` processes when there are enough to pay off."""
    if workers <= 1 or len(sources) < 2000:
        return [fingerprint(s, num_perm) for s in sources]
    size = max(500, len(sources) // (workers * 8))
    chunks = [(sources[i : i + size], num_perm) for i in range(0, len(sources), size)]
    with ProcessPoolExecutor(workers) as ex:
        return [fp for part in ex.map(_fingerprint_chunk, chunks) for fp in part]


# ------------------------------------------------------------------------------------------- dedup


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def _lean(values: np.ndarray) -> LeanMinHash:
    return LeanMinHash(seed=1, hashvalues=values, scheme="affine32")


class _Index:
    """Exact-hash dict + MinHash LSH over a set of problems; LSH candidates are confirmed by their estimate."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.exact: dict[str, int] = {}
        self.values: list[np.ndarray] = []
        self.keys: list[tuple[str, str]] = []

    def add(self, key: tuple[str, str], fp: Fingerprint, mh: LeanMinHash | None = None) -> None:
        i = len(self.keys)
        self.keys.append(key)
        self.values.append(fp.minhash)
        self.exact.setdefault(fp.exact, i)
        self.lsh.insert(i, mh or _lean(fp.minhash), check_duplication=False)

    def match(self, fp: Fingerprint, mh: LeanMinHash | None = None) -> tuple[str, int, float] | None:
        """("exact" | "near", index, similarity) of the closest indexed problem, or None."""
        if fp.exact in self.exact:
            return "exact", self.exact[fp.exact], 1.0
        if not self.keys:
            return None
        best = None
        for i in self.lsh.query(mh or _lean(fp.minhash)):
            sim = _jaccard(fp.minhash, self.values[i])
            if sim >= self.threshold and (best is None or sim > best[2]):
                best = ("near", i, sim)
        return best


def load_eval_sets(specs: Iterable[str]) -> list[tuple[str, str, str]]:
    """(id, name, source) of every evaluation problem: "bundled", or a directory of problem files."""
    from kernelrl.data_pipeline.sources import from_bundled, from_directory

    out = []
    for spec in specs:
        tasks = from_bundled() if spec == "bundled" else from_directory(spec)
        label = "bundled" if spec == "bundled" else spec
        out += [(t.id, f"{label}:{t.level + '/' if t.level else ''}{t.name}", t.source) for t in tasks]
    return out


def deduplicate(
    tasks: list[Any],
    config: DedupConfig | None = None,
    eval_problems: list[tuple[str, str, str]] | None = None,
) -> tuple[list[Any], list[Removal]]:
    """Kept tasks (input order) and what was removed and why. Tasks need id, name and source.

    `eval_problems` defaults to `load_eval_sets(config.eval_sets)`.
    """
    config = config or DedupConfig()
    if eval_problems is None:
        eval_problems = load_eval_sets(config.eval_sets)
    fps = fingerprints([t.source for t in tasks], config.num_perm, config.workers)
    eval_fps = fingerprints([s for _, _, s in eval_problems], config.num_perm)
    evals = _Index(config.eval_threshold, config.num_perm)
    signatures: dict[tuple[str, ...], tuple[str, str]] = {}
    for (eid, ename, _), fp in zip(eval_problems, eval_fps, strict=True):
        evals.add((eid, ename), fp)
        if len(fp.signature) >= config.op_signature_min_ops:
            signatures.setdefault(fp.signature, (eid, ename))
    pool = _Index(config.near_threshold, config.num_perm)
    kept, removed = [], []
    for task, fp in zip(tasks, fps, strict=True):
        mh = _lean(fp.minhash)  # built once: both indexes read it
        hit = evals.match(fp, mh)
        if hit:
            kind, i, sim = hit
            removed.append(Removal(task.id, task.name, f"eval_{kind}", *evals.keys[i], round(sim, 3)))
            continue
        if config.op_signature and fp.signature in signatures:
            eid, ename = signatures[fp.signature]
            removed.append(
                Removal(task.id, task.name, "eval_op_signature", eid, ename, None, list(fp.signature))
            )
            continue
        hit = pool.match(fp, mh)
        if hit:
            kind, i, sim = hit
            removed.append(Removal(task.id, task.name, f"duplicate_{kind}", *pool.keys[i], round(sim, 3)))
            continue
        pool.add((task.id, task.name), fp, mh)
        kept.append(task)
    return kept, removed
