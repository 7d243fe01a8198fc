"""kernelrl sandbox: run model-written kernels against PyTorch references, safely, and decide verdicts."""

from kernelrl.sandbox.problem import Problem, ProblemError, bundled_problems, load_problem, load_problems
from kernelrl.sandbox.verdict import PROTOCOL_VERSION, SCHEMA_VERSION, STATUSES, Check, Verdict

__all__ = [
    "PROTOCOL_VERSION",
    "SCHEMA_VERSION",
    "STATUSES",
    "Check",
    "Evaluator",
    "Problem",
    "ProblemError",
    "SandboxPool",
    "Verdict",
    "bundled_problems",
    "load_problem",
    "load_problems",
]


def __getattr__(name: str):  # lazy: the supervisor pulls in torch, the pool pulls in ray
    if name == "Evaluator":
        from kernelrl.sandbox.supervisor import Evaluator

        return Evaluator
    if name == "SandboxPool":
        from kernelrl.sandbox.pool import SandboxPool

        return SandboxPool
    raise AttributeError(name)
