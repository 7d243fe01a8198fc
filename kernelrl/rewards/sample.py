"""What every reward component reads: the completion, its extracted candidate and static report, the verdict.

Built once per completion so ten components do not parse the same code ten times, and the text-only part
(extraction and static analysis, ~10 ms) is remembered for recent completions: repeats are common (a GRPO
group, a retried request, a cache hit on the server), and composing a reward should then cost microseconds.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from kernelrl.sandbox.candidate import Candidate, extract_candidate
from kernelrl.sandbox.static_checks import StaticReport, analyze
from kernelrl.sandbox.verdict import Verdict


@dataclass(frozen=True)
class Sample:
    completion: str
    candidate: Candidate
    static: StaticReport
    verdict: Verdict | None = None  # None when only rule components are being computed


_PARSED_SIZE = 4096
_parsed: OrderedDict[bytes, tuple[Candidate, StaticReport]] = (
    OrderedDict()
)  # by the text's digest, not the text
_lock = threading.Lock()


def make_sample(completion: str, verdict: Verdict | None = None) -> Sample:
    key = hashlib.sha256(completion.encode("utf-8", "surrogatepass")).digest()
    with _lock:
        parsed = _parsed.get(key)
        if parsed is not None:
            _parsed.move_to_end(key)
    if parsed is None:
        cand = extract_candidate(completion)
        parsed = cand, analyze(cand.code) if cand.code is not None else StaticReport([], [], [], [])
        with _lock:
            _parsed[key] = parsed
            while len(_parsed) > _PARSED_SIZE:
                _parsed.popitem(last=False)
    return Sample(completion, *parsed, verdict)
