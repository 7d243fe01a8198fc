"""The run-time half of the capability allow-list: the guard functions candidate code is compiled against.

`capabilities.py` compiles the candidate so that every attribute read, subscript, write, iteration, import and
class creation calls one of these. They admit what kernel files need (tensor allocation and metadata, views,
`nn.Module`/`nn.Parameter`, PyTorch ops, whose use the op recorder judges, `triton.jit` and the Triton language,
`load_inline` for CUDA, `math`, `typing`) and refuse the rest: private names of anything but the candidate's own
objects, module objects outside the allow-list as values, files, `torch.compile`, build helpers, dispatch and
function modes, hooks into Triton's launcher, Python-side data extraction (`tolist`, `numpy`, `apply_`), writes to
anything the candidate did not create, and classes that are not modules.

A refusal raises `ForbiddenAccess` (a BaseException: `except Exception` cannot swallow it) and is also recorded
through the `on_violation` callback, so even a refusal the candidate manages to swallow reaches the verdict.
Built by the runner before the candidate is imported; the candidate never sees this module.
"""

from __future__ import annotations

import builtins
import functools
import operator
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from kernelrl.sandbox.capabilities import (
    ALLOWED_BUILTINS,
    ALLOWED_IMPORTS,
    CANDIDATE_FILE,
    INDUCTOR_HELPERS,
    REFUSED_BUILTINS,
    dsl_value,
)


class ForbiddenAccess(BaseException):
    """Candidate code reached for something outside the capability allow-list."""


# -- what each allowed module offers ------------------------------------------------------------------------
# PyTorch: its C-implemented ops and factories (what they compute, the op recorder sees), dtypes, these classes
# and Python-level helpers; never anything that compiles, loads, saves, hooks, sets global state or reads files.
TORCH_CLASSES = frozenset({"Tensor", "Size", "device", "dtype", "finfo", "iinfo", "Generator", "no_grad",
                           "enable_grad", "inference_mode", "set_grad_enabled"})  # fmt: skip
TORCH_PYTHON = frozenset({"is_tensor", "is_storage", "manual_seed", "typename", "get_default_dtype"})
TORCH_REFUSED_PREFIXES = ("set_", "from_file", "_")
NN_MODULES = frozenset({"functional", "init"})
MODULE_NAMES: dict[str, frozenset[str] | None] = {  # None: the module's public names, checked by kind
    "torch.cuda": frozenset(
        {
            "is_available",
            "current_device",
            "device_count",
            "get_device_properties",
            "get_device_name",
            "get_device_capability",
            "synchronize",
        }
    ),  # fmt: skip
    "torch.autograd": frozenset({"Function"}),
    "torch.utils": frozenset({"cpp_extension"}),
    "torch.utils.cpp_extension": frozenset({"load_inline"}),
    "triton": frozenset({"jit", "autotune", "heuristics", "Config", "cdiv", "next_power_of_2", "language"}),
    "typing": frozenset(
        {
            "Any",
            "Optional",
            "List",
            "Tuple",
            "Dict",
            "Union",
            "Callable",
            "Sequence",
            "Iterable",
            "Type",
            "TYPE_CHECKING",
        }
    ),  # fmt: skip
    "__future__": frozenset({"annotations"}),
    "time": frozenset({"sleep"}),  # waiting is harmless (the wall budget bounds it); clocks are not offered
    "math": None,
    "torch.nn.functional": None,
    "torch.nn.init": None,
}
TENSOR_REFUSED = frozenset({"tolist", "numpy", "apply_", "map_", "map2_", "untyped_storage", "storage",
                            "register_hook", "register_post_accumulate_grad_hook", "share_memory_", "as_subclass",
                            "grad_fn", "to_dlpack", "pin_memory"})  # fmt: skip
TENSOR_WRITABLE = frozenset({"data", "requires_grad"})
MODULE_REFUSED = frozenset({"share_memory"})
STR_REFUSED = frozenset({"format", "format_map"})  # "{0.__class__}".format(x) reads attributes unguarded
# Only these load_inline flags: optimisation, architecture, standard, defines and warnings; nothing that runs
# programs (-wrapper, -ccbin), loads plugins or points the build elsewhere.
SAFE_FLAG_PREFIXES = ("-O", "-std=", "-arch=", "-gencode", "--use_fast_math", "-use_fast_math", "-D", "-U",
                      "-lineinfo", "--ptxas-options=-v", "-Xptxas=-v", "-maxrregcount", "--maxrregcount", "-w",
                      "-Wno-", "--expt-relaxed-constexpr", "--expt-extended-lambda", "-fopenmp", "-march=",
                      "-mtune=", "-ffast-math", "-funroll-loops", "-lcublas", "-lcudart")  # fmt: skip
LOAD_INLINE_KWARGS = frozenset({"name", "cpp_sources", "cuda_sources", "functions", "extra_cflags",
                                "extra_cuda_cflags", "extra_ldflags", "verbose", "with_cuda", "with_pytorch_error_handling",
                                "keep_intermediates", "is_python_module"})  # fmt: skip
NN_BASE_MODULE = "torch.nn"


def module_allowed(mod: types.ModuleType) -> bool:
    name = mod.__name__
    return name in ALLOWED_IMPORTS or name.startswith("triton.language")


class Guards:
    """The guard functions and builtins for one candidate, with the set of classes it defined."""

    def __init__(
        self,
        kernels: frozenset[tuple[str, int]],
        on_violation: Callable[[str], None],
        wrap_load_inline: Callable[..., Any],
    ) -> None:
        self.kernels = kernels
        self.on_violation = on_violation
        self.classes: set[type] = set()
        self.jit_objects: set[int] = set()
        self._load_inline = wrap_load_inline
        import triton

        self._triton = triton
        from triton.runtime.jit import KernelInterface

        self._kernel_types = (KernelInterface,)

    # -- refusing ------------------------------------------------------------------------------------------
    def refuse(self, what: str) -> ForbiddenAccess:
        line = _candidate_line()
        message = f"{what} (line {line})" if line else what
        self.on_violation(message)
        return ForbiddenAccess(message)

    # -- the namespace the candidate module runs in --------------------------------------------------------
    def namespace(self) -> dict[str, Any]:
        allowed = {
            name: getattr(builtins, name)
            for name in dir(builtins)
            if name in ALLOWED_BUILTINS
            or (name.endswith(("Error", "Warning")) and name not in REFUSED_BUILTINS)
        }
        allowed.update(
            getattr=self.getattr_builtin,
            hasattr=self.hasattr_builtin,
            setattr=self.setattr_builtin,
            type=self.type_builtin,
            __import__=self.import_,
            __build_class__=builtins.__build_class__,
        )
        return {
            "__builtins__": allowed,
            "__name__": "candidate",
            "__metaclass__": self.make_class,
            "_getattr_": self.getattr_,
            "_getitem_": self.getitem_,
            "_write_": self.write_,
            "_getiter_": iter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_apply_": _apply,
            "_inplacevar_": _inplacevar,
            "_print_": _Printer,
        }

    # -- attribute reads -----------------------------------------------------------------------------------
    def is_candidate_object(self, obj: Any) -> bool:
        cls = obj if isinstance(obj, type) else type(obj)
        return any(c in self.classes for c in cls.__mro__)

    def getattr_(self, obj: Any, name: str, *default: Any) -> Any:
        if not isinstance(name, str):
            raise self.refuse("an attribute name that is not a string")
        if name.startswith("__"):
            if not (name == "__init__" and (isinstance(obj, super) or _is_nn_module_class(obj))):
                raise self.refuse(f"the attribute `.{name}`")
        elif name.startswith("_") and not self.is_candidate_object(obj):
            raise self.refuse(f"the private attribute `.{name}` of {_kind(obj)}")
        if isinstance(obj, types.ModuleType):
            value = self._module_attr(obj, name, *default)
        else:
            self._check_object_attr(obj, name)
            value = getattr(obj, name, *default)
        if isinstance(value, types.ModuleType) and not module_allowed(value):
            raise self.refuse(f"the module `{value.__name__}` (reached as `.{name}`)")
        return value

    def _module_attr(self, mod: types.ModuleType, name: str, *default: Any) -> Any:
        mname = mod.__name__
        if not module_allowed(mod):
            raise self.refuse(f"the module `{mname}`")
        if not hasattr(mod, name):
            if default:
                return default[0]
            raise AttributeError(f"module {mname!r} has no attribute {name!r}")
        value = getattr(mod, name)
        ok = self._module_attr_ok(mname, name, value)
        if not ok:
            raise self.refuse(f"`{mname}.{name}`")
        if mname == "triton" and name in ("jit", "autotune", "heuristics"):
            return getattr(self, f"{name}_")
        if mname == "torch.utils.cpp_extension" and name == "load_inline":
            return self.load_inline_
        return value

    def _module_attr_ok(self, mname: str, name: str, value: Any) -> bool:
        if isinstance(value, types.ModuleType):
            return module_allowed(value)
        if mname == "torch":
            return _torch_attr_ok(name, value)
        if mname == "torch.nn":
            return name in NN_MODULES or (
                isinstance(value, type) and value.__module__.startswith(NN_BASE_MODULE)
            )
        if mname.startswith("triton.language") or mname == INDUCTOR_HELPERS:
            return dsl_value(value)
        names = MODULE_NAMES.get(mname, frozenset())
        if names is None:
            return not name.startswith("_") and (callable(value) or isinstance(value, int | float))
        return name in names

    def _check_object_attr(self, obj: Any, name: str) -> None:
        """Per kind of object, instances and classes alike (`torch.Tensor.tolist(x)` is `x.tolist()`)."""
        if name in INSPECT_ATTRIBUTES:
            raise self.refuse(f"the attribute `.{name}` (frames, code and tracebacks)")
        cls = obj if isinstance(obj, type) else type(obj)
        if issubclass(cls, torch.Tensor):
            if name in TENSOR_REFUSED:
                raise self.refuse(f"`Tensor.{name}` (data leaves PyTorch's ops; compute belongs in kernels)")
        elif issubclass(cls, self._kernel_types):
            raise self.refuse(f"`.{name}` of a Triton kernel (launch it with kernel[grid](...))")
        elif issubclass(cls, torch.nn.Module):
            if name in MODULE_REFUSED:
                raise self.refuse(f"`Module.{name}`")
        elif issubclass(cls, str | bytes) and name in STR_REFUSED:
            raise self.refuse(f"`str.{name}` (use an f-string)")

    def getattr_builtin(self, obj: Any, name: Any, *default: Any) -> Any:
        return self.getattr_(obj, name, *default)

    def hasattr_builtin(self, obj: Any, name: Any) -> bool:
        try:
            self.getattr_(obj, name)
        except AttributeError:
            return False
        return True

    def type_builtin(self, *args: Any) -> type:
        if len(args) != 1:
            raise self.refuse("`type(name, bases, dict)` (define classes with `class`)")
        return type(args[0])

    # -- subscripts and writes ------------------------------------------------------------------------------
    def getitem_(self, obj: Any, key: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            raise self.refuse("subscripting a module")
        return obj[key]

    def write_(self, obj: Any) -> Any:
        """What `obj.x = ...`, `obj[k] = ...` and `del` may target: the candidate's own objects and modules,
        containers, and tensors (items, plus `.data` / `.requires_grad`)."""
        if self.is_candidate_object(obj) or isinstance(obj, torch.nn.Module):
            return obj
        if isinstance(obj, torch.Tensor):
            return _TensorWrite(obj, self)
        if type(obj) in (dict, list, set):
            return obj
        raise self.refuse(f"writing to {_kind(obj)}")

    def setattr_builtin(self, obj: Any, name: Any, value: Any) -> None:
        if not isinstance(name, str) or name.startswith("__"):
            raise self.refuse(f"setattr of `{name}`")
        setattr(self.write_(obj), name, value)

    # -- imports and classes --------------------------------------------------------------------------------
    def import_(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0):
        if level or not (name in ALLOWED_IMPORTS or name.startswith("triton.language")):
            raise self.refuse(f"import of `{name}`")
        module = __import__(name, None, None, fromlist, 0)
        if not fromlist:
            return module  # `import a.b` binds `a`; every later attribute read is guarded
        # `from a import x` reads x with a plain getattr: hand it an object holding only the guarded values.
        return types.SimpleNamespace(**{attr: self.getattr_(module, attr) for attr in fromlist})

    def make_class(self, name: str, bases: tuple, ns: dict[str, Any]) -> type:
        """Classes are modules or plain objects; none defines dunders (no lazy tensors, no operator tricks)."""
        for base in bases:
            if not (
                base is object
                or base in self.classes
                or (_is_nn_module_class(base) and base.__module__.startswith(NN_BASE_MODULE))
                or base is torch.autograd.Function
            ):
                raise self.refuse(f"class {name} derives from {_kind(base)}")
        for key in ns:
            if key.startswith("__") and key not in CLASS_DUNDERS:
                raise self.refuse(f"class {name} defines `{key}`")
        ns["__module__"] = "candidate"
        cls = type(name, bases, ns)
        self.classes.add(cls)
        return cls

    # -- Triton and CUDA entry points -----------------------------------------------------------------------
    def jit_(self, fn: Any = None, **kwargs: Any) -> Any:
        if fn is None:
            return lambda f: self.jit_(f, **kwargs)
        code = getattr(fn, "__code__", None)
        key = (getattr(fn, "__name__", ""), getattr(code, "co_firstlineno", -1))
        if (
            not isinstance(fn, types.FunctionType)
            or code.co_filename != CANDIDATE_FILE
            or key not in self.kernels
        ):
            raise self.refuse("triton.jit of a function whose body is not Triton language")
        kernel = self._triton.jit(fn, **kwargs)
        self.jit_objects.add(id(kernel))
        return kernel

    def _decorator(self, real: Callable[..., Any], what: str) -> Callable[..., Any]:
        def decorate(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
            inner = real(*args, **kwargs)

            def apply(kernel: Any) -> Any:
                if id(kernel) not in self.jit_objects:
                    raise self.refuse(f"triton.{what} of something that is not a triton.jit kernel")
                wrapped = inner(kernel)
                self.jit_objects.add(id(wrapped))
                return wrapped

            return apply

        return decorate

    @property
    def autotune_(self) -> Callable[..., Any]:
        return self._decorator(self._triton.autotune, "autotune")

    @property
    def heuristics_(self) -> Callable[..., Any]:
        return self._decorator(self._triton.heuristics, "heuristics")

    def load_inline_(self, *args: Any, **kwargs: Any) -> Any:
        unknown = set(kwargs) - LOAD_INLINE_KWARGS
        if unknown or len(args) > 3:
            raise self.refuse(f"load_inline arguments {sorted(unknown) or 'beyond name/sources'}")
        for key in ("extra_cflags", "extra_cuda_cflags", "extra_ldflags"):
            flags = kwargs.get(key) or []
            if isinstance(flags, str) or not all(
                isinstance(f, str) and f.startswith(SAFE_FLAG_PREFIXES) for f in flags
            ):
                raise self.refuse(f"load_inline {key}={flags!r} (only optimisation/arch/define flags)")
        return self._load_inline(*args, **kwargs)


CLASS_DUNDERS = frozenset({"__module__", "__qualname__", "__doc__", "__init__", "__classcell__", "__annotations__",
                           "__firstlineno__", "__static_attributes__"})  # fmt: skip


def _torch_attr_ok(name: str, value: Any) -> bool:
    if name.startswith(TORCH_REFUSED_PREFIXES):
        return False
    if isinstance(value, types.ModuleType):
        return module_allowed(value)
    if isinstance(value, torch.dtype | torch.layout | torch.memory_format | int | float | bool):
        return True
    if name in TORCH_CLASSES or name in TORCH_PYTHON:
        return True
    if isinstance(value, types.BuiltinFunctionType):  # ATen ops and factories: the recorder judges them
        return True
    return name in _torch_functional_names()


@functools.cache
def _torch_functional_names() -> frozenset[str]:
    """PyTorch ops written in Python (torch.functional: einsum, split, meshgrid, ...)."""
    from torch import functional

    return frozenset(functional.__all__)


def _is_nn_module_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return f"the module `{obj.__name__}`"
    if isinstance(obj, type):
        return f"the class `{obj.__module__}.{obj.__qualname__}`"
    return f"a `{type(obj).__module__}.{type(obj).__qualname__}` object"


def _candidate_line() -> int | None:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == CANDIDATE_FILE:
            return frame.f_lineno
        frame = frame.f_back
    return None


class _TensorWrite:
    """The write target for a tensor: items freely (PyTorch ops), attributes only `data` / `requires_grad`."""

    __slots__ = ("_t", "_g")

    def __init__(self, tensor: torch.Tensor, guards: Guards) -> None:
        object.__setattr__(self, "_t", tensor)
        object.__setattr__(self, "_g", guards)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._t[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._t[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in TENSOR_WRITABLE:
            raise self._g.refuse(f"setting `Tensor.{name}`")
        setattr(self._t, name, value)


def _apply(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


_INPLACE = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


class _Printer:
    """RestrictedPython's print hook: straight to stdout (the log the supervisor keeps a tail of)."""

    def __init__(self, _getattr: Any = None) -> None:
        pass

    def _call_print(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("file", None)
        print(*args, **kwargs)

    def __call__(self) -> str:
        return ""
