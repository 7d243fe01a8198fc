"""Training data that teaches repair: (first attempt with a realistic bug, the sandbox's feedback on it, the
corrected answer) as a multi-turn SFT conversation.

Why: a model only learns to use feedback (`kernelrl eval --turns`, the multi-turn trainer hooks) if it has seen
feedback followed by a fix. Teacher-free, the fix is a verified answer we already have, and the first attempt is
that answer with one injected bug of the kinds models really make (the bundled ``wrong.py`` files and the demo's
SFT failures show them): a mask off by one, a parameter's pointer used in place of its loaded value, a fused op
dropped from the chain or the epilogue. The feedback is the real sandbox's on the buggy code, exactly what the
model would read in an episode (`kernelrl.rewards.episode.Episode.observation`).

Verified like every other sample: a repair example is kept only when the buggy attempt really fails in the
sandbox as an honest failure (mismatch, compile or runtime error: not ``ok``, not a hack, not unjudged) and the
corrected answer is ``ok``. The SFT loss falls on the corrected answer only (the buggy attempt and the feedback are
the prompt, `kernelrl.train.recipe_io.as_prompt_completion`): the model must not learn to write the bug.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

FAILURES = frozenset({"mismatch", "compile_error", "runtime_error"})  # what a buggy first attempt may be


@dataclass(frozen=True)
class Bug:
    kind: str
    code: str  # the whole file with the bug in it
    note: str  # what was wrong, as the corrected answer states it


def _mask_off_by_one(code: str, rng: random.Random) -> Bug | None:
    """The first bound of a mask shrinks by one: the last element, row or column is never loaded or stored."""
    lines = code.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*\w*mask\w* = .*?<) (\w+)(.*)$", line.rstrip("\n"))
        if m:
            lines[i] = f"{m.group(1)} {m.group(2)} - 1{m.group(3)}\n"
            note = (
                f"the mask compared against `{m.group(2)} - 1`, so the last position was never computed; "
                f"the bound is `< {m.group(2)}`."
            )
            return Bug("mask_off_by_one", "".join(lines), note)
    return None


def _pointer_as_value(code: str, rng: random.Random) -> Bug | None:
    """A loaded operand (a bias, a weight, a second input) is replaced by its pointer where it is used."""
    lines = code.splitlines(keepends=True)
    loads = [
        (i, m.group(1))
        for i, line in enumerate(lines)
        if (m := re.match(r"^\s*(\w+) = tl\.load\(\1_ptr\b", line)) and m.group(1) != "x"
    ]
    rng.shuffle(loads)
    for i, name in loads:
        for j in range(i + 1, len(lines)):
            use = re.compile(rf"(?<![\w.]){name}\b(?!_ptr|\s*=[^=])")
            code_part = lines[j].split("#", 1)[0]  # a use in a comment is not a use
            if use.search(code_part) and "tl.load" not in code_part and "tl.store" not in code_part:
                lines[j] = use.sub(f"{name}_ptr", lines[j], count=1)
                note = f"`{name}_ptr` is a pointer; the computation needs `{name}`, the value loaded from it."
                return Bug("pointer_as_value", "".join(lines), note)
    return None


def _missing_op(code: str, rng: random.Random) -> Bug | None:
    """One fused op is dropped: a step of an elementwise chain (``# x = <op>`` and its line), or an epilogue op."""
    lines = code.splitlines(keepends=True)
    chain = [i for i, line in enumerate(lines) if re.match(r"^\s*# x = ", line) and i + 1 < len(lines)]
    if chain:
        i = rng.choice(chain)
        op = lines[i].strip()[len("# x = ") :]
        del lines[i : i + 2]
        return Bug("missing_op", "".join(lines), f"the step `x = {op}` of the chain was missing.")
    start = next((i for i, line in enumerate(lines) if "epilogue" in line.lower() and "#" in line), None)
    if start is None:
        return None
    ops = [
        i
        for i in range(start + 1, len(lines))
        if re.match(r"^\s*acc = ", lines[i]) and "tl.load" not in lines[i]
    ]
    if not ops:
        return None
    i = rng.choice(ops)
    op = lines[i].strip()
    del lines[i]
    return Bug("missing_op", "".join(lines), f"the epilogue op `{op}` was missing.")


INJECTORS: dict[str, Callable[[str, random.Random], Bug | None]] = {
    "mask_off_by_one": _mask_off_by_one,
    "pointer_as_value": _pointer_as_value,
    "missing_op": _missing_op,
}


def inject(code: str, rng: random.Random, kinds: list[str] | None = None) -> Bug | None:
    """One bug of a kind chosen at random among those that apply to this code (None when none does)."""
    names = list(kinds or INJECTORS)
    unknown = sorted(set(names) - set(INJECTORS))
    if unknown:
        raise ValueError(f"unknown bug kind {unknown[0]!r}; choose from {', '.join(INJECTORS)}")
    rng.shuffle(names)
    for name in names:
        bug = INJECTORS[name](code, rng)
        if bug is not None and bug.code != code:
            return bug
    return None


@dataclass(frozen=True)
class RepairCase:
    kind: str
    first: str  # the first attempt: the original reasoning with the buggy code
    fixed: str  # the corrected answer: what was wrong, then the original (verified) answer


def repair_case(completion: str, rng: random.Random, kinds: list[str] | None = None) -> RepairCase | None:
    """A (buggy first attempt, corrected answer) pair from a verified answer with one fenced python block."""
    m = re.search(r"```python\n(.*?)```", completion, re.S)
    if not m:
        return None
    bug = inject(m.group(1), rng, kinds)
    if bug is None:
        return None
    first = completion[: m.start(1)] + bug.code + completion[m.end(1) :]
    fixed = f"The feedback points at the bug: {bug.note} Corrected answer:\n\n{completion}"
    return RepairCase(bug.kind, first, fixed)


def repair_messages(prompt: list[dict[str, str]], case: RepairCase, observation: str) -> list[dict[str, str]]:
    """The conversation: the prompt, the buggy attempt, the sandbox's feedback as the next user turn, the fix."""
    return [
        *prompt,
        {"role": "assistant", "content": case.first},
        {"role": "user", "content": observation},
        {"role": "assistant", "content": case.fixed},
    ]
