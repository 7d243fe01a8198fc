"""What every reward component reads: the completion, its extracted candidate and static report, the verdict.

Built once per completion so ten components do not parse the same code ten times.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.candidate import Candidate, extract_candidate
from sandbox.static_checks import StaticReport, analyze
from sandbox.verdict import Verdict


@dataclass(frozen=True)
class Sample:
    completion: str
    candidate: Candidate
    static: StaticReport
    verdict: Verdict | None = None  # None when only rule components are being computed


def make_sample(completion: str, verdict: Verdict | None = None) -> Sample:
    cand = extract_candidate(completion)
    static = analyze(cand.code) if cand.code is not None else StaticReport([], [], [], [])
    return Sample(completion, cand, static, verdict)
