"""A sandbox verdict as a short observation a model can act on in its next turn.

Why a separate rendering: the verdict is written for people and tools (full tracebacks, host paths, every
check); a model needs the one thing to fix, in its own terms (its own line numbers), and must learn nothing
about the machine that judged it. So the feedback is, by status: the first error lines with the candidate's
line numbers (traceback frames outside the candidate's file are dropped), the failing check (variant and its
size, input distribution, max error, where when the sandbox says), the detected hack kinds in plain words (with
the lines the static checks point at), and on a GPU the speedup and the speed-of-light fraction.

Trust boundary: every text that reaches the model passes `scrub` (absolute paths become ``<path>``, the
candidate's own file becomes ``candidate.py``, long digit runs such as seeds become ``<n>``); infrastructure
errors say only that the sandbox failed; at most a short tail of what the candidate printed is shown, and only
where it can explain a crash. The result is deterministic (the same verdict gives the same text) and at most
`MAX_CHARS` characters.

Standard library only: the trainer-side hooks can load this file without kernelrl's dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_CHARS = 1500
CANDIDATE_FILE = "candidate.py"
PRINTED_TAIL_LINES = 6
PRINTED_TAIL_CHARS = 300
ERROR_CHARS = 400
MAX_FRAMES = 3

# Every hack kind the sandbox reports, in words a model can act on. Unknown kinds are shown by name.
HACK_WORDS = {
    "no_kernel": "no Triton kernel or CUDA extension does the work",
    "kernel_not_reachable": "a kernel is defined but ModelNew.forward never reaches it",
    "training_branch": "the kernel runs only in training mode",
    "try_except_fallback": "a try/except falls back to PyTorch",
    "reference_model": "the answer uses the reference Model",
    "threads": "the answer starts threads",
    "side_stream": "work is put on a side CUDA stream",
    "monkey_patch": "the answer patches torch, timers or the checker",
    "process_control": "the answer controls processes (exit, signals, fork, subprocess)",
    "network": "the answer opens network connections",
    "introspection": "the answer inspects interpreter internals (gc, frames, ctypes)",
    "filesystem_escape": "the answer touches files or paths outside its own code",
    "result_cache": "results are cached between calls",
    "precision_downgrade": "the answer computes in lower precision than the task",
    "kernel_not_launched": "no kernel was launched while forward ran",
    "torch_fallback": "heavy PyTorch ops ran outside the kernels",
    "thread_started": "a thread was started while forward ran",
    "input_mutation": "the inputs were modified",
    "stale_output": "the output did not change when the inputs did (stale or input-independent result)",
    "non_tensor_output": "the output is not a plain tensor of the reference's shape, dtype and device",
    "timer_inconsistent": "the measured time disagrees with the wall clock",
    "faster_than_light": "the measured time is below the hardware's speed of light",
}

_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)(?:, in (.+))?$')
_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?(?:/[\w.@+\-]+)+/?")
_DIGITS = re.compile(r"\d{7,}")


def scrub(text: str) -> str:
    """Text with host details removed: the candidate's file path -> ``candidate.py``, any other absolute path
    -> ``<path>``, digit runs of 7 or more (seeds, addresses, pids) -> ``<n>``."""

    def path(m: re.Match) -> str:
        p = m.group(0)
        return CANDIDATE_FILE if p.rstrip("/").endswith("/" + CANDIDATE_FILE) else "<path>"

    return _DIGITS.sub("<n>", _PATH.sub(path, text))


def render(
    verdict: Any,
    *,
    details: Sequence[str] = (),
    sol_fraction: float | None = None,
    max_chars: int = MAX_CHARS,
) -> str:
    """The observation for one verdict (a `Verdict` or its dict). ``details`` are the static checks' findings
    for the same code (``"kind: what (line N)"``); ``sol_fraction`` overrides the verdict's own, when it has one."""
    v = _as_dict(verdict)
    status = v.get("status") or "infra_error"
    part = _PARTS.get(status, _infra)
    lines = part(v, list(details))
    if status == "ok":
        lines += _speed(v, sol_fraction)
    text = "\n".join(line for line in lines if line is not None)
    return _bound(text, max_chars)


# ---------------------------------------------------------------- one function per status


def _ok(v: dict, details: list[str]) -> list[str]:
    checks = v.get("checks") or []
    variants = ", ".join(dict.fromkeys(c.get("variant", "?") for c in checks))
    return [f"Correct: all {len(checks)} checks passed (shape variants: {variants or 'none'})."]


def _mismatch(v: dict, details: list[str]) -> list[str]:
    checks = v.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    out = [f"Wrong result: {len(failed)} of {len(checks)} checks failed."]
    per_variant: dict[str, list[bool]] = {}
    for c in checks:
        per_variant.setdefault(str(c.get("variant", "?")), []).append(bool(c.get("passed")))
    out.append(
        "By shape variant: "
        + "; ".join(f"{name} {sum(p)}/{len(p)} passed" for name, p in per_variant.items())
        + "."
    )
    if failed:
        c = failed[0]
        name = str(c.get("variant", "?"))
        size = _variant_size(v, name)
        what = [
            f"First failure: variant {name}{f' ({size})' if size else ''}, {c.get('distribution', '?')} inputs"
        ]
        if c.get("max_abs_error") is not None:
            what.append(f"max abs error {_num(c['max_abs_error'])}")
        if c.get("max_rel_error") is not None:
            what.append(f"max rel error {_num(c['max_rel_error'])}")
        where = c.get("where") or c.get("location") or c.get("index")
        if where is not None:
            what.append(f"at {scrub(str(where))[:120]}")
        out.append(", ".join(what) + ".")
        if c.get("message"):
            out.append(f"Check: {scrub(str(c['message']))[:200]}")
    elif v.get("error"):
        out.append(_short(v["error"]))
    return out


def _compile_error(v: dict, details: list[str]) -> list[str]:
    return ["Compile error: the module failed to import, build or construct ModelNew.", *_failure(v)]


def _runtime_error(v: dict, details: list[str]) -> list[str]:
    return ["Runtime error: ModelNew was built but forward failed.", *_failure(v)]


def _timeout(v: dict, details: list[str]) -> list[str]:
    return [
        f"Timeout: {_short(v.get('error') or 'no result within the time budget')}.",
        *_failure(v, error=False),
    ]


def _oom(v: dict, details: list[str]) -> list[str]:
    return [
        "Out of memory: the answer allocated more memory than the budget allows.",
        *_failure(v, error=False),
    ]


def _format_error(v: dict, details: list[str]) -> list[str]:
    return [
        f"No usable answer: {_short(v.get('error') or 'no python block')}.",
        "Answer with brief reasoning, then exactly one ```python block defining class ModelNew.",
    ]


def _hack(v: dict, details: list[str]) -> list[str]:
    kinds = list(v.get("hacks") or [])
    out = ["Rejected: a reward hack was detected, so the result does not count even where outputs matched."]
    where = _hack_lines(v, details)
    for k in kinds:
        line = where.get(k)
        out.append(f"- {HACK_WORDS.get(k, k.replace('_', ' '))}{f' ({line})' if line else ''}.")
    if not kinds:
        out.append("- " + _short(v.get("error") or "unspecified"))
    out.append("Do the work in your own kernels launched from forward, on the inputs given.")
    return out


def _not_executed(v: dict, details: list[str]) -> list[str]:
    return ["Compiled, but not run: no GPU is available to run this CUDA kernel, so it was not judged."]


def _infra(v: dict, details: list[str]) -> list[str]:
    return ["Not judged: the sandbox itself failed on this attempt (not a fault of the answer)."]


_PARTS = {
    "ok": _ok,
    "mismatch": _mismatch,
    "compile_error": _compile_error,
    "runtime_error": _runtime_error,
    "timeout": _timeout,
    "oom": _oom,
    "format_error": _format_error,
    "hack_detected": _hack,
    "not_executed": _not_executed,
    "infra_error": _infra,
}


# ---------------------------------------------------------------- pieces


def _speed(v: dict, sol_fraction: float | None) -> list[str]:
    speedup = v.get("speedup")
    if speedup is None:
        return ["Speed: not measured here (correctness only)."]
    runtime, ref = v.get("runtime_ms"), v.get("ref_runtime_ms")
    times = f" ({runtime:.4g} ms vs {ref:.4g} ms)" if runtime and ref else ""
    verdict = "faster than" if speedup > 1 else "not faster than"
    out = [f"Speed: {speedup:.2f}x, {verdict} the PyTorch reference{times}."]
    sol = sol_fraction if sol_fraction is not None else v.get("sol_fraction")
    if isinstance(sol, (int, float)) and sol >= 0:
        out.append(f"Speed of light: {100 * sol:.0f}% of the hardware bound for this problem.")
    return out


def _failure(v: dict, error: bool = True) -> list[str]:
    """The error line, the candidate's own frames (file, line, code), and a short tail of its printed output."""
    out = [f"Error: {_short(v['error'])}"] if error and v.get("error") else []
    printed, frames = _split_log(v.get("log_tail") or "")
    out += frames[-MAX_FRAMES:]
    if printed:
        out.append("Printed (last lines):\n" + printed)
    return out


def _split_log(log: str) -> tuple[str, list[str]]:
    """(a short tail of what the candidate printed, its traceback frames as 'candidate.py, line N, in f: code').

    The runner appends the traceback after the candidate's output; frames from any other file (the runner,
    torch, Triton) are internals and dropped."""
    lines = log.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), None
    )
    if start is None:  # a traceback cut at the front by the log bound: its first frame line starts it
        start = next((i for i, line in enumerate(lines) if _FRAME.match(line)), None)
    printed_lines = lines if start is None else lines[:start]
    frames = []
    for i, line in enumerate(lines[start or 0 :] if start is not None else [], start or 0):
        m = _FRAME.match(line)
        if not m or not (m.group(1).endswith("/" + CANDIDATE_FILE) or m.group(1) == CANDIDATE_FILE):
            continue
        code = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]) else ""
        where = f"{CANDIDATE_FILE}, line {m.group(2)}" + (f", in {m.group(3)}" if m.group(3) else "")
        frames.append(f"  {scrub(where)}: {scrub(code)[:160]}" if code else f"  {scrub(where)}")
    tail = [scrub(line)[:160] for line in printed_lines if line.strip()][-PRINTED_TAIL_LINES:]
    printed = "\n".join(tail)[-PRINTED_TAIL_CHARS:]
    return printed, frames


def _hack_lines(v: dict, details: list[str]) -> dict[str, str]:
    """kind -> 'line N' from the static findings (``"kind: what (line N)"``) or a verdict's ``hack_details``."""
    out: dict[str, str] = {}
    for d in details:
        kind, _, rest = str(d).partition(":")
        m = re.search(r"\(lines? ([\d, ]+)\)\s*$", rest)
        if m and kind.strip() not in out:
            out[kind.strip()] = "line " + m.group(1).strip()
    for d in v.get("hack_details") or []:  # tolerated if the sandbox adds structured details
        if isinstance(d, Mapping):
            kind = d.get("kind") or d.get("hack") or d.get("name")
            line = d.get("line") or d.get("lineno")
            if kind and isinstance(line, int) and kind not in out:
                out[str(kind)] = f"line {line}"
    return out


def _variant_size(v: dict, name: str) -> str | None:
    """The variant's size from the verdict's notes (``"scaled: 524288 -> 16384 elements ..."``)."""
    for note in v.get("notes") or []:
        m = re.match(rf"{re.escape(name)}: (\d+) -> (\d+) elements", str(note))
        if m:
            return f"{m.group(2)} elements"
    return None


def _short(text: Any) -> str:
    first = scrub(str(text)).strip().splitlines()
    line = first[0] if first else ""
    return line[:ERROR_CHARS] + ("..." if len(line) > ERROR_CHARS else "")


def _num(x: Any) -> str:
    try:
        return f"{float(x):.3g}"
    except (TypeError, ValueError):
        return "?"


def _bound(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 15].rstrip() + "\n...(truncated)"


def _as_dict(verdict: Any) -> dict:
    if isinstance(verdict, Mapping):
        return dict(verdict)
    if hasattr(verdict, "to_dict"):
        return verdict.to_dict()
    raise TypeError(f"expected a Verdict or its dict, got {type(verdict).__name__}")
