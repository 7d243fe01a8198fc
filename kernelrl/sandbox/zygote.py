"""The fork server that lives inside a worker's sandbox.

It imports torch and triton once, then forks a fresh process per candidate, so a candidate pays
milliseconds of start-up instead of seconds while still running in a process of its own. It never imports
candidate code itself and never initialises CUDA (forking after CUDA initialisation is unsafe). The
supervisor talks to it over a Unix socket and hands it the three pipe ends the candidate uses; the data on
those pipes flows between candidate and supervisor and never through this process.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any

JOB_ROOT_BWRAP = "/tmp/job"
PR_SET_CHILD_SUBREAPER = 36


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


WIPED = ("/tmp", "/var/tmp", "/dev/shm")
_preserved: dict[str, set[str]] = {}  # what was there at start: read-only mounts of the Python install


def _wipe(path: str) -> None:
    """Empty a directory that candidates could write to, so the next one finds nothing."""
    if not os.path.isdir(path):
        return
    for name in set(os.listdir(path)) - _preserved.get(path, set()):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def _child(cmd: dict[str, Any], fds: list[int], job_dir: str, token: str, sock: socket.socket) -> None:
    """Runs in the forked candidate process: lock down, then hand over to the runner. Never returns."""
    code = 70
    try:
        from kernelrl.sandbox import isolation, runner
        from kernelrl.sandbox.isolation import Limits

        os.setsid()
        sock.close()
        for target, fd in zip((0, 1, 3), fds, strict=True):
            os.dup2(fd, target)
        os.dup2(1, 2)
        os.closerange(4, 65536)
        os.chdir(job_dir)
        env = {k: str(v).replace("{job}", job_dir) for k, v in cmd["env"].items()}
        env["KERNELRL_JOB"] = token
        os.environ.clear()
        os.environ.update(env)
        limits = Limits(**cmd["limits"])
        isolation.apply_child_limits(limits, cuda=cmd["device"] == "cuda")
        if cmd.get("uid") is not None:
            isolation.drop_privileges(cmd["uid"])
        seccomp = isolation.apply_seccomp() if cmd.get("seccomp", True) else False
        code = runner.main(in_fd=0, out_fd=3, seccomp=seccomp)
    except BaseException as e:  # noqa: BLE001 - report anything, then leave
        try:
            os.write(2, f"kernelrl runner setup failed: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _run(sock: socket.socket, cmd: dict[str, Any], fds: list[int], in_namespace: bool, job_root: str) -> None:
    token = os.urandom(8).hex()
    job_dir = os.path.join(job_root, "c")
    shutil.rmtree(job_dir, ignore_errors=True)
    os.makedirs(job_dir, mode=0o700)
    for sub in ("home", "tmp", "triton", "ext"):
        os.makedirs(os.path.join(job_dir, sub))
    uid = cmd.get("uid")
    if uid is not None:
        for root, dirs, _files in os.walk(job_dir):
            for d in [root, *(os.path.join(root, x) for x in dirs)]:
                os.chown(d, uid, uid)
    pid = os.fork()
    if pid == 0:
        _child(cmd, fds, job_dir, token, sock)
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
    _kill_all(in_namespace, token)
    shutil.rmtree(job_dir, ignore_errors=True)
    if in_namespace:
        for path in WIPED:
            _wipe(path)
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


def main() -> None:
    sock = socket.socket(fileno=int(os.environ["KERNELRL_ZYGOTE_FD"]))
    in_namespace = os.getpid() == 1
    if in_namespace:
        _preserved.update({p: set(os.listdir(p)) for p in WIPED if os.path.isdir(p)})
    job_root = JOB_ROOT_BWRAP if in_namespace else os.environ["KERNELRL_JOB_ROOT"]
    if not in_namespace:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
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
            return
        if not msg:
            return
        cmd = json.loads(msg)
        if cmd["cmd"] == "run":
            _run(sock, cmd, list(fds), in_namespace, job_root)
        elif cmd["cmd"] == "ping":
            _send(sock, {"event": "pong"})
        elif cmd["cmd"] == "exit":
            return


if __name__ == "__main__":
    sys.exit(main())
