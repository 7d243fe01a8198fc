"""The OS layer of the sandbox on its own: attacker code run raw inside a fork server's child (fully locked
down, but without the runner or any guard; see sandbox_raw.py), the bubblewrap allow-list and GPU pinning as
argument lists, the refusals when a candidate cannot be isolated, and a non-root supervisor end to end.

Every attack here is checked from the host side where it can be (the fork server still answers and its
processes are alive and unstopped; a host socket saw no connection; no file reached the host) and otherwise
by the raw code's own syscalls, which is test code, not a candidate's claim.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sandbox_raw import ping, run_raw
from unix_listener import UnixListener

from kernelrl.sandbox import isolation
from kernelrl.sandbox.isolation import Limits
from kernelrl.sandbox.supervisor import ForkServer

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SLOT = 5
needs_bwrap = pytest.mark.skipif(isolation.bwrap_probe() is not None, reason=f"{isolation.bwrap_probe()}")


@pytest.fixture(scope="module")
def server():
    s = ForkServer("bwrap", "cpu", Limits(tmpfs_mb=256), SLOT)
    yield s
    s.close()


def _descendants(pid: int) -> list[int]:
    """The host pids of a process tree (children via /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _state(pid: int) -> tuple[str, int]:
    """(state letter, nice) of a host process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[16])


# -- what is mounted -----------------------------------------------------------------------------------------
BIND_OPS = {"--ro-bind", "--bind", "--dev-bind", "--ro-bind-try", "--bind-try", "--dev-bind-try"}


def _binds(args: list[str]) -> dict[str, str]:
    return {args[i + 2]: args[i + 1] for i, a in enumerate(args) if a in BIND_OPS}


def test_bwrap_mounts_only_the_allow_list():
    args, _env, _ = isolation.bwrap_args(64, isolation.sandbox_uid(SLOT))
    binds = _binds(args)
    assert "/" not in binds and "/usr" in binds
    for dest in binds:
        assert dest not in isolation.NEVER_WHOLE, f"{dest} mounted whole"
        for banned in ("/run", "/var", "/home", "/srv", "/mnt", "/media", "/boot"):
            assert not dest.startswith(banned + "/"), f"{dest} is host state"
        if dest.startswith("/etc/"):
            assert dest in ("/etc/ld.so.cache", "/etc/alternatives"), dest
    pkg = isolation.package_dir()
    assert any(pkg == d or pkg.startswith(d + "/") for d in binds)  # the kernelrl package is there...
    bundled = os.path.join(pkg, "sandbox", "bundled")
    assert args[args.index(bundled) - 1] == "--tmpfs"  # ...but its reference answers are covered
    assert not any(d == str(REPO) or str(REPO).startswith(d + "/") for d in binds)  # not the checkout


def _planted_locations() -> list[str]:
    return [
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


@pytest.fixture(scope="module")
def planted():
    """A secret file in many host locations (wherever this user may write); removed afterwards."""
    files: dict[str, str] = {}
    for loc in [*_planted_locations(), str(REPO)]:
        path = os.path.join(loc, f"kernelrl-planted-{secrets.token_hex(4)}")
        secret = "planted-" + secrets.token_hex(12)
        try:
            with open(path, "w") as f:
                f.write(secret)
            os.chmod(path, 0o644)
        except OSError:
            continue
        files[path] = secret
    assert any(p.startswith("/tmp/") for p in files), "could not plant a file even in /tmp"
    yield files
    for path in files:
        try:
            os.unlink(path)
        except OSError:
            pass


READ_HOST = """
import json, os
for p in json.loads(PATHS):
    try:
        with open(p, "rb") as f:
            print("READ", p, f.read(300))
    except OSError as e:
        print("DENIED", p, type(e).__name__)
print("ROOT", json.dumps(sorted(os.listdir("/"))))
print("ETC", json.dumps(sorted(os.listdir("/etc"))))
for d in ("/run", "/var/lib", "/var/run", "/home", "/srv", "/opt", "/mnt", "/media", "/boot"):
    print("EXISTS" if os.path.exists(d) else "ABSENT", d)
"""


@needs_bwrap
def test_host_files_are_not_there(server, planted):
    paths = [*planted, "/etc/hostname", "/etc/shadow", "/etc/hosts", "/etc/resolv.conf", "/proc/1/environ"]
    r = run_raw(server, f"PATHS = {json.dumps(json.dumps(paths))}\n" + READ_HOST)
    assert r.code == 0, r.log
    for path, secret in planted.items():
        assert secret not in r.log, f"the sandbox read the host file {path}"
    host_name = Path("/etc/hostname").read_text().strip()
    assert not any(line.startswith(f"/etc/hostname b'{host_name}") for line in r.lines("READ")), r.log
    assert not any(x.startswith(("/etc/shadow", "/etc/hosts", "/etc/resolv.conf")) for x in r.lines("READ"))
    root = set(json.loads(r.lines("ROOT")[0]))
    assert root <= {
        "usr",
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "etc",
        "proc",
        "dev",
        "sys",
        "tmp",
        "var",
    } | {p.strip("/").split("/")[0] for p in isolation.python_roots() + [isolation.package_dir()]}, root
    assert set(json.loads(r.lines("ETC")[0])) <= {
        "ld.so.cache",
        "alternatives",
        "passwd",
        "group",
        "nsswitch.conf",
        "hostname",
    }
    assert not [line for line in r.lines("EXISTS")], r.log


# -- sockets ---------------------------------------------------------------------------------------------------
SOCKETS = """
import ctypes, json, socket
libc = ctypes.CDLL(None, use_errno=True)
opened = []
for family in range(0, 46):
    if family == socket.AF_UNIX:
        continue
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):
        fd = libc.socket(family, kind, 0)
        if fd >= 0:
            opened.append(["socket", family, kind]); libc.close(fd)
        pair = (ctypes.c_int * 2)()
        if libc.socketpair(family, kind, 0, pair) == 0:
            opened.append(["socketpair", family, kind])
print("OPENED", json.dumps(opened))
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
a.sendall(b"ping"); print("UNIX_OK", b.recv(4) == b"ping")
for path in json.loads(HOST_SOCKETS):
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.settimeout(2); c.connect(path); c.sendall(b"escape")
        print("CONNECTED", path)
    except OSError as e:
        print("NOCONNECT", path, type(e).__name__)
"""


@needs_bwrap
def test_only_unix_sockets_and_no_host_socket_files(server):
    dirs = [d for d in ("/run", "/tmp", "/var/tmp") if os.access(d, os.W_OK)]
    listeners = [UnixListener(os.path.join(d, f"kernelrl-{secrets.token_hex(4)}.sock")) for d in dirs]
    try:
        paths = [ln.path for ln in listeners]
        r = run_raw(server, f"HOST_SOCKETS = {json.dumps(json.dumps(paths))}\n" + SOCKETS)
    finally:
        for ln in listeners:
            ln.close()
    assert r.code == 0, r.log
    assert json.loads(r.lines("OPENED")[0]) == [], "socket families other than AF_UNIX opened"
    assert r.lines("UNIX_OK") == ["True"], r.log  # AF_UNIX itself still works inside the job
    assert all(ln.connections == 0 for ln in listeners), "a host Unix socket accepted the candidate"
    assert not r.lines("CONNECTED"), r.log


# -- the fork server cannot be reached --------------------------------------------------------------------------
SIGNALS = """
import json, os, resource, signal
me = os.getpid()
print("PID", me)
print("PROCS", json.dumps(sorted(int(p) for p in os.listdir("/proc") if p.isdigit())))
hit = []
for pid in range(1, 2000):
    if pid == me:
        continue
    for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig); hit.append(["kill", pid])
        except OSError:
            pass
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3)); hit.append(["prlimit", pid])
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19); hit.append(["renice", pid])
    except OSError:
        pass
for how in (os.PRIO_USER, os.PRIO_PGRP):
    try:
        os.setpriority(how, 0, 19)
    except OSError:
        pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
print("HIT", json.dumps(hit))
"""


@needs_bwrap
def test_candidate_cannot_name_or_signal_the_fork_server(server):
    tree = _descendants(server.proc.pid)  # bwrap, its PID 1, the fork server
    assert len(tree) >= 3
    r = run_raw(server, SIGNALS)
    assert r.lines("PID") == ["1"], r.log  # PID 1 of a PID namespace of its own...
    assert json.loads(r.lines("PROCS")[0]) == [1], r.log  # ...that shows only itself
    assert json.loads(r.lines("HIT")[0]) == [], r.log
    time.sleep(0.2)
    for pid in tree:
        state, nice = _state(pid)
        assert state not in "TtZX" and nice == 0, f"sandbox process {pid}: state {state}, nice {nice}"
    assert server.alive() and ping(server)
    assert run_raw(server, "print('NEXT')").lines("NEXT") == [""]


PRIVILEGES = """
import ctypes, json, os
st = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
r = {k: st[k].strip() for k in ("Uid", "Gid", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
libc = ctypes.CDLL(None, use_errno=True)
r["unshare_user"] = libc.unshare(0x10000000) == 0
r["mount"] = libc.mount(b"tmpfs", b"/usr", b"tmpfs", 0, None) == 0
pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
if pid == 0:
    os._exit(0)
r["clone_newuser"] = pid > 0
try:
    os.setuid(0); r["setuid0"] = True
except OSError:
    r["setuid0"] = False
print("PRIV", json.dumps(r))
"""


@needs_bwrap
def test_candidate_holds_no_privilege(server):
    r = run_raw(server, PRIVILEGES)
    priv = json.loads(r.lines("PRIV")[0])
    uid = str(isolation.sandbox_uid(SLOT))
    assert priv["Uid"].split() == [uid] * 4 and priv["Gid"].split() == [uid] * 4, priv
    assert {priv[k] for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}, priv
    assert priv["NoNewPrivs"] == "1" and priv["Seccomp"] == "2", priv
    assert not (priv["unshare_user"] or priv["mount"] or priv["clone_newuser"] or priv["setuid0"]), priv


# -- writable files: private to one job, discarded whole ----------------------------------------------------------
DEEP_TREE = """
import os
for base in (os.getcwd(), "/tmp", "/dev/shm", "/var/tmp", os.environ["HOME"]):
    os.chdir(base)
    for _ in range(1500):
        os.mkdir("d"); os.chdir("d")
    os.chmod(".", 0)
print("DEEP", os.getcwd().count("/d"))
"""
LEAVE = """
import os
places = ["/", "/etc", "/usr", "/tmp", "/var/tmp", "/dev/shm", "/dev", "/proc", "/sys", os.getcwd()]
places += [os.environ[k] for k in ("HOME", "TMPDIR", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "XDG_CACHE_HOME")]
import kernelrl
places += [os.path.dirname(kernelrl.__file__), os.path.join(os.path.dirname(kernelrl.__file__), "sandbox", "bundled")]
for d in places:
    try:
        with open(os.path.join(d, MARKER), "w") as f:
            f.write(MARKER)
        print("WROTE", d)
    except OSError:
        pass
"""
FIND = """
import os, sys
import kernelrl
hits = []
# the checkout and its Python are read-only host mounts, which may lie under /tmp too (a clone in mktemp -d)
host = (os.path.dirname(os.path.dirname(kernelrl.__file__)), sys.prefix, os.path.realpath(sys.prefix))
for top in ("/tmp", "/var/tmp", "/dev/shm"):  # HOME, TMPDIR, the caches and the cwd live in /tmp
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [n for n in dirnames if not os.path.join(dirpath, n).startswith(host)]
        hits += [os.path.join(dirpath, n) for n in filenames + dirnames if MARKER in n or n == "d"]
for d in ("/", "/etc", "/dev", "/usr", os.path.dirname(kernelrl.__file__)):
    hits += [os.path.join(d, n) for n in os.listdir(d) if MARKER in n]
print("FOUND", sorted(set(hits)))
"""


@needs_bwrap
def test_deep_tree_cannot_break_cleanup(server):
    r = run_raw(server, DEEP_TREE)
    assert r.code == 0 and r.lines("DEEP") == ["1500"], r.log  # the tree really was built
    assert server.alive() and ping(server)
    nxt = run_raw(server, "MARKER = 'none'\n" + FIND)
    assert nxt.lines("FOUND") == ["[]"], nxt.log


@needs_bwrap
def test_nothing_written_survives_into_the_next_job_or_the_host(server):
    marker = "kleft" + secrets.token_hex(5)
    writer = run_raw(server, f"MARKER = {marker!r}\n" + LEAVE)
    wrote = set(writer.lines("WROTE"))
    assert {"/tmp", "/var/tmp", "/dev/shm"} <= wrote, writer.log  # the writable places really are writable
    assert not wrote & {"/", "/etc", "/usr", "/dev", isolation.package_dir()}, writer.log
    reader = run_raw(server, f"MARKER = {marker!r}\n" + FIND)
    assert reader.lines("FOUND") == ["[]"], reader.log
    host = [
        os.path.join(d, n)
        for d in ("/tmp", "/var/tmp", "/dev/shm", str(REPO), isolation.package_dir())
        for n in os.listdir(d)
        if marker in n
    ]
    assert not host, host


CACHES = """
import getpass, json, os, pathlib, tempfile
r = {"tempdir": tempfile.gettempdir(), "TMPDIR": os.environ["TMPDIR"], "cwd": os.getcwd()}
fd, path = tempfile.mkstemp(); os.write(fd, b"x"); os.close(fd); r["mkstemp"] = path
r["user"], r["home"] = getpass.getuser(), str(pathlib.Path.home())
keys = ("HOME", "TMPDIR", "XDG_CACHE_HOME", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "TORCHINDUCTOR_CACHE_DIR",
        "CUDA_CACHE_PATH", "TRITON_HOME", "MPLCONFIGDIR")
r["dirs"] = {k: os.environ[k] for k in keys}
for k in keys:
    os.makedirs(os.environ[k], exist_ok=True)
    pathlib.Path(os.environ[k], "probe").write_text("x")
from triton.runtime.cache import get_cache_manager
r["triton_file"] = get_cache_manager("ab" * 32).put(b"data", "kernel.bin")
import torch.utils.cpp_extension as ext
r["ext_dir"] = ext._get_build_directory("candidate_ext", verbose=False)
print("CACHES", json.dumps(r))
"""


@needs_bwrap
def test_tempfile_and_every_cache_point_at_the_jobs_own_directories(server):
    r = run_raw(server, CACHES)
    assert r.code == 0, r.log
    c = json.loads(r.lines("CACHES")[0])
    job = isolation.JOB_DIR
    assert c["tempdir"] == c["TMPDIR"] and c["mkstemp"].startswith(c["TMPDIR"] + "/"), c
    assert c["cwd"] == job and c["user"] == isolation.SANDBOX_USER and c["home"] == c["dirs"]["HOME"], c
    assert all(v.startswith(job + "/") for v in c["dirs"].values()), c
    assert c["triton_file"].startswith(c["dirs"]["TRITON_CACHE_DIR"] + "/"), c
    assert c["ext_dir"].startswith(c["dirs"]["TORCH_EXTENSIONS_DIR"] + "/"), c


DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", SECONDS])
    os._exit(0)
time.sleep(0.3)
print("STARTED")
"""


@needs_bwrap
def test_a_daemon_dies_with_its_job(server):
    seconds = f"4242.{secrets.randbelow(10**9):09d}"
    r = run_raw(server, f"SECONDS = {seconds!r}\n" + DAEMON)
    assert r.lines("STARTED") == [""], r.log
    left = [p for p in os.listdir("/proc") if p.isdigit() and seconds.encode() in _cmdline(p)]
    assert not left, f"the daemon outlived its job: {left}"


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- the GPU a worker owns is fixed outside the sandbox (CPU-side logic; unrun on a GPU) ---------------------------
def _fake_gpus(tmp_path: Path, n: int) -> tuple[str, str, list[tuple[int, str]]]:
    """A /proc/driver/nvidia tree and /dev nodes for n GPUs whose device minors are not in bus order."""
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    dev.mkdir()
    gpus = []
    for i in range(n):
        minor, uuid = (i * 3 + 1) % n, f"GPU-{i:08x}-aaaa-bbbb-cccc-{secrets.token_hex(6)}"
        d = proc / "driver" / "nvidia" / "gpus" / f"0000:{0x10 + i:02x}:00.0"
        d.mkdir(parents=True)
        (d / "information").write_text(f"Model: \t Fake\nDevice Minor: \t {minor}\nGPU UUID: \t {uuid}\n")
        (dev / f"nvidia{minor}").touch()
        gpus.append((minor, uuid))
    for name in isolation.GPU_CONTROL_NODES:
        (dev / name).touch()
    return str(proc), str(dev), gpus


def test_gpu_is_pinned_by_the_supervisor(tmp_path):
    proc, dev, gpus = _fake_gpus(tmp_path, 4)
    for visible, want in (
        ("2", gpus[2]),
        ("3,0", gpus[3]),
        (gpus[1][1], gpus[1]),
        (gpus[0][1][:12], gpus[0]),
    ):
        pinned = isolation.pin_gpu(visible, proc_root=proc)
        assert (pinned.minor, pinned.visible) == want
        args, env, _ = isolation.bwrap_args(64, isolation.sandbox_uid(0), pinned, dev_root=dev)
        nodes = {d for d in _binds(args) if d.startswith("/dev/nvidia")}
        assert nodes == {f"/dev/nvidia{want[0]}", *(f"/dev/{n}" for n in isolation.GPU_CONTROL_NODES)}
        assert env["CUDA_VISIBLE_DEVICES"] == env["KERNELRL_PINNED_GPU"] == want[1]
        assert "--dev" in args and "/dev" not in _binds(args)  # a fresh /dev, not the host's
    for bad in ("4", "GPU-nonexistent"):
        with pytest.raises(RuntimeError, match="cannot pin GPU"):
            isolation.pin_gpu(bad, proc_root=proc)


def test_the_candidate_cannot_choose_its_gpu():
    requested = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "HOME": "/", "TMPDIR": "/tmp"}
    env = isolation.candidate_env(requested, "/tmp/job", "cuda", "GPU-1234")
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-1234"
    assert env["HOME"] == "/tmp/job/home" and env["TMPDIR"] == "/tmp/job/tmp"


# -- fail closed ----------------------------------------------------------------------------------------------------
def test_refuses_to_start_when_it_cannot_isolate(monkeypatch):
    monkeypatch.setattr(isolation.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeError, match="refusing to start"):
        isolation.choose_profile("process-only")
    monkeypatch.setattr(isolation, "bwrap_probe", lambda: "user namespaces are disabled")
    with pytest.raises(RuntimeError, match="user namespaces are disabled"):
        isolation.choose_profile("auto")
    with pytest.raises(RuntimeError, match="cannot start: user namespaces are disabled"):
        isolation.choose_profile("bwrap")


def test_refuses_to_mount_a_top_level_directory_whole(monkeypatch):
    monkeypatch.setattr(isolation.sys, "prefix", "/etc")
    with pytest.raises(RuntimeError, match="refusing to mount /etc whole"):
        isolation.python_roots()


# -- a supervisor that is not root ----------------------------------------------------------------------------------
NONROOT = """
import json, os, sys
sys.path.insert(0, TESTS)
from sandbox_raw import ping, run_raw
from unix_listener import UnixListener
from kernelrl.sandbox import Evaluator, bundled_problems
out = {"euid": os.geteuid()}
try:
    ev = Evaluator(device="cpu", run_timeout_s=60)
except RuntimeError as e:
    out["refused"] = str(e)
    print("RESULT " + json.dumps(out))
    raise SystemExit(0)
P = bundled_problems()
out["profile"] = ev.profile
server = ev._fork_server()
attack = run_raw(server, ATTACK.replace("SUPERVISOR_PID", str(os.getpid())))
out["attack"] = attack.log[-6000:]
out["alive"] = server.alive() and ping(server)
v = ev.evaluate(P["relu"], P["relu"].extras["solution"])
out["honest"], out["same_server"] = v.status, ev._server is server
out["log_tail"] = v.log_tail
ev.close()
print("RESULT " + json.dumps(out))
"""
NONROOT_ATTACK = """
import os, signal
for pid in range(1, 2000):
    if pid != os.getpid():
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sig); print("SIGNALLED", pid)
            except OSError:
                pass
for p in (SECRET_PATH, "/proc/SUPERVISOR_PID/environ"):
    try:
        print("READ", open(p).read())
    except OSError as e:
        print("DENIED", p, type(e).__name__)
"""
UNPRIVILEGED_UID = 65534


def _as_unprivileged(argv: list[str], env: dict[str, str]) -> list[str]:
    """As root: run argv as an unprivileged uid. Directories it needs but may not traverse (a Python under
    /root, 0700) are shown to it in a private mount namespace (a 0755 tmpfs over the blocking parent with
    just the needed path bound back); nothing changes on the host."""
    need = [*isolation.python_roots(), str(REPO)]
    cover, keep = set(), []
    for path in need:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            here = "/" + "/".join(parts[:i])
            if not os.stat(here).st_mode & 0o001:
                cover.add(here)
                if i < len(parts):
                    keep.append(path)
                else:  # the path itself is closed (a checkout in `mktemp -d`): show its entries instead
                    keep += [os.path.join(here, n) for n in os.listdir(here)]
                break
    keep = list(dict.fromkeys(keep))
    spec = {"uid": UNPRIVILEGED_UID, "cover": sorted(cover), "keep": keep, "argv": argv, "env": env}
    wrapper = """
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x20000) == 0
libc.mount(None, b"/", None, 0x4000 | (1 << 18), None)
fds = {p: os.open(p, os.O_PATH) for p in spec["keep"]}
for d in spec["cover"]:
    assert libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"mode=0755") == 0
for p, fd in fds.items():
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(p, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "a").close()
    assert libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, 0x1000 | 0x4000, None) == 0
uid = spec["uid"]
os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
os.execve(spec["argv"][0], spec["argv"], spec["env"])
"""
    return [sys.executable, "-c", wrapper, json.dumps(spec)]


def test_non_root_supervisor_isolates_or_refuses():
    """The Evaluator as an unprivileged user: an attacking candidate cannot stop or kill the fork server and
    cannot read a host file that user can read; an honest one then gets ok from the same fork server. (Where
    the machine cannot isolate, the Evaluator must refuse with a clear error instead.)"""
    secret = "nonroot-" + secrets.token_hex(12)
    work = Path(tempfile.mkdtemp(prefix="kernelrl-nonroot-"))
    work.chmod(0o777)
    secret_path = work / "secret.txt"
    secret_path.write_text(secret)
    secret_path.chmod(0o644)
    script = f"TESTS = {str(TESTS)!r}\nATTACK = {f'SECRET_PATH = {str(secret_path)!r}' + NONROOT_ATTACK!r}\n"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONPATH": str(REPO), "TMPDIR": "/tmp"}
    argv = [sys.executable, "-c", script + NONROOT]
    if os.geteuid() == 0:
        argv = _as_unprivileged(argv, env)
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=str(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = json.loads(lines[0][len("RESULT ") :])
    assert out["euid"] != 0
    if "refused" in out:  # fail closed, and say why
        assert "refusing to start" in out["refused"] and "bubblewrap" in out["refused"], out["refused"]
        assert isolation.bwrap_probe() is not None, (
            "this machine can isolate, yet a non-root supervisor refused"
        )
        return
    assert out["profile"] == "bwrap", out
    assert secret not in out["attack"] and secret not in out["log_tail"], out["attack"]
    assert "SIGNALLED" not in out["attack"] and "DENIED" in out["attack"], out["attack"]
    assert out["alive"] and out["same_server"] and out["honest"] == "ok", out


@needs_bwrap
def test_the_sandbox_dies_with_bwrap(server):
    """Last in this file (it kills the module's fork server): nothing of the sandbox outlives bwrap, also
    where the fork server changed uid (which clears --die-with-parent unless re-armed)."""
    tree = _descendants(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    time.sleep(1.0)
    alive = [p for p in tree if os.path.exists(f"/proc/{p}") and _state(p)[0] != "Z"]
    for pid in alive:  # clean up what this test caused, then fail
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"sandbox processes outlived bwrap: {alive}"
