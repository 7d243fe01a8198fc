"""Test hook: run raw attacker code as a candidate inside a fork server's child, fully locked down (own
namespaces, no capability, rlimits, seccomp) but without the runner or any guard in it, so tests exercise the
OS layer on its own. The zygote accepts a `raw` field in its `run` command only from the supervisor's socket.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from kernelrl.sandbox.isolation import Limits
from kernelrl.sandbox.supervisor import ForkServer


@dataclass
class RawResult:
    exit: dict[str, Any]  # the fork server's report: code, oom, killed, peak_rss_mb
    log: str  # the child's stdout + stderr

    @property
    def code(self) -> int:
        return self.exit["code"]

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :].strip() for line in self.log.splitlines() if line.startswith(prefix)]


def run_raw(
    server: ForkServer, code: str, limits: Limits | None = None, timeout_s: float = 60.0
) -> RawResult:
    """Run `code` as the candidate; the verdict-free result: exit report and log."""
    limits = limits or Limits()
    job_r, job_w = os.pipe()
    log_r, log_w = os.pipe()
    res_r, res_w = os.pipe()
    cmd = {
        "cmd": "run",
        "raw": code,
        "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": ""},
        "limits": asdict(limits),
        "device": "cpu",
        "uid": server.uid,
        "seccomp": True,
    }
    socket.send_fds(server.sock, [json.dumps(cmd).encode()], [job_r, log_w, res_w])
    for fd in (job_r, log_w, res_w, job_w):
        os.close(fd)
    sel = selectors.DefaultSelector()
    sel.register(log_r, selectors.EVENT_READ, "log")
    sel.register(res_r, selectors.EVENT_READ, "res")
    sel.register(server.sock, selectors.EVENT_READ, "ctl")
    log, exit_info, open_fds = bytearray(), None, {log_r, res_r}
    deadline = time.monotonic() + timeout_s
    try:
        while exit_info is None or open_fds:
            if time.monotonic() > deadline:
                if exit_info is None:
                    server.sock.send(json.dumps({"cmd": "kill"}).encode())
                    deadline = time.monotonic() + 30
                    timeout_s = -1
                else:
                    break
            events = sel.select(timeout=1.0)
            if not events and exit_info is not None:
                break
            for key, _ in events:
                if key.data == "ctl":
                    msg = server.sock.recv(1 << 16)
                    if not msg:
                        raise RuntimeError(f"the fork server died: {server.log_tail()}")
                    exit_info = json.loads(msg)
                    sel.unregister(server.sock)
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                elif key.data == "log":
                    log += chunk
    finally:
        sel.close()
        os.close(log_r)
        os.close(res_r)
    if timeout_s < 0:
        raise TimeoutError(f"raw job did not finish in time; log: {log.decode(errors='replace')[-2000:]}")
    return RawResult(exit_info, log.decode(errors="replace"))


def ping(server: ForkServer, timeout_s: float = 10.0) -> bool:
    """The fork server still answers on its socket."""
    server.sock.settimeout(timeout_s)
    try:
        server.sock.send(json.dumps({"cmd": "ping"}).encode())
        return json.loads(server.sock.recv(1 << 16) or b"{}").get("event") == "pong"
    except (OSError, ValueError):
        return False
    finally:
        server.sock.settimeout(None)
