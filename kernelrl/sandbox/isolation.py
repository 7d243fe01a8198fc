"""Isolation profiles: how a worker's fork server, and each candidate it forks, are walled off from the host.

`bwrap` (an allow-list): the sandbox root is an empty read-only tmpfs into which only what a candidate needs
is mounted read-only: /usr and the /bin, /lib* links, the Python installation and its site-packages, the
kernelrl package (its bundled answers covered), CUDA_HOME, a minimal /etc (ld.so.cache, alternatives, a
synthetic passwd/group/nsswitch that know the sandbox user), the CPU topology under /sys, a fresh /dev (on
a GPU plus the device nodes of the one GPU this worker owns). Nothing else of the host exists inside: no
/etc, /run (host sockets), /var, /home, /root, /srv, /opt or shared filesystems. No network; own PID, IPC
and UTS namespaces. Inside, the fork server never holds a capability over the host: it runs as the
unprivileged uid BASE_UID + slot (a root supervisor starts it as root only to mount /proc, then it drops to
that uid) in a user namespace of its own, where every host mount is locked read-only. Each candidate is then
PID 1 of a fresh PID namespace (it cannot name, so cannot signal, prlimit or renice the fork server; when it
exits the kernel kills everything it started) with a private mount namespace: fresh tmpfs on /tmp, /var/tmp
and /dev/shm and a /proc that shows only its own job. Nothing is cleaned up afterwards: the namespaces, and
every file the candidate wrote, die with it. The candidate drops every capability, sets no_new_privs, and
runs under rlimits and a seccomp filter (no IP/netlink/vsock/... sockets: AF_UNIX only, and no namespaces).

`process-only`: the same fork server without namespaces, for root supervisors on machines where bubblewrap
cannot run: candidates drop to the per-worker uid, but host files and network stay reachable, which it says
loudly. Without root and without bubblewrap a candidate could not be kept from signalling the fork server
and the supervisor, so the sandbox refuses to start (fail closed).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import resource
import shutil
import signal
import site
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("bwrap", "process-only")
# Candidates of worker slot N run as uid/gid BASE_UID + N, in every profile and whoever runs the supervisor.
BASE_UID = 61000
SANDBOX_USER = "sandbox"
# A root supervisor's bwrap keeps only what the fork server's first moments need: mount its /proc, then drop
# to the sandbox uid for good (which clears these too).
ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID")
# Writable for a candidate, and private to it: fresh tmpfs per candidate (MiB; None = Limits.tmpfs_mb).
PRIVATE_DIRS: dict[str, int | None] = {"/tmp": None, "/var/tmp": 64, "/dev/shm": 64}
JOB_DIR = "/tmp/job"  # the candidate's working directory; HOME, TMPDIR and every cache live below it
PKG_PARENT = str(Path(__file__).resolve().parents[2])
# Top-level host directories that are never mounted whole, whatever the Python installation looks like.
NEVER_WHOLE = {
    "/",
    "/etc",
    "/var",
    "/run",
    "/home",
    "/root",
    "/srv",
    "/opt",
    "/mnt",
    "/media",
    "/proc",
    "/sys",
}
NEVER_WHOLE |= {"/dev", "/tmp", "/boot", "/work", "/data", "/workspace", "/scratch"}


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


# -- choosing a profile ---------------------------------------------------------------------------------------
@functools.cache
def bwrap_probe() -> str | None:
    """Run the real thing once: bwrap with our mounts, the fork server's namespaces and one empty job in them.

    None when it works, else why not (bubblewrap missing, user namespaces disabled, ...)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        launch = zygote_launch("bwrap", Limits(tmpfs_mb=16), gpu=False, uid=BASE_UID, probe=True)
    except (OSError, RuntimeError) as e:
        return str(e)
    try:
        r = subprocess.run(
            launch.cmd,
            pass_fds=launch.fds,
            env=sandbox_base_env(),
            capture_output=True,
            timeout=120,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap failed to start: {e}"
    finally:
        launch.close()
    if r.returncode != 0:
        return (r.stderr or r.stdout).decode(errors="replace").strip()[-1500:] or f"exit code {r.returncode}"
    return None


def choose_profile(requested: str = "auto") -> str:
    """The strongest available profile, or the requested one; refuses to start when it cannot isolate."""
    if requested not in ("auto", *PROFILES):
        raise ValueError(f"unknown isolation profile {requested!r}; expected auto, bwrap or process-only")
    if requested == "process-only":
        _require_root_for_process_only("process-only was requested")
        return "process-only"
    why = bwrap_probe()
    if why is None:
        return "bwrap"
    if requested == "bwrap":
        raise RuntimeError(f"isolation profile 'bwrap' requested but the sandbox cannot start: {why}")
    _require_root_for_process_only(f"bubblewrap cannot run: {why}")
    warnings.warn(
        f"kernelrl: bubblewrap cannot run ({why}); candidates run with the weaker 'process-only' isolation "
        "(their own uid, but host network and files are reachable). Install bubblewrap for real isolation.",
        RuntimeWarning,
        stacklevel=2,
    )
    return "process-only"


def _require_root_for_process_only(why: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(
            f"kernelrl: cannot isolate candidates here, refusing to start ({why}). Without bubblewrap a "
            "candidate would run as this user, able to signal the fork server and the supervisor. Install "
            "bubblewrap and allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or run as root."
        )


# -- what gets mounted ------------------------------------------------------------------------------------------
def sandbox_uid(slot: int) -> int:
    return BASE_UID + slot


def sandbox_base_env() -> dict[str, str]:
    """The fork server's environment: nothing of the supervisor's but what the toolchain needs."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": PKG_PARENT,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key in ("CUDA_HOME", "LD_LIBRARY_PATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def python_roots() -> list[str]:
    """Directories the Python installation needs: prefixes and site-packages (not the user site)."""
    exe = os.path.realpath(sys.executable)
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe.rsplit("/bin/", 1)[0]}
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    found |= {
        p
        for p in sys.path
        if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p) and p != user_site
    }
    found |= {os.path.realpath(p) for p in found}
    return _outermost(p for p in found if os.path.isdir(p))


def package_dir() -> str:
    import kernelrl

    return os.path.dirname(os.path.abspath(kernelrl.__file__))


def _outermost(paths) -> list[str]:
    """Sorted, without paths nested in another one of the set or in /usr (mounted anyway)."""
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths}):
        if _under(p, "/usr") or any(_under(p, q) for q in out):
            continue
        if p in NEVER_WHOLE:
            raise RuntimeError(
                f"kernelrl sandbox: refusing to mount {p} whole into the sandbox (the Python installation or "
                "the kernelrl package lives there); install them in a directory of their own"
            )
        out.append(p)
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def etc_files(uid: int) -> dict[str, str]:
    """Synthetic /etc entries: the sandbox user exists (getpass, torch's cache paths), nothing else does."""
    return {
        "/etc/passwd": (
            "root:x:0:0:root:/:/usr/sbin/nologin\n"
            f"{SANDBOX_USER}:x:{uid}:{uid}:kernelrl candidate:{JOB_DIR}/home:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "/etc/group": f"root:x:0:\n{SANDBOX_USER}:x:{uid}:\nnogroup:x:65534:\n",
        "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "/etc/hostname": "sandbox\n",
    }


@dataclass(frozen=True)
class PinnedGpu:
    """The one GPU a worker's sandbox can reach: its device node, and how CUDA names it inside."""

    minor: int
    visible: str


def pin_gpu(visible: str | None, proc_root: str = "/proc") -> PinnedGpu:
    """Resolve the supervisor's CUDA_VISIBLE_DEVICES (first entry: an index in PCI bus order, or a UUID) to
    the device node of that GPU, using the driver's /proc/driver/nvidia/gpus/<bus>/information."""
    want = (visible or "0").split(",")[0].strip() or "0"
    root = os.path.join(proc_root, "driver", "nvidia", "gpus")
    gpus: list[tuple[int, str | None]] = []
    for bus in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        info: dict[str, str] = {}
        try:
            with open(os.path.join(root, bus, "information")) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    info[key.strip()] = value.strip()
            gpus.append((int(info["Device Minor"]), info.get("GPU UUID")))
        except (OSError, KeyError, ValueError):
            continue
    if not gpus:  # no driver information: the device node's number is the index
        if want.isdigit():
            return PinnedGpu(int(want), "0")
        raise RuntimeError(f"cannot pin GPU {want!r}: no /proc/driver/nvidia/gpus to resolve it to a device")
    if want.isdigit():
        if int(want) >= len(gpus):
            raise RuntimeError(f"cannot pin GPU {want}: the driver lists {len(gpus)} GPU(s)")
        minor, uuid = gpus[int(want)]
    else:
        hits = [g for g in gpus if g[1] and g[1].startswith(want)]
        if len(hits) != 1:
            raise RuntimeError(f"cannot pin GPU {want!r}: it names {len(hits)} of the driver's GPUs")
        minor, uuid = hits[0]
    return PinnedGpu(minor, uuid or "0")


GPU_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


@dataclass
class Launch:
    """How to start a fork server: the command and the descriptors it inherits (close them once started)."""

    cmd: list[str]
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def bwrap_args(
    tmpfs_mb: int,
    uid: int,
    gpu: PinnedGpu | None = None,
    dev_root: str = "/dev",
) -> tuple[list[str], dict[str, str], list[str]]:
    """The allow-list as bubblewrap arguments (all but the /etc data files and the final read-only
    remounts), the fork server's extra environment, and the mounted roots that live under a candidate's
    private directories (bound back inside each job)."""
    is_root = os.geteuid() == 0
    args = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--as-pid-1"]
    if is_root:  # the fork server mounts /proc itself, then drops to `uid` (see become_fork_server)
        args += ["--cap-drop", "ALL"] + [a for c in ZYGOTE_CAPS for a in ("--cap-add", c)]
    else:
        args += ["--unshare-user", "--uid", str(uid), "--gid", str(uid)]
    # bwrap creates missing mount points 0700, which the sandbox uid could not traverse: make them first.
    made: set[str] = {"/"}
    args += [*_mkdirs("/etc", made, "0755"), *_mkdirs("/sys/devices/system", made, "0755")]
    args += ["--ro-bind", "/usr", "/usr"]
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in ("/etc/ld.so.cache", "/etc/alternatives"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    # root: bwrap's own /proc would cover /proc/sys etc. with mounts a nested user namespace may not see
    # through, so the fork server mounts a plain one; unprivileged bwrap adds no covers.
    args += ["--perms", "0555", "--dir", "/proc"] if is_root else ["--proc", "/proc"]
    args += ["--dev", "/dev", "--perms", "01777", "--dir", "/dev/shm"]
    made |= {"/usr", "/proc", "/dev", "/dev/shm"}
    env = {"KERNELRL_SANDBOX_UID": str(uid)}
    if gpu is not None:
        node = os.path.join(dev_root, f"nvidia{gpu.minor}")
        if not os.path.exists(node):
            raise RuntimeError(f"cannot pin the GPU: {node} does not exist")
        args += ["--dev-bind", node, f"/dev/nvidia{gpu.minor}"]
        for name in GPU_CONTROL_NODES:
            args += ["--dev-bind-try", os.path.join(dev_root, name), f"/dev/{name}"]
        for d in ("/sys/bus", "/sys/class", "/sys/dev", "/sys/devices", "/sys/module"):
            args += ["--ro-bind-try", d, d]  # NVML and the driver read PCI topology here
        env["KERNELRL_PINNED_GPU"] = gpu.visible
        env["CUDA_VISIBLE_DEVICES"] = gpu.visible
        if is_root:  # device nodes not open to everyone: the sandbox uid joins their groups
            groups = {os.stat(n).st_gid for n in _gpu_nodes(gpu, dev_root) if not os.stat(n).st_mode & 0o006}
            env["KERNELRL_SANDBOX_GROUPS"] = ",".join(str(g) for g in sorted(groups))
    roots = python_roots()
    pkg = package_dir()
    if not any(_under(pkg, r) for r in roots):
        roots = _outermost([*roots, pkg])
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home and os.path.isdir(cuda_home) and not any(_under(cuda_home, r) for r in ["/usr", *roots]):
        roots = _outermost([*roots, cuda_home])
    for private in PRIVATE_DIRS:
        args += _mkdirs(private, made, "01777")
    for root in roots:
        parent = os.path.dirname(root)
        args += _mkdirs(parent, made, "0755")
        args += ["--ro-bind", root, root]
    bundled = os.path.join(pkg, "sandbox", "bundled")
    if os.path.isdir(bundled):  # reference answers: covered by an empty, read-only tmpfs
        args += ["--tmpfs", bundled, "--remount-ro", bundled]
    rebind = [r for r in roots if any(_under(r, p) for p in PRIVATE_DIRS)]
    if rebind:
        env["KERNELRL_REBIND"] = os.pathsep.join(rebind)
    return args, env, rebind


def _gpu_nodes(gpu: PinnedGpu, dev_root: str) -> list[str]:
    names = [f"nvidia{gpu.minor}", *GPU_CONTROL_NODES]
    return [p for p in (os.path.join(dev_root, n) for n in names) if os.path.exists(p)]


def _mkdirs(path: str, made: set[str], perms: str) -> list[str]:
    """bwrap --dir for `path` and its missing parents, traversable by the sandbox uid."""
    args: list[str] = []
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        p = "/" + "/".join(parts[:i])
        if p not in made and p != "/":
            made.add(p)
            args += ["--perms", perms if p == path else "0755", "--dir", p]
    return args


def zygote_launch(profile: str, limits: Limits, gpu: bool, uid: int, probe: bool = False) -> Launch:
    """How to start a worker's fork server (`probe`: the same sandbox running one empty job, then exit)."""
    cmd = [sys.executable, "-m", "kernelrl.sandbox.zygote", *(["--probe"] if probe else [])]
    if profile != "bwrap":
        return Launch(cmd)
    pinned = pin_gpu(os.environ.get("CUDA_VISIBLE_DEVICES")) if gpu else None
    args, env, _ = bwrap_args(limits.tmpfs_mb, uid, pinned)
    fds: list[int] = []
    try:
        for path, text in etc_files(uid).items():
            fd = os.memfd_create("kernelrl-etc", 0)
            fds.append(fd)
            os.write(fd, text.encode())
            os.lseek(fd, 0, os.SEEK_SET)
            args += ["--perms", "0644", "--ro-bind-data", str(fd), path]
    except OSError:
        Launch([], fds).close()
        raise
    for key, value in env.items():
        args += ["--setenv", key, value]
    # Last: nothing else can be created once / and /dev are read-only.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return Launch([*args, "--", *cmd], fds)


# -- the fork server's namespaces and each candidate's job namespace -------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype)]
    _check(
        _libc.mount(enc[0], enc[1], enc[2], flags, None if data is None else data.encode()), f"mount {target}"
    )


def set_dumpable(on: bool) -> None:
    """Off: /proc/<pid>/mem, environ, fd... of this process are closed to processes of the same uid."""
    _check(_libc.prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def become_fork_server(uid: int, groups: list[int], rebind: list[str]) -> None:
    """Run by bwrap's PID 1; returns in the fork server, every process on the way only waits for the next.

    As root: mount /proc, then fork a child that leaves root for good (this process stays uid 0 without a
    capability, so bwrap's --die-with-parent signal, sent as root, still reaches it). Then, as the sandbox
    uid, fork the fork server into a user, mount and PID namespace of its own, where every host mount is
    locked read-only and where it may create a PID namespace per candidate."""
    if os.geteuid() == 0:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        child = os.fork()
        if child:
            _capset_empty()
            _wait_and_exit(child)
        os.setgroups(groups)
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # no capability over anything outside our own namespaces from here on
        set_dumpable(True)  # a uid change makes us undumpable, and /proc/self/uid_map root's
    if os.getuid() != uid:
        raise RuntimeError(f"the fork server runs as uid {os.getuid()}, expected the sandbox uid {uid}")
    gid = os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID), "unshare(user, mount, pid)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    set_dumpable(False)
    if os.getpid() == 1:  # new credentials cleared bwrap's --die-with-parent: re-arm it
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    child = os.fork()
    if child:
        _wait_and_exit(child)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _private_mounts(16, rebind)  # a writable /tmp for imports that want one (dill caches gettempdir())
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # shows only us and our jobs


def _wait_and_exit(pid: int) -> None:
    """Wait for `pid` and leave with its status. Should this process die first, being (or living under) bwrap's
    PID 1, everything below it dies with it."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def new_pid_namespace_for_next_child(own_pid_ns: int) -> None:
    """The next fork becomes PID 1 of a fresh PID namespace (the previous job's one is dead by now)."""
    _check(_libc.setns(own_pid_ns, CLONE_NEWPID), "setns(own pid namespace)")
    _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")


def enter_job_namespace(tmpfs_mb: int, rebind: list[str]) -> None:
    """In the freshly forked candidate (PID 1 of its PID namespace): a private mount namespace with fresh
    tmpfs on every writable directory and a /proc that shows only this job. Mounted roots that lived under
    those directories (a checkout in /tmp) are bound back, read-only as they were."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(mount)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _private_mounts(tmpfs_mb, rebind)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _private_mounts(tmpfs_mb: int, rebind: list[str]) -> None:
    """Fresh tmpfs on every directory in PRIVATE_DIRS, with `rebind` (mounted roots that lived there)
    bound back on top, read-only as they were."""
    keep = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in rebind if os.path.isdir(p)}
    for path, size in PRIVATE_DIRS.items():
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size or tmpfs_mb}m,mode=0700")
    for path, fd in keep.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capset_empty() -> None:
    """Clear the effective, permitted and inheritable sets (and with them the ambient one)."""
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")


def drop_privileges(uid: int | None) -> None:
    """Become the unprivileged sandbox user with no capability at all, for good; raises if that fails.

    Root (process-only): setuid to `uid`. Inside the bwrap sandbox we already are that uid and only hold
    capabilities over our own namespaces: drop them (bounding set first, then every set), so neither this
    process nor anything it executes can mount, unshare or regain one."""
    if os.geteuid() == 0:
        if uid is None:
            raise RuntimeError("refusing to run a candidate as root")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails without CAP_SETPCAP, then there is nothing to drop

    _capset_empty()
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    status = Path("/proc/self/status").read_text()
    held = {
        line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
    }
    if held.get("CapEff") or held.get("CapPrm") or held.get("CapAmb") or os.geteuid() == 0:
        raise RuntimeError(f"could not drop privileges: euid {os.geteuid()}, {held}")


def job_env(job_dir: str) -> dict[str, str]:
    """Where the candidate's toolchain may write: its own directories, set before anything caches a path."""
    home, tmp, cache = f"{job_dir}/home", f"{job_dir}/tmp", f"{job_dir}/cache"
    return {
        "HOME": home,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "TMPDIR": tmp,
        "TMP": tmp,
        "TEMP": tmp,
        "XDG_CACHE_HOME": cache,
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_DATA_HOME": f"{home}/.local/share",
        "TRITON_HOME": home,
        "TRITON_CACHE_DIR": f"{job_dir}/triton",
        "TRITON_DUMP_DIR": f"{cache}/triton_dump",
        "TRITON_OVERRIDE_DIR": f"{cache}/triton_override",
        "TORCH_EXTENSIONS_DIR": f"{job_dir}/ext",
        "TORCHINDUCTOR_CACHE_DIR": f"{cache}/inductor",
        "CUDA_CACHE_PATH": f"{cache}/nv",
        "MPLCONFIGDIR": f"{cache}/matplotlib",
        "NUMBA_CACHE_DIR": f"{cache}/numba",
    }


def candidate_env(
    requested: dict[str, str], job_dir: str, device: str, pinned_gpu: str | None
) -> dict[str, str]:
    """The candidate's whole environment: the supervisor's request (`{job}` filled in), then every path the
    toolchain writes to, then the GPU this worker owns; nothing the request says can move those."""
    env = {k: str(v).replace("{job}", job_dir) for k, v in requested.items()}
    env.update(job_env(job_dir))
    if device == "cuda" and pinned_gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = pinned_gpu
    return env


def prepare_job_dirs(env: dict[str, str]) -> None:
    """Create the candidate's directories (as the candidate's uid) and point tempfile at them."""
    import tempfile

    for key in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR"):
        os.makedirs(env[key], mode=0o700, exist_ok=True)
    tempfile.tempdir = None  # the fork server may have cached /tmp before TMPDIR existed


# -- per-candidate limits and syscall filter ------------------------------------------------------------------
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
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # SysV IPC and POSIX message queues outlive a process inside the worker's IPC namespace: a channel
    # from one candidate to the next. Nothing honest needs them (POSIX shm lives in /dev/shm, private per job).
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
AF_UNIX = 1
# clone() flags that would create a namespace (CLONE_NEWTIME shares its bit with the exit signal: clone3 only).
NAMESPACE_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
)


def apply_seccomp() -> bool:
    """Install the filter: the deny-list, sockets of any family but AF_UNIX, namespaces through clone, and
    clone3 (ENOSYS, so libc falls back to clone, whose flags a filter can read). False without libseccomp."""
    try:
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
        for call in ("socket", "socketpair"):
            f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), call, seccomp.Arg(0, seccomp.NE, AF_UNIX))
        for flag in NAMESPACE_FLAGS:
            f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        try:
            f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        except (ValueError, OSError, RuntimeError):
            pass
        f.load()
        return True
    except Exception:  # noqa: BLE001 - a broken libseccomp must not take the worker down
        return False


if __name__ == "__main__":
    print(bwrap_probe() or "bwrap: ok")
