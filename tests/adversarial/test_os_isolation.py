"""Isolation attacks (class 8 of issue 11, and the fork-server attack of class 9) as candidates, judged by the
SUPERVISOR's verdict, plus host-side containment facts.

Each candidate does its work at import with what a candidate file may contain, and its answer is correct
only if the escape worked (it read the planted file, a host socket replied, a foreign socket family opened,
a marker survived from the previous candidate). So `not v.correct` is the verdict's own evidence that the
escape failed, whatever else (static flags, a capability guard that stops the candidate earlier) decided
the status. `test_the_attacks_work_without_isolation` runs some of them under the weak `process-only`
profile, where they do get a correct answer: the candidates are wired right and these tests can fail.

The capability guards would refuse every one of these before it runs, so the evaluators here have them off
(`capability_guards=False`): the payloads really execute and only the OS layer stands in their way. The OS
layer without the runner in the way at all is tested in tests/test_isolation.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path

import pytest
from unix_listener import UnixListener

from kernelrl.sandbox import Evaluator, bundled_problems, isolation

pytestmark = pytest.mark.adversarial

HERE = Path(__file__).resolve().parent
CANDIDATES = HERE / "candidates"
REPO = HERE.parent.parent
PROBLEMS = bundled_problems()
RUN_TIMEOUT_S = 10.0
BOUND_S = 60.0
SUMMARY: dict[str, str] = {}
needs_bwrap = pytest.mark.skipif(isolation.bwrap_probe() is not None, reason=f"{isolation.bwrap_probe()}")


def candidate(name: str, **subs: object) -> str:
    text = (CANDIDATES / f"{name}.py").read_text()
    for key, value in subs.items():
        text = text.replace(f"__{key}__", str(value))
    left = sorted(set(re.findall(r"__[A-Z][A-Z0-9_]*__", text)))
    assert not left, f"candidate {name}: unfilled placeholders {left}"
    return text


def describe(v) -> str:
    return f"status={v.status} correct={v.correct} hacks={v.hacks} error={v.error!r}\nlog_tail={v.log_tail[-1500:]!r}"


def evaluate(ev, name: str, problem: str = "relu", **subs: object):
    t0 = time.monotonic()
    v = ev.evaluate(PROBLEMS[problem], candidate(name, **subs))
    elapsed = time.monotonic() - t0
    SUMMARY[f"{name} ({ev.profile})"] = f"{v.status:14s} {elapsed:6.1f}s correct={v.correct} hacks={v.hacks}"
    assert elapsed < BOUND_S, f"{name}: verdict took {elapsed:.1f}s\n{describe(v)}"
    assert v.status != "infra_error", f"{name}: the sandbox itself failed\n{describe(v)}"
    return v


def assert_escape_failed(v, name: str) -> None:
    assert not v.correct, f"{name}: the answer is only correct if the escape worked\n{describe(v)}"
    assert v.status != "ok", describe(v)


def honest(ev) -> None:
    v = ev.evaluate(PROBLEMS["relu"], PROBLEMS["relu"].extras["solution"] + f"\n# {secrets.token_hex(4)}\n")
    assert v.status == "ok" and v.correct, describe(v)


@pytest.fixture(scope="module")
def ev():
    e = Evaluator(device="cpu", run_timeout_s=RUN_TIMEOUT_S, capability_guards=False)
    yield e
    e.close()
    print("\nisolation verdicts:\n" + "\n".join(f"  {k:44s} {s}" for k, s in SUMMARY.items()))


# -- a planted host file never appears in a verdict (property over locations) -------------------------------------
LOCATIONS = [
    "/etc",
    "/opt",
    "/run",
    "/var/lib",
    "/srv",
    "/home",
    "/mnt",
    "/root",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
]


def plant(location: str) -> tuple[str, str, str] | None:
    """A fresh file in `location` holding a hidden secret (the candidate never knows it) and the word the
    candidate looks for; None where this user may not write."""
    name = f"kernelrl-planted-{secrets.token_hex(4)}"
    hidden, expected = "hidden-" + secrets.token_hex(16), "expected-" + secrets.token_hex(8)
    try:
        path = Path(location, name)
        path.write_text(f"{hidden}\n{expected}\n")
        path.chmod(0o644)
    except OSError:
        return None
    return name, hidden, expected


def existing_host_files() -> list[tuple[str, str, str]]:
    """(directory, name, a line of it) for files worth stealing that exist on this host: its name and
    accounts, the checkout, a shared filesystem. The line is one the sandbox's own version lacks."""
    synthetic = "".join(isolation.etc_files(isolation.BASE_UID).values())
    out = []
    for d, name in (
        ("/etc", "hostname"),
        ("/etc", "passwd"),
        (str(REPO), "pyproject.toml"),
        ("/work/shared", "DESIGN.md"),
    ):
        try:
            lines = [ln.strip() for ln in Path(d, name).read_text().splitlines() if len(ln.strip()) >= 6]
        except OSError:
            continue
        line = next((ln for ln in lines if ln not in synthetic), None)
        if line:
            out.append((d, name, line))
    return out


@needs_bwrap
@pytest.mark.parametrize("location", [*LOCATIONS, "repo"])
def test_planted_host_file_never_reaches_the_verdict(ev, location):
    where = str(REPO) if location == "repo" else location
    planted = plant(where)
    if planted is None:
        pytest.skip(f"cannot plant a file in {where} as this user")
    name, hidden, expected = planted
    try:
        v = evaluate(ev, "os_read_host_file", REPO_DIR=where, MARKER=name, SECRET=expected)
    finally:
        os.unlink(os.path.join(where, name))
    assert hidden not in json.dumps(v.to_dict()), f"{where}/{name} reached the verdict\n{describe(v)}"
    assert_escape_failed(v, f"os_read_host_file {where}/{name}")


@needs_bwrap
@pytest.mark.parametrize("where,name,line", existing_host_files())
def test_existing_host_file_is_not_there(ev, where, name, line):
    v = evaluate(ev, "os_read_host_file", REPO_DIR=where, MARKER=name, SECRET=line)
    assert_escape_failed(v, f"os_read_host_file {where}/{name}")
    synthetic = "".join(isolation.etc_files(isolation.BASE_UID).values())  # what the sandbox shows instead
    lines = Path(where, name).read_text().splitlines()
    others = [ln for ln in lines if len(ln.strip()) >= 12 and ln != line and ln not in synthetic]
    assert not any(ln in json.dumps(v.to_dict()) for ln in others[:50]), describe(v)


# -- host sockets and socket families -----------------------------------------------------------------------------
def unix_servers(marker: str) -> list[UnixListener]:
    """Listeners at <dir>/<marker>.sock in the host's /run and /tmp (where os_unix_socket looks)."""
    dirs = {
        os.path.realpath(d)
        for d in ("/run", "/tmp", "/var/run")
        if os.path.isdir(d) and os.access(d, os.W_OK)
    }
    return [UnixListener(os.path.join(d, f"{marker}.sock")) for d in sorted(dirs)]


@needs_bwrap
def test_host_unix_sockets_are_unreachable(ev):
    marker = "ksock" + secrets.token_hex(5)
    servers = unix_servers(marker)
    try:
        v = evaluate(ev, "os_unix_socket", MARKER=marker)
    finally:
        for s in servers:
            s.close()
    assert servers and all(s.connections == 0 for s in servers), f"a host socket accepted it\n{describe(v)}"
    assert_escape_failed(v, "os_unix_socket")


@needs_bwrap
def test_socket_families_other_than_unix_are_denied(ev):
    v = evaluate(ev, "os_socket_families")
    assert_escape_failed(v, "os_socket_families")


@needs_bwrap
def test_widening_cuda_visible_devices_reaches_no_gpu(ev):
    v = evaluate(ev, "os_cuda_visible_devices")
    assert_escape_failed(v, "os_cuda_visible_devices")


# -- the trusted side -----------------------------------------------------------------------------------------------
def sandbox_tree(ev) -> list[int]:
    """Host pids of the worker's sandbox: bwrap and everything under it."""
    out, todo = [], [ev._fork_server().proc.pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


@needs_bwrap
def test_candidate_cannot_signal_the_fork_server(ev):
    honest(ev)  # the fork server is up
    server = ev._server
    tree = sandbox_tree(ev)
    v = evaluate(ev, "os_signal_fork_server")
    time.sleep(0.3)
    for pid in tree:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert fields[0] not in "TtZX" and int(fields[16]) == 0, (
            f"sandbox pid {pid}: {fields[0]} nice {fields[16]}"
        )
    assert ev._server is server and server.alive(), describe(v)
    honest(ev)
    assert ev._server is server  # served by the very same fork server


@needs_bwrap
def test_deep_tree_then_an_honest_candidate(ev):
    honest(ev)
    server = ev._server
    v = evaluate(ev, "os_deep_tree")
    assert ev._server is server and server.alive(), f"the fork server was replaced\n{describe(v)}"
    honest(ev)
    marker = "kleft" + secrets.token_hex(5)
    reader = evaluate(ev, "os_leave_files_reader", MARKER=marker)  # also looks for the deep tree
    assert_escape_failed(reader, "os_leave_files_reader after os_deep_tree")


@needs_bwrap
def test_files_do_not_survive_into_the_next_candidate(ev):
    marker = "kleft" + secrets.token_hex(5)
    evaluate(ev, "os_leave_files_writer", MARKER=marker)
    reader = evaluate(ev, "os_leave_files_reader", MARKER=marker)
    assert_escape_failed(reader, "os_leave_files_reader")
    host = [
        os.path.join(d, n)
        for d in ("/tmp", "/var/tmp", "/dev/shm", str(REPO))
        for n in os.listdir(d)
        if marker in n
    ]
    assert not host, f"files reached the host: {host}"


# -- the same attacks without isolation: they work, so the tests above can fail --------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="the process-only profile needs a root supervisor")
def test_the_attacks_work_without_isolation():
    planted = plant("/tmp")
    assert planted is not None
    name, hidden, expected = planted
    marker = "kleft" + secrets.token_hex(5)
    servers = unix_servers(marker)
    try:
        with Evaluator(
            device="cpu",
            isolation_profile="process-only",
            run_timeout_s=RUN_TIMEOUT_S,
            capability_guards=False,
        ) as weak:
            v = evaluate(weak, "os_read_host_file", REPO_DIR="/tmp", MARKER=name, SECRET=expected)
            assert v.correct and hidden in v.log_tail, describe(v)
            v = evaluate(weak, "os_unix_socket", MARKER=marker)
            assert v.correct and any(s.connections for s in servers), describe(v)
            evaluate(weak, "os_leave_files_writer", MARKER=marker)
            v = evaluate(weak, "os_leave_files_reader", MARKER=marker)
            assert v.correct, describe(v)
    finally:
        os.unlink(os.path.join("/tmp", name))
        for s in servers:
            s.close()
        for d in ("/tmp", "/var/tmp", "/dev/shm"):  # what the writer left on the host
            for n in os.listdir(d):
                if marker in n and not n.endswith(".sock"):
                    os.unlink(os.path.join(d, n))
