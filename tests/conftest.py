"""Shared fixtures: one sandboxed Evaluator per test session (its start-up costs seconds, not each test)."""

from __future__ import annotations

import pytest

from sandbox import Evaluator, bundled_problems


@pytest.fixture(scope="session")
def problems():
    return bundled_problems()


@pytest.fixture(scope="session")
def evaluator():
    with Evaluator(device="cpu", run_timeout_s=120) as ev:
        yield ev
