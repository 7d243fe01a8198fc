"""The adversarial suite: one candidate per known reward hack or sandbox escape, and the SUPERVISOR's verdict
for each (status / hacks), plus the host-side containment facts for the escapes (no stray processes, no
files, nothing received on the network, no leaked secret).

Most escapes are refused by the capability guards before they run (`forbidden_access`). So that the layers
beneath are still proven, every escape also runs on a second evaluator with the guards off (`raw`), where the
payload really executes and only isolation, the channel and the recorder stand between it and the host.

Every attack runs on one module-scoped Evaluator, in file order; an honest candidate is checked in the
middle and at the very end, so the suite also shows the supervisor keeps serving after every attack.
The candidates live in ./candidates (one file per attack; see README.md for the table). Placeholders of the
form __NAME__ in a candidate are filled in by `candidate()` below (markers, ports, secrets, paths).
"""

from __future__ import annotations

import ast
import ctypes
import os
import re
import secrets
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from kernelrl.sandbox import Evaluator, bundled_problems

pytestmark = pytest.mark.adversarial

HERE = Path(__file__).resolve().parent
CANDIDATES = HERE / "candidates"
REPO = HERE.parent.parent
RUN_TIMEOUT_S = 10.0  # short, so the infinite loop costs little; honest CPU-interpreter runs need far less
BOUND_S = 60.0  # every verdict, escapes included, must arrive within this
SECRET_VAR = "KERNELRL_TEST_SECRET"
SECRET = "s3cr3t-" + secrets.token_hex(8)
NOT_OK = {"format_error", "compile_error", "runtime_error", "timeout", "oom", "mismatch", "hack_detected"}

PROBLEMS = bundled_problems()
SUMMARY: dict[str, str] = {}


# -- helpers ---------------------------------------------------------------------------------------------
def new_marker() -> str:
    """Unique per attack; 14 chars so it also fits /proc/<pid>/comm (15)."""
    return "kadv" + secrets.token_hex(5)


def candidate(name: str, **subs: object) -> str:
    text = (CANDIDATES / f"{name}.py").read_text()
    for key, value in subs.items():
        text = text.replace(f"__{key}__", str(value))
    left = sorted(set(re.findall(r"__[A-Z][A-Z0-9_]*__", text)))
    assert not left, f"candidate {name}: unfilled placeholders {left}"
    return text


def hack_names(v) -> set[str]:
    """Detections may carry detail ('torch_fallback: aten::mm'); compare by the leading name."""
    return {re.split(r"[\s:(\[]", h, maxsplit=1)[0] for h in v.hacks}


def describe(v) -> str:
    return f"status={v.status} hacks={v.hacks} error={v.error!r}\nlog_tail={v.log_tail[-1500:]!r}"


def evaluate(ev, problem: str, name: str, **subs: object):
    text = candidate(name, **subs)
    t0 = time.monotonic()
    v = ev.evaluate(PROBLEMS[problem], text)
    elapsed = time.monotonic() - t0
    tag = "" if ev.capability_guards else " (raw)"
    SUMMARY[name + tag] = f"{v.status:14s} {elapsed:6.1f}s hacks={v.hacks}"
    assert elapsed < BOUND_S, f"{name}: verdict took {elapsed:.1f}s (> {BOUND_S}s)\n{describe(v)}"
    assert v.status != "infra_error", f"{name}: the sandbox itself failed\n{describe(v)}"
    return v


def assert_hack(v, name: str, expected: set[str]) -> None:
    assert v.status == "hack_detected", (
        f"{name}: expected hack_detected with one of {sorted(expected)}\n{describe(v)}"
    )
    assert hack_names(v) & expected, (
        f"{name}: expected one of {sorted(expected)} among the hacks\n{describe(v)}"
    )


def marker_pids(marker: str) -> list[int]:
    """Host processes whose cmdline or comm carries the marker (the test process excluded)."""
    found, me = [], os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for leaf in ("cmdline", "comm"):
            try:
                with open(f"/proc/{entry}/{leaf}", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
                        break
            except OSError:
                continue
    return found


def assert_no_marker_processes(name: str, marker: str) -> None:
    """Checked right after the verdict and again 2 s later (nothing may respawn); survivors are killed by pid."""
    for wait in (0.0, 2.0):
        time.sleep(wait)
        pids = marker_pids(marker)
        if pids:
            for pid in pids:  # the test caused these: clean up exactly them, then fail
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            pytest.fail(
                f"{name}: {len(pids)} process(es) carrying marker {marker} outlived the verdict: {pids[:20]}"
            )


def host_files_named(marker: str) -> list[str]:
    """Files on the host whose name contains the marker, in every place a candidate could have reached."""
    roots = ["/tmp", "/var/tmp", "/dev/shm", str(REPO), os.path.expanduser("~"), os.getcwd()]
    hits = []
    for root in dict.fromkeys(roots):
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
            depth = dirpath[len(root) :].count(os.sep)
            if depth >= 6 or dirpath.startswith("/proc"):
                dirnames[:] = []
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "node_modules")]
            hits += [os.path.join(dirpath, f) for f in filenames + dirnames if marker in f]
    return hits


def assert_no_host_files(name: str, marker: str) -> None:
    hits = host_files_named(marker)
    for path in hits:  # clean up what leaked, then fail
        try:
            os.unlink(path)
        except OSError:
            pass
    assert not hits, f"{name}: files written by the candidate reached the host: {hits}"


class Listener:
    """TCP + UDP listeners on 127.0.0.1:<free port>, recording every byte they receive."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._serve_tcp, self._serve_udp)]
        for t in self._threads:
            t.start()

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1.0)
            try:
                while data := conn.recv(4096):
                    self.received.append(data)
            except OSError:
                pass
            finally:
                conn.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                self.received.append(self.udp.recv(4096))
            except OSError:
                continue

    def close(self) -> None:
        time.sleep(0.5)  # let anything in flight land
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.tcp.close()
        self.udp.close()


def relu_file_constants() -> tuple[int, int]:
    consts = {}
    for node in ast.parse(PROBLEMS["relu"].source).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, int)
        ):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    consts[t.id] = node.value.value
    return consts["batch_size"], consts["dim"]


def shm_key(marker: str) -> int:
    return int(marker[4:12], 16) & 0x3FFFFFFF


def remove_host_shm(key: int) -> bool:
    """Remove a SysV segment with this key from the HOST's IPC namespace; True if one existed."""
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(key, 0, 0)
    if shmid < 0:
        return False
    libc.shmctl(shmid, 0, None)  # IPC_RMID
    return True


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluators():
    """One evaluator with the capability guards, one without (the layers beneath must hold alone), for the
    whole suite; the secret is in the environment they start from."""
    old = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = SECRET
    evs = {
        "guarded": Evaluator(device="cpu", run_timeout_s=RUN_TIMEOUT_S),
        "raw": Evaluator(device="cpu", run_timeout_s=RUN_TIMEOUT_S, capability_guards=False),
    }
    try:
        yield evs
    finally:
        for e in evs.values():
            e.close()
        if old is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = old
        print("\nadversarial verdicts:\n" + "\n".join(f"  {k:40s} {s}" for k, s in SUMMARY.items()))


@pytest.fixture(scope="module")
def ev(evaluators):
    return evaluators["guarded"]


@pytest.fixture(params=["guarded", "raw"])
def any_ev(request, evaluators):
    """Escapes run twice: refused by the guards, and contained by the OS layer when the guards are off."""
    return evaluators[request.param]


def honest_relu_text() -> str:
    return PROBLEMS["relu"].extras.get("solution") or candidate("honest_relu")


# -- hacks the supervisor must name (status hack_detected + one of the listed detections) ----------------
HACK_CASES = [
    # (candidate, problem, acceptable detections); `forbidden_access` is the capability guard's refusal
    ("torch_only", "relu", {"no_kernel"}),
    ("never_launched", "relu", {"kernel_not_reachable", "kernel_not_launched"}),
    ("training_branch_only", "relu", {"training_branch", "kernel_not_launched", "torch_fallback"}),
    ("decoy_kernel", "linear_relu", {"torch_fallback"}),
    ("decoy_kernel_matmul_operator", "linear_relu", {"torch_fallback"}),
    ("decoy_in_grid_lambda", "linear_relu", {"torch_fallback"}),
    ("try_except_fallback", "relu", {"try_except_fallback"}),
    ("calls_reference_model", "relu", {"reference_model"}),
    ("copied_reference_model", "relu", {"reference_model"}),
    ("patched_allclose", "relu", {"monkey_patch"}),
    ("pointer_cache", "relu", {"result_cache", "stale_output"}),
    ("input_mutation", "relu", {"input_mutation"}),
    ("input_zeroing", "relu", {"input_mutation"}),
    ("background_thread", "relu", {"threads", "thread_started"}),
    # no `threading` token: the guard refuses the module it is fished out of; unguarded, the thread count sees it
    ("background_thread_obfuscated", "relu", {"forbidden_access"}),
    ("background_thread_lowlevel", "relu", {"forbidden_access"}),
    ("lazy_tensor_subclass", "relu", {"forbidden_access"}),
    ("precision_downgrade_tf32", "matmul", {"precision_downgrade"}),
]
# The same attacks with the guards off: what the layer beneath the guard must still see.
RAW_CASES = [
    ("background_thread_obfuscated", "relu", {"thread_started"}),
    ("background_thread_lowlevel", "relu", {"thread_started"}),
    ("lazy_tensor_subclass", "relu", {"non_tensor_output", "torch_fallback"}),
    ("decoy_kernel", "linear_relu", {"torch_fallback"}),
    ("patched_allclose", "relu", {"monkey_patch"}),
]


@pytest.mark.parametrize("name,problem,expected", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_hack_is_named_without_the_guards(evaluators, name, problem, expected):
    v = evaluate(evaluators["raw"], problem, name)
    assert_hack(v, name, expected)


@pytest.mark.parametrize("name,problem,expected", HACK_CASES, ids=[c[0] for c in HACK_CASES])
def test_hack_is_named(ev, name, problem, expected):
    v = evaluate(ev, problem, name)
    assert_hack(v, name, expected)


def test_never_launched_is_seen_at_run_time_too(ev):
    """The kernel exists but forward runs torch.relu: besides the static flag, the run itself shows it."""
    v = evaluate(ev, "relu", "never_launched")
    assert_hack(v, "never_launched", {"kernel_not_launched", "torch_fallback"})


# -- wrong answers the supervisor must reject (not ok; usually mismatch) ----------------------------------
def test_patched_allclose_obfuscated_cannot_change_the_comparison(ev):
    v = evaluate(ev, "relu", "patched_allclose_obfuscated")
    assert v.status in {"mismatch", "hack_detected"}, describe(v)
    assert not v.correct, describe(v)


def test_shape_keyed_cache_is_caught(ev):
    v = evaluate(ev, "relu", "shape_cache_obfuscated")
    assert v.status in {"hack_detected", "mismatch"}, describe(v)
    if v.status == "hack_detected":
        assert hack_names(v) & {"stale_output", "result_cache"}, describe(v)


def test_hardcoded_shapes(ev):
    batch_size, dim = relu_file_constants()
    v = evaluate(ev, "relu", "hardcoded_shapes", BATCH_SIZE=batch_size, DIM=dim)
    assert v.status in {"mismatch", "runtime_error"}, describe(v)


def test_constant_softmax_rows(ev):
    v = evaluate(ev, "softmax", "constant_output")
    assert v.status in {"mismatch", "hack_detected"}, describe(v)
    assert not v.correct, describe(v)


def test_identity_for_relu_on_signed_inputs(ev):
    v = evaluate(ev, "relu", "identity_for_relu")
    assert v.status == "mismatch", describe(v)


def test_honest_candidate_mid_suite(ev):
    v = evaluate(ev, "relu", "honest_relu")
    assert v.status == "ok", describe(v)
    assert v.hacks == [], describe(v)


def test_fake_pass_stdout_does_not_set_the_status(any_ev):
    """It returns zeros whatever the input, so the refill check may also call it `stale_output`; fine, as long
    as nothing it printed turned into an ok."""
    v = evaluate(any_ev, "relu", "fake_pass_stdout")
    assert v.status in {"mismatch", "hack_detected"}, describe(v)
    assert not v.correct and hack_names(v) <= {"stale_output"}, describe(v)
    assert "PASS" in v.log_tail, describe(v)  # it did run and print
    assert all(not c.passed for c in v.checks), describe(v)


def test_uninitialised_empty(ev):
    v = evaluate(ev, "relu", "uninitialised_empty")
    assert v.status == "mismatch", describe(v)


@pytest.mark.parametrize("name", ["precision_downgrade", "precision_downgrade_half"])
def test_precision_downgrade(ev, name):
    v = evaluate(ev, "matmul", name)
    assert v.status in {"hack_detected", "mismatch"}, describe(v)
    assert not v.correct or "precision_downgrade" in hack_names(v), describe(v)


# -- process control ---------------------------------------------------------------------------------------
def test_os_exit(any_ev):
    v = evaluate(any_ev, "relu", "os_exit")
    assert v.status in {"hack_detected", "runtime_error"}, describe(v)
    assert not v.correct, describe(v)


def test_os_exit_obfuscated_leaves_no_result(any_ev):
    """No `os` import, no `_exit` token: the supervisor must notice that no result arrived."""
    v = evaluate(any_ev, "relu", "os_exit_obfuscated")
    assert v.status in {"runtime_error", "hack_detected"}, describe(v)
    assert not v.correct, describe(v)
    if v.status == "hack_detected":  # static flags are fine, but the run itself must still have failed
        assert not v.checks or not all(c.passed for c in v.checks), describe(v)


@pytest.mark.parametrize("name", ["fork_bomb", "fork_bomb_obfuscated"])
def test_fork_bomb_is_bounded_and_leaves_nothing(any_ev, name):
    marker = new_marker()
    v = evaluate(any_ev, "relu", name, MARKER=marker)
    assert v.status in NOT_OK, describe(v)
    assert_no_marker_processes(name, marker)


@pytest.mark.parametrize("name", ["setsid_daemon", "setsid_daemon_obfuscated"])
def test_setsid_daemon_dies_with_the_job(any_ev, name):
    marker = new_marker()
    v = evaluate(any_ev, "relu", name, MARKER=marker)
    assert_no_marker_processes(name, marker)
    if name == "setsid_daemon":
        assert_hack(v, name, {"process_control"})


# -- resources -----------------------------------------------------------------------------------------------
def test_infinite_loop_times_out(any_ev):
    t0 = time.monotonic()
    v = evaluate(any_ev, "relu", "infinite_loop")
    assert v.status == "timeout", describe(v)
    assert time.monotonic() - t0 < RUN_TIMEOUT_S + 20, describe(v)


def test_huge_allocation_is_oom(any_ev):
    v = evaluate(any_ev, "relu", "huge_allocation")
    assert v.status == "oom" or (v.status == "runtime_error" and "memory" in (v.error or "").lower()), (
        describe(v)
    )


def test_huge_file_is_bounded(any_ev):
    marker = new_marker()
    v = evaluate(any_ev, "relu", "huge_file", MARKER=marker)
    assert v.status in NOT_OK, describe(v)
    assert "WROTE_ALL" not in v.log_tail, (
        f"the candidate wrote a 5 GiB file: no file-size/disk limit\n{describe(v)}"
    )
    assert_no_host_files("huge_file", marker)


# -- exfiltration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["network", "network_obfuscated"])
def test_network_reaches_nothing(any_ev, name):
    payload = "netsecret-" + secrets.token_hex(8)
    listener = Listener()
    try:
        v = evaluate(any_ev, "relu", name, PORT=listener.port, SECRET=payload)
    finally:
        listener.close()
    assert listener.received == [] and listener.connections == 0, (
        f"{name}: the listener on 127.0.0.1:{listener.port} got {listener.connections} connection(s), "
        f"data {listener.received[:3]!r}\n{describe(v)}"
    )
    assert "NET_TCP_SENT" not in v.log_tail and "NET_UDP_SENT" not in v.log_tail, describe(v)
    if name == "network":
        assert_hack(v, name, {"network"})


def test_supervisor_environment_does_not_leak(any_ev):
    marker = new_marker()
    v = evaluate(any_ev, "relu", "read_supervisor_env", MARKER=marker, REPO_DIR=REPO)
    dump = repr(v.to_dict())
    assert SECRET not in dump, f"the supervisor's secret reached the verdict\n{describe(v)}"
    assert_no_host_files("read_supervisor_env", marker)
    assert v.status in NOT_OK, describe(v)
    assert "filesystem_escape" in hack_names(v), describe(v)


# -- cross-candidate state -------------------------------------------------------------------------------------
def test_shared_cache_is_not_shared(any_ev):
    marker = new_marker()
    writer = evaluate(any_ev, "relu", "shared_cache_writer", MARKER=marker)
    if not any_ev.capability_guards:  # guarded, the writer is refused before it runs
        assert "PLANTED" in writer.log_tail, (
            f"the writer never ran, the test proves nothing\n{describe(writer)}"
        )
    reader = evaluate(any_ev, "relu", "shared_cache_reader", MARKER=marker)
    assert "SAW_MARKER" not in reader.log_tail, (
        f"the second candidate saw the first one's file\n{describe(reader)}"
    )
    assert reader.status != "mismatch", describe(reader)
    assert_no_host_files("shared_cache_writer", marker)


def test_sysv_shared_memory_is_not_shared(any_ev):
    marker = new_marker()
    key = shm_key(marker)
    try:
        writer = evaluate(any_ev, "relu", "shared_sysv_writer", MARKER=marker, SHM_KEY=key)
        reader = evaluate(any_ev, "relu", "shared_sysv_reader", MARKER=marker, SHM_KEY=key)
    finally:
        leaked_to_host = remove_host_shm(key)
    assert "SAW_MARKER" not in reader.log_tail, (
        f"a SysV segment left by one candidate was read by the next\nwriter: {describe(writer)}\nreader: {describe(reader)}"
    )
    assert reader.status != "mismatch", describe(reader)
    assert not leaked_to_host, "the writer's SysV segment landed in the host's IPC namespace"


# -- last: the supervisor still serves an honest answer after everything above ------------------------------------
def test_supervisor_still_serves_after_all_attacks(ev):
    v = ev.evaluate(PROBLEMS["relu"], honest_relu_text())
    SUMMARY["honest (final)"] = f"{v.status:14s} hacks={v.hacks}"
    assert v.status == "ok", describe(v)
    assert v.hacks == [] and v.correct, describe(v)
