"""The fork server that lives inside a worker's sandbox.

It imports torch and triton once, then forks a fresh process per candidate, so a candidate pays
milliseconds of start-up instead of seconds while still running in a process of its own. It never imports
candidate code itself and never initialises CUDA (forking after CUDA initialisation is unsafe). The
supervisor talks to it over a Unix socket and hands it the three pipe ends the candidate uses; the data on
those pipes flows between candidate and supervisor and never through this process.

Under bwrap every candidate is PID 1 of a PID namespace of its own, with a private mount namespace (fresh
tmpfs on its writable directories, a /proc of its own): when it exits the kernel kills whatever it left
running and drops every file it wrote, so nothing here walks a tree the candidate shaped (see isolation.py).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

from kernelrl.sandbox import isolation

PR_SET_CHILD_SUBREAPER = 36
SETUP_OK = b"ok"


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(json.dumps(msg).encode())


def _job_pids(in_namespace: bool, token: str) -> list[int]:
    """Processes that belong to the running job (everything but us in our PID namespace)."""
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if in_namespace:
            pids.append(pid)
            continue
        try:  # process-only: descendants carry the job token in their initial environment
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"KERNELRL_JOB={token}".encode() in f.read().split(b"\0"):
                    pids.append(pid)
        except OSError:
            continue
    return pids


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def _kill_all(in_namespace: bool, token: str) -> None:
    """SIGKILL every process of the job, setsid escapees included, and reap what we can."""
    for _ in range(50):
        pids = _job_pids(in_namespace, token)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        if not pids:
            return
        time.sleep(0.02)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _remove_tree(path: str) -> None:
    """process-only: remove a job directory whatever its depth (rm walks it iteratively, unlike rmtree)."""
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", path], stdin=subprocess.DEVNULL, check=False)


def _child(
    cmd: dict[str, Any], fds: list[int], setup_w: int, ctx: dict[str, Any], sock: socket.socket | None
) -> None:
    """Runs in the forked candidate process: lock down, then hand over to the runner. Never returns.

    `setup_w` hears `ok` once the lockdown is complete, or why it failed: the fork server tells the two
    apart from anything the candidate does afterwards (it is closed before candidate code runs)."""
    code, report = 70, setup_w
    try:
        from kernelrl.sandbox.isolation import Limits

        if sock is not None:
            sock.close()
        os.setsid()
        limits = Limits(**cmd["limits"])
        if ctx["in_namespace"]:
            isolation.enter_job_namespace(limits.tmpfs_mb, ctx["rebind"])
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (*fds, setup_w)]  # no clash with 0-4
        for target, fd in zip((0, 1, 3, 4), high, strict=True):
            os.dup2(fd, target)
        os.dup2(1, 2)
        report = 4
        os.closerange(5, 65536)
        isolation.apply_child_limits(limits, cuda=cmd["device"] == "cuda")
        isolation.drop_privileges(cmd.get("uid"))
        job_dir = isolation.JOB_DIR if ctx["in_namespace"] else ctx["job_dir"]
        os.makedirs(job_dir, mode=0o700, exist_ok=True)
        env = isolation.candidate_env(cmd["env"], job_dir, cmd["device"], ctx.get("pinned_gpu"))
        env["KERNELRL_JOB"] = ctx["token"]
        os.environ.clear()
        os.environ.update(env)
        isolation.prepare_job_dirs(env)
        os.chdir(job_dir)
        isolation.set_dumpable(True)  # the candidate's own /proc entries are its own again
        seccomp = isolation.apply_seccomp() if cmd.get("seccomp", True) else False
        os.write(4, SETUP_OK)
        os.close(4)
        report = -1
        if "raw" in cmd:
            code = _run_raw(cmd["raw"])
        else:
            from kernelrl.sandbox import runner

            code = runner.main(in_fd=0, out_fd=3, seccomp=seccomp)
    except BaseException as e:  # noqa: BLE001 - report anything, then leave
        for fd in (report, 2) if report >= 0 else (2,):
            try:
                os.write(fd, f"kernelrl runner setup failed: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
    finally:
        os._exit(code)


def _run_raw(code: str) -> int:
    """Test hook: run raw Python as the candidate, fully locked down, but without the runner (or any guard
    inside it), so tests can aim at the OS layer alone. Only the supervisor can send it."""
    try:
        exec(compile(code, "<raw>", "exec"), {"__name__": "__raw__"})  # noqa: S102 - the sandboxed child
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _run(sock: socket.socket, cmd: dict[str, Any], fds: list[int], ctx: dict[str, Any]) -> None:
    in_namespace = ctx["in_namespace"]
    token = os.urandom(8).hex()
    job_ctx = {**ctx, "token": token}
    if not in_namespace:
        job_ctx["job_dir"] = job_dir = os.path.join(ctx["job_root"], "c")
        _remove_tree(job_dir)
        os.makedirs(job_dir, mode=0o700)
        if cmd.get("uid") is not None and os.geteuid() == 0:
            os.chown(job_dir, cmd["uid"], cmd["uid"])
    setup_r, setup_w = os.pipe()
    if in_namespace:
        isolation.new_pid_namespace_for_next_child(ctx["own_pid_ns"])
    pid = os.fork()
    if pid == 0:
        os.close(setup_r)
        _child(cmd, fds, setup_w, job_ctx, sock)
    os.close(setup_w)
    for fd in fds:
        os.close(fd)
    limit_mb = cmd["limits"]["memory_mb"]
    oom = killed = False
    status = None
    peak = 0.0
    next_rss = 0.0
    sock.settimeout(0.02)
    while status is None:
        try:
            msg = sock.recv(1 << 16)
            if not msg:  # supervisor went away
                killed = True
            elif json.loads(msg).get("cmd") == "kill":
                killed = True
        except (TimeoutError, BlockingIOError):
            pass
        now = time.monotonic()
        if not killed and now >= next_rss:
            next_rss = now + 0.05
            rss = _rss_mb(_job_pids(in_namespace, token))
            peak = max(peak, rss)
            if rss > limit_mb:
                oom = True
        if killed or oom:
            _kill_all(in_namespace, token)
        try:
            wpid, wstatus = os.waitpid(pid, 0 if (killed or oom) else os.WNOHANG)
        except ChildProcessError:
            wpid, wstatus = pid, 0
        if wpid == pid:
            status = wstatus
    _kill_all(in_namespace, token)  # under bwrap the kernel did this when the job's PID 1 exited
    setup = os.read(setup_r, 4096)
    os.close(setup_r)
    if not in_namespace:
        _remove_tree(job_ctx["job_dir"])
    if setup != SETUP_OK and not (killed or oom):
        # The sandbox could not be built: our failure, never the candidate's. Leaving makes the supervisor
        # see a dead fork server (an infrastructure error) instead of a verdict about the candidate.
        sys.stderr.write(f"kernelrl fork server: job setup failed: {setup.decode(errors='replace')}\n")
        sys.stderr.flush()
        raise SystemExit(71)
    sock.settimeout(None)
    _send(
        sock,
        {
            "event": "exit",
            "code": os.waitstatus_to_exitcode(status),
            "oom": oom,
            "killed": killed,
            "peak_rss_mb": round(peak, 1),
        },
    )


def _probe(ctx: dict[str, Any]) -> int:
    """One empty job through the whole lockdown, without torch: does this machine support the sandbox?"""
    r, w = os.pipe()
    limits = isolation.Limits(tmpfs_mb=16)
    cmd = {"raw": "pass", "limits": limits.__dict__, "device": "cpu", "env": {}, "seccomp": True}
    devnull = os.open(os.devnull, os.O_RDWR)
    fds = [os.dup(devnull), os.dup(devnull), os.dup(devnull)]
    isolation.new_pid_namespace_for_next_child(ctx["own_pid_ns"])
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(cmd, fds, w, {**ctx, "token": "probe"}, None)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    setup = os.read(r, 4096)
    if setup != SETUP_OK or os.waitstatus_to_exitcode(status) != 0:
        print(f"sandbox job setup failed: {setup.decode(errors='replace') or 'no report'}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    probe = "--probe" in sys.argv[1:]
    in_namespace = os.getpid() == 1
    ctx: dict[str, Any] = {"in_namespace": in_namespace, "rebind": [], "pinned_gpu": None}
    if in_namespace:
        uid = int(os.environ["KERNELRL_SANDBOX_UID"])
        groups = [int(g) for g in os.environ.get("KERNELRL_SANDBOX_GROUPS", "").split(",") if g]
        ctx["rebind"] = [p for p in os.environ.get("KERNELRL_REBIND", "").split(os.pathsep) if p]
        # From here on: our own user, mount and PID namespaces.
        isolation.become_fork_server(uid, groups, ctx["rebind"])
        ctx["own_pid_ns"] = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        ctx["pinned_gpu"] = os.environ.get("KERNELRL_PINNED_GPU")
        if probe:
            return _probe(ctx)
    else:
        isolation.set_dumpable(False)
        ctx["job_root"] = os.environ["KERNELRL_JOB_ROOT"]
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    sock = socket.socket(fileno=int(os.environ["KERNELRL_ZYGOTE_FD"]))
    # Preload what every candidate needs; the env (TRITON_INTERPRET, ...) was set by the supervisor.
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    from kernelrl.sandbox import runner

    torch.set_num_threads(1)  # no OpenMP pool before fork: children start their own
    runner.warm_up(interpreter=os.environ.get("TRITON_INTERPRET") == "1")

    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        pass
    _send(sock, {"event": "ready", "pid": os.getpid(), "euid": os.geteuid(), "namespace": in_namespace})
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 8)
        except OSError:
            return 0
        if not msg:
            return 0
        cmd = json.loads(msg)
        if cmd["cmd"] == "run":
            _run(sock, cmd, list(fds), ctx)
        elif cmd["cmd"] == "ping":
            _send(sock, {"event": "pong"})
        elif cmd["cmd"] == "exit":
            return 0


if __name__ == "__main__":
    sys.exit(main())
