"""Pick the code to run out of a model completion, and tell which kernel backend it uses.

This module only reads text and parses it with `ast`; it never imports or runs candidate code.

Extraction contract (rewards, curation and the verifier rely on it):

1. Line endings are normalised to ``\\n``, and chat-template tokens trailing the text (``<|im_end|>``,
   ``<|endoftext|>``, ``</s>``, ``<eos>``, ...: trainers that decode with special tokens leave them after the
   closing fence) are dropped. An empty or whitespace-only completion is the format error "empty completion".
2. Fences follow CommonMark, with any indentation: a line of three or more backticks or tildes opens a block
   (for backticks the info string may not contain a backtick); the first word of the info string, lowercased,
   is the tag. The block ends at a line holding only the same character, at least as many times. Content lines
   lose the opening fence's indentation, so a block nested in a list item still parses.
3. A fence that is never closed means the completion was cut off: "code block is not closed (truncated
   completion?)", even when an earlier block is complete -- the model did not finish its answer.
4. Only blocks tagged ``python``, ``py``, ``python3``, ``py3`` or untagged are considered; ``cuda``, ``cpp``,
   ``bash`` ... blocks are illustrations. Of those, the LAST one with a line starting ``class ModelNew`` wins
   (models show drafts first and the final answer last). None: "no code block defines `class ModelNew`".
5. With no fence at all the whole text is the code, provided it has a ``class ModelNew`` line; otherwise
   "no code block found and no `class ModelNew` in the text".
6. The code must parse: "syntax error at line N: <message> -> <offending line>", N counted from the first
   line of the block. It must define ``class ModelNew`` at module level (also inside a module-level
   ``if``/``try``/``with``), with at least one base class (any expression: ``nn.Module``,
   ``torch.nn.Module``, ...) and a ``forward`` method, its own or inherited from a class in the same code.
   A base that is not in the code and is not ``nn.Module`` gets the benefit of the doubt. Several
   ``class ModelNew`` definitions are fine: the last one counts, as in Python.
7. ``code`` is None whenever ``format_error`` is set, so nothing unusable is ever run. ``sha256`` hashes the
   code (UTF-8), or the normalised text when there is no code. ``reasoning`` is the text outside the chosen
   block, stripped (all of it when no block was chosen, empty for a bare file).

Backend contract (`detect_backend`): "triton" when a function is decorated with ``triton.jit``,
``triton.autotune(...)`` or ``triton.heuristics(...)`` (under any import alias, e.g. ``from triton import jit``)
or ``triton.jit(f)`` is called; otherwise "cuda" when ``load_inline`` / ``cpp_extension.load`` is called or a
string contains ``__global__``; otherwise "none". Code that does not parse is "none".
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})
TRITON_DECORATORS = frozenset({"jit", "autotune", "heuristics"})
NN_MODULE_NAMES = frozenset({"Module", "nn.Module", "torch.nn.Module"})

ERR_EMPTY = "empty completion"
ERR_UNCLOSED = "code block is not closed (truncated completion?)"
ERR_NO_BLOCK = "no code block found and no `class ModelNew` in the text"
ERR_NO_MODELNEW_BLOCK = "no code block defines `class ModelNew`"
ERR_NOT_MODULE_LEVEL = "`class ModelNew` is not defined at module level"
ERR_NO_BASE = "`ModelNew` has no base class (expected e.g. `class ModelNew(nn.Module)`)"
ERR_NO_FORWARD = "`ModelNew` has no `forward` method"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
_FENCE_CLOSE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*$")
_SPECIAL_TOKEN_END = re.compile(r"(?:<\|[^|<>\s]{1,40}\|>|</s>|<eos>|<end_of_turn>|<pad>)$")
_MODELNEW_LINE = re.compile(r"^[ \t]*class[ \t]+ModelNew\b", re.MULTILINE)


@dataclass(frozen=True)
class Candidate:
    """What a completion offers to run; check `format_error` before anything else."""

    code: str | None
    backend: str
    format_error: str | None
    sha256: str
    reasoning: str


@dataclass(frozen=True)
class _Block:
    tag: str
    code: str
    start: int  # offset of the opening fence line in the text
    end: int  # offset just past the closing fence line
    closed: bool


def extract_candidate(text: str) -> Candidate:
    """Apply the extraction contract in the module docstring to one completion."""
    text = _strip_special_tail(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        return _rejected(text, text.strip(), ERR_EMPTY)
    blocks = _fenced_blocks(text)
    if any(not b.closed for b in blocks):
        return _rejected(text, text.strip(), ERR_UNCLOSED)
    if blocks:
        chosen = [b for b in blocks if b.tag in PYTHON_TAGS and _MODELNEW_LINE.search(b.code)]
        if not chosen:
            return _rejected(text, text.strip(), ERR_NO_MODELNEW_BLOCK)
        block = chosen[-1]
        code = block.code
        reasoning = (text[: block.start].rstrip() + "\n\n" + text[block.end :].lstrip()).strip()
    elif _MODELNEW_LINE.search(text):
        code, reasoning = text, ""
    else:
        return _rejected(text, text.strip(), ERR_NO_BLOCK)
    error = check_code(code)
    if error is not None:
        return _rejected(text, reasoning, error)
    return Candidate(
        code=code, backend=detect_backend(code), format_error=None, sha256=_sha(code), reasoning=reasoning
    )


def _strip_special_tail(text: str) -> str:
    """Drop chat-template tokens at the end (rule 1); linear time, since completions come from anyone."""
    while True:
        tail = text.rstrip()
        m = _SPECIAL_TOKEN_END.search(tail[-48:])
        if m is None:
            return text
        text = tail[: len(tail) - (m.end() - m.start())]


def check_code(code: str) -> str | None:
    """The format error of a chosen block (rule 6), or None when it is usable."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return _syntax_message(exc, code)
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return f"code cannot be parsed: {type(exc).__name__}: {exc}"
    cls = find_model_new(tree)
    if cls is None:
        return ERR_NOT_MODULE_LEVEL
    if not cls.bases:
        return ERR_NO_BASE
    classes = {c.name: c for c in module_statements(tree.body) if isinstance(c, ast.ClassDef)}
    if not _has_forward(cls, classes, frozenset({cls.name})):
        return ERR_NO_FORWARD
    return None


def detect_backend(code: str) -> str:
    """ "triton", "cuda" or "none", from the AST (see the backend contract in the module docstring)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "none"
    return backend_of(tree)


def backend_of(tree: ast.AST) -> str:
    """`detect_backend` for an already parsed module."""
    aliases = import_aliases(tree)
    cuda = False
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if any(is_triton_decorator(d, aliases) for d in node.decorator_list):
                return "triton"
        elif isinstance(node, ast.Call):
            if is_triton_decorator(node.func, aliases):
                return "triton"
            cuda = cuda or is_cuda_build(node, aliases)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "__global__" in node.value:
            cuda = True
    return "cuda" if cuda else "none"


# ---------------------------------------------------------------- AST helpers shared with static_checks


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Map every name an import binds to the dotted path it stands for (``tl`` -> ``triton.language``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module + "." if node.module else "")
            for alias in node.names:
                if alias.name != "*":
                    aliases[alias.asname or alias.name] = prefix + alias.name
    return aliases


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def qualified_name(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`dotted_name` with its first part replaced by what the import bound (``tl.dot`` -> ``triton.language.dot``)."""
    name = dotted_name(node)
    if name is None:
        return None
    root, dot, rest = name.partition(".")
    return aliases[root] + dot + rest if root in aliases else name


def is_triton_decorator(node: ast.AST, aliases: dict[str, str]) -> bool:
    """True for ``triton.jit``, ``triton.autotune(...)``, ``triton.heuristics(...)`` under any alias."""
    if isinstance(node, ast.Call):
        node = node.func
    name = qualified_name(node, aliases)
    if name is None:
        return False
    parts = name.split(".")
    return len(parts) > 1 and parts[0] == "triton" and parts[-1] in TRITON_DECORATORS


def is_cuda_build(call: ast.Call, aliases: dict[str, str]) -> bool:
    """True for ``load_inline(...)`` or ``torch.utils.cpp_extension.load(...)`` under any alias."""
    name = qualified_name(call.func, aliases)
    if name is None:
        return False
    return name.split(".")[-1] == "load_inline" or name.endswith("cpp_extension.load")


def module_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run at module level: the body, and the bodies of module-level if/try/with/loops."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from module_statements(getattr(stmt, field, []))
        for handler in getattr(stmt, "handlers", []):
            yield from module_statements(handler.body)


def find_model_new(tree: ast.Module) -> ast.ClassDef | None:
    """The module-level ``class ModelNew`` that Python would bind last, or None."""
    found = None
    for stmt in module_statements(tree.body):
        if isinstance(stmt, ast.ClassDef) and stmt.name == "ModelNew":
            found = stmt
    return found


def class_defines(cls: ast.ClassDef, name: str) -> bool:
    """True when the class body defines `name` as a method or binds it by assignment."""
    for stmt in module_statements(cls.body):
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == name:
            return True
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


# ---------------------------------------------------------------- private


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    pos = 0
    opened: tuple[str, int, str, int] | None = None  # fence, indent width, tag, start offset
    content: list[str] = []
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if opened is None:
            m = _FENCE_OPEN.match(bare)
            if m and not (m["fence"][0] == "`" and "`" in m["info"]):
                info = m["info"].strip()
                tag = info.split()[0].lower() if info else ""
                opened, content = (m["fence"], len(m["indent"]), tag, pos), []
        else:
            fence, indent, tag, start = opened
            m = _FENCE_CLOSE.match(bare)
            if m and m["fence"][0] == fence[0] and len(m["fence"]) >= len(fence):
                blocks.append(_Block(tag, "".join(content), start, pos + len(line), closed=True))
                opened = None
            else:
                content.append(_unindent(line, indent))
        pos += len(line)
    if opened is not None:
        blocks.append(_Block(opened[2], "".join(content), opened[3], len(text), closed=False))
    return blocks


def _unindent(line: str, width: int) -> str:
    """Drop up to `width` leading blanks, the way CommonMark strips a fence's indentation from its content."""
    i = 0
    while i < width and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]


def _syntax_message(exc: SyntaxError, code: str) -> str:
    lineno = exc.lineno or 0
    lines = code.splitlines()
    snippet = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    message = f"syntax error at line {lineno}: {exc.msg}"
    return f"{message} -> {snippet[:120]}" if snippet else message


def _has_forward(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: frozenset[str]) -> bool:
    if class_defines(cls, "forward"):
        return True
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            if base.id in seen or _has_forward(classes[base.id], classes, seen | {base.id}):
                return (
                    True  # (a class named after itself refers to an earlier definition: benefit of the doubt)
                )
        elif dotted_name(base) not in NN_MODULE_NAMES:
            return True  # a base we cannot see (a mixin, a library class): benefit of the doubt
    return False


def _rejected(text: str, reasoning: str, error: str) -> Candidate:
    return Candidate(code=None, backend="none", format_error=error, sha256=_sha(text), reasoning=reasoning)


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", errors="surrogatepass")).hexdigest()
