"""Isolation profiles: how a worker's fork server is walled off from the host.

`bwrap`: the fork server runs as PID 1 of a bubblewrap sandbox (no network, read-only root, private /tmp and
/dev, own PID/IPC/UTS namespaces, all capabilities dropped but those it needs to demote, kill and clean up after
its children). Each candidate then runs in a fresh fork as an unprivileged per-worker uid, under rlimits and a
seccomp filter. `process-only`: the same fork server without namespaces, for machines where bubblewrap
cannot run; it is weaker (host network and files are reachable) and says so loudly.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass

PROFILES = ("bwrap", "process-only")
# Candidates of worker slot N run as uid/gid BASE_UID + N, so RLIMIT_NPROC counts one candidate's tree only.
BASE_UID = 61000
# What the fork server keeps as root inside bwrap: demote children, kill them, and own/clean their files.
# Only the sandbox's private tmpfs mounts are writable, so the file capabilities reach nothing on the host.
ZYGOTE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


@dataclass(frozen=True)
class Limits:
    """Per-candidate resource limits; the wall-clock budgets are enforced by the supervisor."""

    compile_timeout_s: float = 180.0
    run_timeout_s: float = 60.0
    cpu_time_s: int = 600
    memory_mb: int = 6144
    file_size_mb: int = 256
    open_files: int = 512
    processes: int = 256
    output_mb: int = 512
    log_kb: int = 256
    tmpfs_mb: int = 1024


@functools.cache
def bwrap_works() -> bool:
    """Probe once: can bubblewrap start a process with our flags on this machine?"""
    if shutil.which("bwrap") is None:
        return False
    try:
        cmd = [*bwrap_prefix(tmpfs_mb=16), "/bin/true"]
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_profile(requested: str = "auto") -> str:
    """The strongest available profile, or the requested one (an unavailable `bwrap` is an error)."""
    if requested not in ("auto", *PROFILES):
        raise ValueError(f"unknown isolation profile {requested!r}; expected auto, bwrap or process-only")
    if requested == "process-only":
        return requested
    if bwrap_works():
        return "bwrap"
    if requested == "bwrap":
        raise RuntimeError(
            "isolation profile 'bwrap' requested but bubblewrap cannot run here (apt-get install bubblewrap)"
        )
    warnings.warn(
        "kernelrl: bubblewrap is unavailable, candidates run with the weaker 'process-only' isolation "
        "(no network/filesystem namespaces). Install bubblewrap for real isolation.",
        RuntimeWarning,
        stacklevel=2,
    )
    return "process-only"


def bwrap_prefix(tmpfs_mb: int, gpu: bool = False) -> list[str]:
    """bubblewrap arguments; root keeps only SETUID/SETGID/KILL so the fork server can demote and reap."""
    args = [
        "bwrap",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--size",
        str(tmpfs_mb << 20),
        "--tmpfs",
        "/tmp",
        "--size",
        str(64 << 20),
        "--tmpfs",
        "/var/tmp",
    ]
    args += _hide_private_dirs()
    # GPUs need the host's device nodes; otherwise a minimal fresh /dev.
    args += ["--dev-bind", "/dev", "/dev", "--tmpfs", "/dev/shm"] if gpu else ["--dev", "/dev"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"] + [a for c in ZYGOTE_CAPS for a in ("--cap-add", c)]
    else:
        args += ["--unshare-user"]
    return args + ["--"]


HIDDEN_DIRS = ("/home", "/root", "/work", "/mnt", "/srv", "/media", "/data", "/workspace", "/scratch")


def _hide_private_dirs() -> list[str]:
    """Cover user data (home, checkouts, datasets, bundled answers) with empty tmpfs, then put back read-only
    only what the fork server needs to run: the Python installation and the kernelrl package itself."""
    import kernelrl

    pkg = os.path.dirname(os.path.abspath(kernelrl.__file__))
    hide = {d for d in HIDDEN_DIRS if os.path.isdir(d)}
    home, cwd_top = os.path.expanduser("~"), "/" + os.getcwd().strip("/").split("/")[0]
    hide |= {
        p
        for p in (home, cwd_top)
        if p not in ("/", "/tmp", "/usr", "/etc", "/var", "/opt", "/proc", "/dev", "/sys")
    }
    keep = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        os.path.realpath(sys.executable).rsplit("/bin/", 1)[0],
    }
    keep |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)}
    keep = {os.path.realpath(p) for p in keep} | keep
    hide_or_tmp = hide | {
        "/tmp",
        "/var/tmp",
    }  # a checkout under /tmp (CI clones) vanishes behind our tmpfs too
    args: list[str] = []
    for d in sorted(hide):
        args += ["--tmpfs", d]
    made: set[str] = set()

    def bind(path: str) -> None:
        # bwrap makes missing mount points 0700, which the demoted candidate could not traverse
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in made and any(parent == h or parent.startswith(h + "/") for h in hide_or_tmp):
                made.add(parent)
                args.extend(["--perms", "0755", "--dir", parent])
        args.extend(["--ro-bind", path, path])

    for p in sorted(keep):
        if any(p == h or p.startswith(h + "/") for h in hide_or_tmp) and os.path.isdir(p):
            bind(p)
    bind(pkg)
    bundled = os.path.join(pkg, "sandbox", "bundled")
    if os.path.isdir(bundled):
        args += ["--tmpfs", bundled]
    return args


def zygote_command(profile: str, limits: Limits, gpu: bool) -> list[str]:
    cmd = [sys.executable, "-m", "kernelrl.sandbox.zygote"]
    return [*bwrap_prefix(limits.tmpfs_mb, gpu), *cmd] if profile == "bwrap" else cmd


def apply_child_limits(limits: Limits, cuda: bool) -> None:
    """rlimits for a candidate process, set before it drops privileges (lowering needs no capability)."""
    mb = 1 << 20
    pairs = [
        (resource.RLIMIT_CPU, limits.cpu_time_s),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ]
    if not cuda:  # CUDA reserves huge virtual ranges: RLIMIT_AS would kill honest GPU code.
        pairs.append((resource.RLIMIT_AS, limits.memory_mb * mb))
    for res, value in pairs:
        soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))


def drop_privileges(uid: int) -> bool:
    """Become an unprivileged per-worker user when we are root (which also drops every capability)."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    return True


# Syscalls no kernel candidate needs; denied with EPERM so attempts fail loudly instead of silently.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "userfaultfd",
    "personality",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    # SysV IPC and POSIX message queues outlive a process inside the worker's IPC namespace: a channel
    # from one candidate to the next. Nothing honest needs them (POSIX shm lives in /dev/shm, wiped per job).
    "shmget",
    "shmat",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "mq_open",
    "mq_unlink",
)


def apply_seccomp() -> bool:
    """Install the deny-list filter plus a ban on IP sockets; False where libseccomp is missing."""
    try:
        import errno

        import pyseccomp as seccomp
    except (ImportError, OSError):
        return False
    try:
        f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name in DENIED_SYSCALLS:
            try:
                f.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (ValueError, OSError, RuntimeError):
                continue  # syscall unknown on this architecture
        for family in (2, 10, 17):  # AF_INET, AF_INET6, AF_PACKET
            f.add_rule(seccomp.ERRNO(errno.EACCES), "socket", seccomp.Arg(0, seccomp.EQ, family))
        f.load()
        return True
    except Exception:  # noqa: BLE001 - a broken libseccomp must not take the worker down
        return False
