"""What a kernel file may do: the capability allow-list, checked on the source before anything runs.

A candidate shares its process with the runner that reports on it, so the runner's evidence holds only if the
candidate cannot reach it. Rather than listing forbidden things (laundering through containers and attributes
defeats every rule that matches names), the candidate module is compiled with RestrictedPython under a policy
written for kernel files: every attribute read, subscript, attribute/item write, iteration, import and class
creation of its Python code goes through a guard (`guards.py`), and the guards admit only what kernel files need.

Two kinds of code, two checks, both decided here from the AST (no candidate code runs):

- **Python code** (module level, `ModelNew`, helpers): RestrictedPython's transform, relaxed where honest kernel
  files need it (single-underscore names and attributes, `__init__`, `__name__`), strict elsewhere: no dunder names
  or attributes, no frame/code/traceback attributes, no star imports, imports only of `ALLOWED_IMPORTS`, and
  every name it reads is bound in the file or is an allowed builtin (so nothing that others inject into the
  module's namespace, e.g. Triton's interpreter, can be used).
- **Kernel bodies** (`@triton.jit` and friends) never run as this module's Python: Triton reads their *source*
  (it compiles it on a GPU and re-executes it on the CPU interpreter), so guards cannot reach them. They must
  stay inside the Triton language: names are parameters, locals, Triton/`math` modules, module constants and
  other kernels; attributes are the DSL's; calls go to the DSL, other kernels and a few builtins.

`compile_candidate` returns the code object to run (guards installed by the runner) or the violations, each with
its line: the supervisor answers `forbidden_access` from these before running anything.
"""

from __future__ import annotations

import ast
import builtins
import functools
import types
from dataclasses import dataclass, field
from typing import Any

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer
from RestrictedPython.transformer import IOPERATOR_TO_STR as _INPLACE_OPS

from kernelrl.sandbox.candidate import import_aliases, is_triton_decorator, module_statements

# The virtual file name candidate code is compiled under (never a real path: Triton reads kernel source through
# linecache, where the runner registers the checked text, so the candidate cannot change it on disk).
CANDIDATE_FILE = "/kernelrl/candidate.py"

# Inductor's library of @triton.jit helpers: what torch.compile's kernels call (teacher answers use it).
INDUCTOR_HELPERS = "torch._inductor.runtime.triton_helpers"
# Modules a kernel file may import (and reach as values); submodules of triton.language are allowed too.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "math",
        "time",
        "typing",
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.nn.init",
        "torch.cuda",
        "torch.autograd",
        "torch.utils",
        "torch.utils.cpp_extension",
        "triton",
        "triton.language",
        INDUCTOR_HELPERS,
    }
)

# Builtins Python code may use (the guarded ones are replaced by guards.py); everything else is unavailable.
ALLOWED_BUILTINS = frozenset(
    """
    abs all any ascii bin bool callable chr classmethod complex dict divmod enumerate filter float format frozenset
    getattr hasattr
    hash hex id int isinstance issubclass iter len list map max min next object oct ord pow print property range
    repr reversed round set setattr slice sorted staticmethod str sum super tuple type zip
    True False None NotImplemented Ellipsis
    ArithmeticError AssertionError AttributeError Exception IndexError KeyError LookupError NotImplementedError
    OverflowError RuntimeError StopIteration TypeError ValueError ZeroDivisionError
    """.split()
)

# Python's builtins a kernel file may not use (files, code execution, scopes, the interpreter's exits...). Any
# other unbound name is an ordinary NameError at run time (a typo), not a capability.
REFUSED_BUILTINS = frozenset(
    n
    for n in dir(builtins)
    if n not in ALLOWED_BUILTINS
    and not n.startswith("__")
    and not (n.endswith(("Error", "Warning")) and n != "BaseExceptionGroup")
)

# Dunder names the Python code may use: defining and calling `__init__`, reading `__name__`.
ALLOWED_DUNDER_DEFS = frozenset({"__init__"})
ALLOWED_DUNDER_READS = frozenset({"__name__"})

# Inside kernel bodies.
KERNEL_BUILTINS = frozenset(
    {
        "range",
        "min",
        "max",
        "len",
        "int",
        "float",
        "bool",
        "abs",
        "print",
        "isinstance",
        "True",
        "False",
        "None",
    }
)
_KERNEL_STMTS = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Expr,
    ast.If,
    ast.For,
    ast.While,
    ast.Return,
    ast.Pass,
    ast.Break,
    ast.Continue,
    ast.Assert,
)
_KERNEL_EXPRS = (
    ast.Name,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Call,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Tuple,
    ast.List,
)
_KERNEL_MODULES = ("triton", "math")  # import roots whose bindings a kernel body may use


def _kernel_module(target: str) -> bool:
    return target.split(".")[0] in _KERNEL_MODULES or target.startswith(INDUCTOR_HELPERS)


@dataclass(frozen=True)
class Violation:
    line: int
    what: str

    def __str__(self) -> str:
        return f"forbidden_access: {self.what} (line {self.line})"


@dataclass
class CompiledCandidate:
    """`code` is None when there are violations. `kernels` are the functions Triton may compile:
    (name, co_firstlineno) of every function whose body passed the kernel rules."""

    code: types.CodeType | None
    violations: list[Violation] = field(default_factory=list)
    kernels: frozenset[tuple[str, int]] = frozenset()


def compile_candidate(source: str) -> CompiledCandidate:
    """Check `source` against the capability policy and compile it for guarded execution."""
    try:
        tree = ast.parse(source, CANDIDATE_FILE)
    except (SyntaxError, ValueError) as e:
        return CompiledCandidate(None, [Violation(getattr(e, "lineno", 1) or 1, f"does not parse: {e}")])
    except RecursionError:
        return CompiledCandidate(None, [Violation(1, "code is nested too deeply to check")])
    try:
        policy = _Policy(tree)
        transformed = policy.visit(tree)
    except RecursionError:
        return CompiledCandidate(None, [Violation(1, "code is nested too deeply to check")])
    violations = sorted(set(policy.violations), key=lambda v: (v.line, v.what))
    if violations:
        return CompiledCandidate(None, violations, frozenset(policy.kernels))
    ast.fix_missing_locations(transformed)
    return CompiledCandidate(compile(transformed, CANDIDATE_FILE, "exec"), [], frozenset(policy.kernels))


def check_source(source: str) -> list[Violation]:
    """The violations alone: the supervisor's early answer (same decision the runner makes)."""
    return compile_candidate(source).violations


# ---------------------------------------------------------------------------------------------------------
class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's transform with a kernel-file policy (see the module docstring)."""

    def __init__(self, tree: ast.Module) -> None:
        super().__init__(errors=[], warnings=[], used_names={})
        self.violations: list[Violation] = []
        self.kernels: set[tuple[str, int]] = set()
        self.aliases = import_aliases(tree)
        self.bound = _bound_names(tree)
        self.kernel_globals = _kernel_globals(tree, self.aliases)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in REFUSED_BUILTINS:
                if node.id not in self.bound:
                    self._violate(node, f"`{node.id}` is not available in a kernel file")

    def _violate(self, node: ast.AST, what: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 1) or 1, what))

    # RestrictedPython reports through error(); every report is a violation with its line.
    def error(self, node: ast.AST, info: str) -> None:
        self._violate(node, info.rstrip("."))

    def check_name(self, node: ast.AST, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is None:
            return
        if name.startswith("__"):
            if allow_magic_methods and name in ALLOWED_DUNDER_DEFS:
                return
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and name in ALLOWED_DUNDER_READS:
                return
            self._violate(node, f"the name `{name}` (dunder names are reserved)")
        elif name.startswith("_") and name.endswith("_") and name != "_":
            self._violate(node, f"the name `{name}` (reserved for the sandbox's guards)")
        elif name in ("printed", "builtins", "breakpoint", "print") and not (
            isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        ):
            self._violate(node, f"the name `{name}` is reserved")

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        attr = node.attr
        if attr.startswith("__") and attr not in ALLOWED_DUNDER_DEFS:
            self._violate(node, f"the attribute `.{attr}` (dunder attributes are not available)")
            return node
        if attr in INSPECT_ATTRIBUTES:
            self._violate(node, f"the attribute `.{attr}` (frames, code and tracebacks are not available)")
            return node
        if attr.startswith(
            "_"
        ):  # decided at run time: only the candidate's own objects have private attributes
            node.attr = (
                "p" + attr
            )  # RestrictedPython refuses `_x` outright; transform, then put the name back
            new = super().visit_Attribute(node)
            if isinstance(new, ast.Call):  # _getattr_(obj, "name")
                new.args[1] = ast.Constant(attr)
            else:  # _write_(obj).name = ...
                new.attr = attr
            return new
        return super().visit_Attribute(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level:
            self._violate(node, "relative imports")
        elif not _import_allowed(node.module or ""):
            self._violate(node, f"import of `{node.module}`")
        return super().visit_ImportFrom(node)

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for alias in node.names:
            if not _import_allowed(alias.name):
                self._violate(node, f"import of `{alias.name}`")
        return super().visit_Import(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        """`x: T = v` is `x = v` (the annotation is never evaluated); a bare `x: T` does nothing."""
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return self.visit(ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node))

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """`obj.x += v` / `obj[k] += v` (RestrictedPython refuses both): evaluate `obj` (and `k`) once, then
        read, combine and write back, every step guarded."""
        target = node.target
        if not isinstance(target, ast.Attribute | ast.Subscript):
            return super().visit_AugAssign(node)
        obj = self.gen_tmp_name()
        stmts: list[ast.stmt] = [ast.Assign([ast.Name(obj, ast.Store())], target.value)]
        if isinstance(target, ast.Attribute):
            read: ast.expr = ast.Attribute(ast.Name(obj, ast.Load()), target.attr, ast.Load())
            write: ast.expr = ast.Attribute(ast.Name(obj, ast.Load()), target.attr, ast.Store())
        else:
            key = self.gen_tmp_name()
            stmts.append(ast.Assign([ast.Name(key, ast.Store())], target.slice))
            read = ast.Subscript(ast.Name(obj, ast.Load()), ast.Name(key, ast.Load()), ast.Load())
            write = ast.Subscript(ast.Name(obj, ast.Load()), ast.Name(key, ast.Load()), ast.Store())
        for part in (*stmts, read, write):
            ast.copy_location(part, node)
            ast.fix_missing_locations(part)
        out = [self.visit(stmt) for stmt in stmts]
        assign = self.visit(ast.copy_location(ast.Assign([write], ast.Constant(None)), node))
        op = ast.Constant(_INPLACE_OPS[type(node.op)])
        # the hook's own name is added after the visit: candidate code may not name it, this code may
        assign.value = ast.Call(
            ast.Name("_inplacevar_", ast.Load()), [op, self.visit(read), self.visit(node.value)], []
        )
        ast.copy_location(assign.value, node)
        ast.fix_missing_locations(assign)
        return [*out, assign]

    def visit_Global(self, node: ast.Global) -> ast.AST:
        for name in node.names:
            if name in self.kernel_globals:
                self._violate(node, f"`global {name}`: a name kernels read cannot be rebound")
        return super().visit_Global(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        first_line = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        is_kernel = any(is_triton_decorator(d, self.aliases) for d in node.decorator_list)
        problems = _KernelBody(node, self.kernel_globals, self.aliases).check()
        if not problems:
            self.kernels.add((node.name, first_line))
        if not is_kernel:
            return super().visit_FunctionDef(node)
        for line, what in problems:
            self.violations.append(Violation(line, f"kernel `{node.name}`: {what}"))
        # Triton never runs the body as this module's Python; guard only what Python evaluates at `def`.
        self.check_name(node, node.name)
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        node.returns = None
        return node


def _import_allowed(name: str) -> bool:
    return name in ALLOWED_IMPORTS or name.startswith("triton.language.")


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the file binds, in any scope: a read of anything else is not the candidate's."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bound.update(node.names)
    return bound


def _is_constant_expr(node: ast.AST, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float | str | bool | type(None))
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.UnaryOp):
        return _is_constant_expr(node.operand, constants)
    if isinstance(node, ast.BinOp):
        return _is_constant_expr(node.left, constants) and _is_constant_expr(node.right, constants)
    if isinstance(node, ast.Tuple):
        return all(_is_constant_expr(e, constants) for e in node.elts)
    return False


def _kernel_globals(tree: ast.Module, aliases: dict[str, str]) -> dict[str, str]:
    """Module-level names a kernel body may read, and what each is: "module:<dotted>", "const" or "kernel".

    A name qualifies only if every module-level binding of it is of that kind and no function declares it
    `global` (a later `X = torch`, or `global X` in a function, would otherwise swap what the kernel sees).
    """
    kinds: dict[str, set[str]] = {}

    def note(name: str, kind: str) -> None:
        kinds.setdefault(name, set()).add(kind)

    constants: set[str] = set()
    for stmt in module_statements(tree.body):
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                target = aliases.get(name, "")
                note(name, f"module:{target}" if _kernel_module(target) else "other")
        elif isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            value = stmt.value
            if isinstance(value, ast.Call) and _constexpr_call(value, aliases):
                value = value.args[0] if value.args else ast.Constant(None)
            kind = "const" if _is_constant_expr(value, constants) else "other"
            for t in stmt.targets:
                note(t.id, kind)  # type: ignore[union-attr]
                if kind == "const":
                    constants.add(t.id)  # type: ignore[union-attr]
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            decorated = any(is_triton_decorator(d, aliases) for d in stmt.decorator_list)
            note(stmt.name, "kernel" if decorated else "other")
        elif isinstance(stmt, ast.ClassDef):
            note(stmt.name, "other")
        else:  # any other module-level binding (loops, with, augmented or annotated assignment, ...)
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                    note(node.id, "other")
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                note(name, "other")
    return {name: next(iter(k)) for name, k in kinds.items() if len(k) == 1 and "other" not in k}


def _constexpr_call(call: ast.Call, aliases: dict[str, str]) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "constexpr" and isinstance(func.value, ast.Name):
        return aliases.get(func.value.id, "").startswith("triton")
    return isinstance(func, ast.Name) and aliases.get(func.id, "") == "triton.language.constexpr"


# ---------------------------------------------------------------------------------------------------------
class _KernelBody:
    """The Triton-language subset a kernel body must stay in (see the module docstring)."""

    def __init__(self, fn: ast.FunctionDef, kernel_globals: dict[str, str], aliases: dict[str, str]) -> None:
        self.fn = fn
        self.globals = kernel_globals
        self.aliases = aliases
        args = fn.args
        self.params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        self.locals = self._locals()
        self.problems: list[tuple[int, str]] = []

    def _locals(self) -> set[str]:
        names: set[str] = set()
        for stmt in self.fn.body:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
        return names

    def check(self) -> list[tuple[int, str]]:
        args = self.fn.args
        if args.vararg or args.kwarg:
            self._bad(self.fn, "*args / **kwargs")
        for stmt in self.fn.body:
            self._stmt(stmt)
        return self.problems

    def _bad(self, node: ast.AST, what: str) -> None:
        self.problems.append((getattr(node, "lineno", self.fn.lineno), what))

    def _stmt(self, stmt: ast.stmt) -> None:
        if not isinstance(stmt, _KERNEL_STMTS):
            self._bad(stmt, f"`{type(stmt).__name__}` statements are not part of the Triton language")
            return
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                if not _names_only(t):
                    self._bad(stmt, "assignments may only bind names")
        if isinstance(stmt, ast.For):
            if not _names_only(stmt.target):
                self._bad(stmt, "a loop target must be a name")
            if not (isinstance(stmt.iter, ast.Call) and self._is_range(stmt.iter.func)):
                self._bad(stmt, "loops run over range / tl.range / tl.static_range")
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                self._stmt(child)
            elif isinstance(child, ast.expr):
                self._expr(child)
            elif not isinstance(child, ast.expr_context | ast.operator):
                self._bad(stmt, f"`{type(child).__name__}` is not part of the Triton language")

    def _is_range(self, func: ast.AST) -> bool:
        if isinstance(func, ast.Name):
            return func.id == "range" or self.aliases.get(func.id, "") in (
                "triton.language.range",
                "triton.language.static_range",
            )
        return isinstance(func, ast.Attribute) and func.attr in ("range", "static_range")

    def _expr(self, node: ast.expr) -> None:
        if not isinstance(node, _KERNEL_EXPRS):
            self._bad(node, f"`{type(node).__name__}` expressions are not part of the Triton language")
            return
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool | type(None)):
                self._bad(node, f"the constant {node.value!r}")
            return
        if isinstance(node, ast.Name):
            self._name(node)
            return
        if isinstance(node, ast.Attribute):
            self._attribute(node)
            return
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                kind = self.globals.get(func.id, "")
                if func.id not in KERNEL_BUILTINS and kind != "kernel" and not kind.startswith("module:"):
                    self._bad(node, f"calls `{func.id}`, which is neither a kernel nor part of Triton")
            elif not isinstance(func, ast.Attribute):
                self._bad(node, "calls something that is not a named kernel or Triton function")
            self._expr(func)
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    self._bad(arg, "*args in a call")
                else:
                    self._expr(arg)
            for kw in node.keywords:
                if kw.arg is None:
                    self._bad(node, "**kwargs in a call")
                self._expr(kw.value)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._expr(child)
            elif not isinstance(
                child, ast.expr_context | ast.operator | ast.unaryop | ast.boolop | ast.cmpop
            ):
                self._bad(node, f"`{type(child).__name__}` is not part of the Triton language")

    def _name(self, node: ast.Name) -> None:
        name = node.id
        if name in self.params or name in self.locals or name in KERNEL_BUILTINS:
            return
        kind = self.globals.get(name, "")
        if kind.startswith("module:"):
            problem = _resolve_dsl_chain(kind.removeprefix("module:"), ())
            if problem:
                self._bad(node, problem)
            return
        if kind:
            return
        self._bad(node, f"uses `{name}`, which is not a parameter, local, constant, kernel or Triton module")

    def _attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        root: ast.AST = node
        while isinstance(root, ast.Attribute):
            chain.append(root.attr)
            root = root.value
        chain.reverse()
        if any(a.startswith("_") for a in chain):
            self._bad(node, "private attributes are not part of the Triton language")
            return
        kind = self.globals.get(root.id, "") if isinstance(root, ast.Name) else ""
        local = isinstance(root, ast.Name) and (root.id in self.params or root.id in self.locals)
        if kind.startswith("module:") and not local:
            problem = _resolve_dsl_chain(kind.removeprefix("module:"), tuple(chain))
            if problem:
                self._bad(node, problem)
            return
        bad = [a for a in chain if a not in _value_attributes()]
        if bad:
            self._bad(node, f"`.{bad[0]}` is not an attribute of Triton values")
        if not isinstance(root, ast.Name):
            self._expr(root)  # type: ignore[arg-type]
        elif not local:
            self._name(root)


def _names_only(target: ast.AST) -> bool:
    if isinstance(target, ast.Name):
        return True
    return isinstance(target, ast.Tuple | ast.List) and all(_names_only(e) for e in target.elts)


@functools.cache
def _value_attributes() -> frozenset[str]:
    """Attributes of values inside a kernel (tensors, pointers, dtypes, constexprs): the DSL's public ones.

    `handle` (the interpreter's raw NumPy storage) is not among them.
    """
    import triton.language as tl

    names = {"dtype", "shape", "type", "numel", "T", "element_ty", "value"}
    for cls in (tl.tensor, tl.dtype, tl.pointer_type, tl.block_type, tl.constexpr):
        names |= {n for n in dir(cls) if not n.startswith("_")}
    return frozenset(names - {"handle", "to_ir"})


def dsl_value(value: Any) -> bool:
    """An object a kernel may name through a Triton or `math` module."""
    if isinstance(value, types.ModuleType):
        return value.__name__ in ("math", INDUCTOR_HELPERS) or value.__name__.startswith("triton.language")
    if isinstance(value, int | float | str | bool | type(None)):
        return True
    import triton.language as tl
    from triton.runtime.jit import KernelInterface

    if isinstance(value, tl.dtype | tl.constexpr | KernelInterface):
        return True
    if getattr(value, "__triton_builtin__", False):
        return True
    module = getattr(value, "__module__", None) or ""
    if isinstance(value, type):
        return module.startswith("triton.language")
    return callable(value) and (module.startswith("triton.language") or module == "math")


@functools.cache
def _resolve_dsl_chain(root: str, chain: tuple[str, ...]) -> str | None:
    """Walk `root.a.b...` on the real objects from the top module: every step must be Triton language (or math)."""
    import importlib

    if root.startswith(INDUCTOR_HELPERS):
        top, rest = INDUCTOR_HELPERS, [p for p in root[len(INDUCTOR_HELPERS) :].split(".") if p]
    else:
        top, *rest = root.split(".")
    if not _kernel_module(top):
        return f"`{root}` is not a Triton module"
    steps = [*rest, *chain]
    if top == "triton" and (not steps or steps[0] not in ("language", "cdiv", "next_power_of_2")):
        return f"`{'.'.join(['triton', *steps[:1]])}` is not part of the Triton language"
    obj: Any = importlib.import_module(top)
    path = top
    for attr in steps:
        path += "." + attr
        if isinstance(obj, types.ModuleType):
            if not hasattr(obj, attr):
                return None  # a typo, not a capability: Triton reports it as a compile error
            obj = getattr(obj, attr)
            if not dsl_value(obj):
                return f"`{path}` is not part of the Triton language"
        elif attr not in _value_attributes():
            return f"`.{attr}` is not an attribute of Triton values"
    return None
