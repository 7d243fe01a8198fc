"""The trusted supervisor: plans checks, feeds the sandboxed child, and decides the verdict itself.

It never imports candidate code and never initialises CUDA. It owns two helper processes: the reference
process (trusted problem code) and the sandboxed fork server (untrusted candidate code).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from kernelrl.sandbox import isolation, judge, timing, wire
from kernelrl.sandbox.candidate import extract_candidate
from kernelrl.sandbox.frames import FrameReader, pack
from kernelrl.sandbox.isolation import Limits
from kernelrl.sandbox.problem import Problem, ProblemError
from kernelrl.sandbox.reference import DISTRIBUTIONS
from kernelrl.sandbox.static_checks import analyze
from kernelrl.sandbox.verdict import Check, Verdict

PKG_PARENT = str(Path(__file__).resolve().parents[2])


class InfraError(RuntimeError):
    """The sandbox itself failed (not the candidate): retried, then reported as `infra_error`."""


def detect_device(device: str = "auto") -> str:
    """`auto` means CUDA when a GPU is visible; checked without initialising CUDA in this process."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu or cuda")
    if device != "auto":
        return device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    has_dev = any(Path("/dev").glob("nvidia[0-9]*")) and visible not in ("", "-1")
    return "cuda" if has_dev and torch.version.cuda else "cpu"


def _base_env() -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": PKG_PARENT,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
    }
    for key in ("CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


REFERENCE_TIMEOUT_S = 300.0  # one request (plan, or prepare with GPU timing); a hang is the problem's fault


class ReferenceTimeout(ProblemError):
    """The problem's own code did not answer in time; its process was killed and is replaced on next use."""


class ReferenceProcess:
    """Client of `python -m kernelrl.sandbox.reference` over its stdin/stdout, with a deadline per request."""

    def __init__(self, device: str, timeout_s: float = REFERENCE_TIMEOUT_S) -> None:
        env = {**_base_env(), "HOME": tempfile.gettempdir()}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernelrl.sandbox.reference"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.timeout_s = timeout_s
        self.reader = FrameReader()
        self.pending: list[tuple[dict[str, Any], bytes]] = []

    def request(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """The reply and its payloads; ReferenceTimeout (a ProblemError) when they take over `timeout_s`."""
        assert self.proc.stdin and self.proc.stdout
        deadline = time.monotonic() + self.timeout_s
        try:
            self.proc.stdin.write(pack(header))
            self.proc.stdin.flush()
            reply = self._next(deadline, header)[0]
            payloads = [self._next(deadline, header)[1] for _ in range(reply.get("n_payloads", 0))]
        except ReferenceTimeout:
            raise
        except (OSError, ValueError) as e:
            raise InfraError(f"reference process failed: {e}") from None
        return reply, payloads

    def _next(self, deadline: float, header: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout
        fd = self.proc.stdout.fileno()
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise ReferenceTimeout(
                    f"the problem's reference code did not answer a {header.get('cmd')!r} request within "
                    f"{self.timeout_s:.0f} s (it hangs or is far too slow on these shapes); its process was "
                    "killed and is replaced for the next request"
                )
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise InfraError("reference process exited")
            self.pending += self.reader.feed(chunk)
        return self.pending.pop(0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class ForkServer:
    """The sandboxed zygote: started once per worker, asked to fork one child per candidate."""

    def __init__(self, profile: str, device: str, limits: Limits, slot: int) -> None:
        self.profile, self.device = profile, device
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tmp = tempfile.TemporaryDirectory(prefix="kernelrl-")
        env = {**_base_env(), "HOME": "/tmp", "KERNELRL_ZYGOTE_FD": str(child.fileno())}
        if device == "cpu":
            env["TRITON_INTERPRET"] = "1"
            env["CUDA_VISIBLE_DEVICES"] = ""
        if profile == "process-only":
            env["KERNELRL_JOB_ROOT"] = self.tmp.name
            os.chmod(self.tmp.name, 0o711)
        self.errlog = open(os.path.join(self.tmp.name, "zygote.log"), "wb")  # noqa: SIM115
        self.uid = isolation.sandbox_uid(slot)
        launch = isolation.zygote_launch(profile, limits, gpu=device == "cuda", uid=self.uid)
        try:
            self.proc = subprocess.Popen(
                launch.cmd,
                pass_fds=[child.fileno(), *launch.fds],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.errlog,
                stderr=self.errlog,
                start_new_session=True,
                cwd="/",
            )
        finally:
            launch.close()
            child.close()
        self.sock.settimeout(120)
        try:
            ready = json.loads(self.sock.recv(1 << 16) or b"{}")
        except (TimeoutError, ValueError):
            ready = {}
        self.sock.settimeout(None)
        if ready.get("event") != "ready":
            self.close()
            raise InfraError(f"sandbox fork server did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return Path(self.errlog.name).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self.sock.send(json.dumps({"cmd": "exit"}).encode())
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
        self.errlog.close()
        self.tmp.cleanup()


class Evaluator:
    """Evaluates completions against problems in one sandboxed worker. Not thread-safe: one call at a time.

    Checks: `n_variants` shape variants x `n_seeds` secret seeds (input distributions vary with the seed),
    each run twice by the candidate on cloned inputs. On CPU, shapes are scaled to `element_budget` for the
    Triton interpreter and speed is not measured; on CUDA the file's own shapes are variant 0 and are timed.
    """

    def __init__(
        self,
        device: str = "auto",
        *,
        isolation_profile: str = "auto",
        n_variants: int = 2,
        n_seeds: int = 3,
        element_budget: int = 1 << 14,
        compile_timeout_s: float = 180.0,
        run_timeout_s: float = 60.0,
        memory_mb: int = 6144,
        slot: int = 0,
        timing_trials: int = 100,
        seccomp: bool = True,
        cache_size: int = 512,
    ) -> None:
        self.device = detect_device(device)
        self.profile = isolation.choose_profile(isolation_profile)
        self.limits = Limits(
            compile_timeout_s=compile_timeout_s, run_timeout_s=run_timeout_s, memory_mb=memory_mb
        )
        self.n_variants, self.n_seeds = n_variants, n_seeds
        self.element_budget = element_budget if self.device == "cpu" else None
        self.slot, self.timing_trials, self.seccomp = slot, timing_trials, seccomp
        self._plan_seed = secrets.randbelow(1 << 30)
        self._plans: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
        self._refs: OrderedDict[tuple, tuple[dict[str, Any], list[bytes]]] = OrderedDict()
        self._cache_size = cache_size
        self._reference: ReferenceProcess | None = None
        self._server: ForkServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reference:
            self._reference.close()
            self._reference = None
        if self._server:
            self._server.close()
            self._server = None

    def restart(self) -> None:
        """Fresh helper processes, e.g. after a fatal CUDA error or an infrastructure failure."""
        self.close()

    def _ref(self) -> ReferenceProcess:
        if self._reference is None or self._reference.proc.poll() is not None:
            self._reference = ReferenceProcess(self.device)
        return self._reference

    def _fork_server(self) -> ForkServer:
        if self._server is None or not self._server.alive():
            if self._server:
                self._server.close()
            self._server = ForkServer(self.profile, self.device, self.limits, self.slot)
        return self._server

    # -- planning --------------------------------------------------------------------------------------
    def plan(self, problem: Problem) -> tuple[list[dict[str, Any]], list[str]]:
        if problem.id not in self._plans:
            req = {
                "cmd": "plan",
                "source": problem.source,
                "budget": self.element_budget,
                "count": self.n_variants,
                "seed": self._plan_seed,
            }
            reply, _ = self._ref().request(req)
            if not reply.get("ok"):
                raise ProblemError(
                    f"problem {problem.name}: cannot plan shape variants: {reply.get('error')}"
                )
            self._plans[problem.id] = (reply["variants"], reply["notes"])
        return self._plans[problem.id]

    def _reference_data(
        self, problem: Problem, variant: dict[str, Any], seeds: list[int], timed: bool
    ) -> tuple[dict[str, Any], list[bytes]]:
        dists = [DISTRIBUTIONS[i % len(DISTRIBUTIONS)] for i in range(len(seeds))]
        key = (problem.id, json.dumps(variant["overrides"], sort_keys=True), tuple(seeds), self.device, timed)
        if key in self._refs:
            self._refs.move_to_end(key)
            return self._refs[key]
        req = {
            "cmd": "prepare",
            "source": variant["source"],
            "seeds": seeds,
            "distributions": dists,
            "init_seed": seeds[0] ^ 0x5EED,
            "device": self.device,
        }
        if timed:
            req["time"] = {"trials": self.timing_trials, "warmup": 10}
        data = self._ref().request(req)
        self._refs[key] = data
        while len(self._refs) > self._cache_size:
            self._refs.popitem(last=False)
        return data

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, problem: Problem, completion: str, seeds: list[int] | None = None) -> Verdict:
        """One verdict; an infrastructure failure is retried once on fresh helper processes."""
        for attempt in range(2):
            try:
                return self._evaluate(problem, completion, seeds)
            except ProblemError:
                raise
            except Exception as e:  # noqa: BLE001 - our own failure: fresh helpers, one retry, then say so
                self.restart()
                if attempt == 1:
                    msg = str(e) if isinstance(e, InfraError) else f"{type(e).__name__}: {e}"
                    return Verdict(
                        "infra_error",
                        device=self.device,
                        isolation=self.profile,
                        error=msg[:500],
                        problem_id=problem.id,
                    )
        raise AssertionError("unreachable")

    def _evaluate(self, problem: Problem, completion: str, seeds: list[int] | None) -> Verdict:
        cand = extract_candidate(completion)
        base = Verdict(
            "format_error",
            backend=cand.backend,
            device=self.device,
            isolation=self.profile,
            problem_id=problem.id,
            candidate_sha256=cand.sha256,
        )
        if cand.format_error or cand.code is None:
            return replace(base, error=cand.format_error)
        static = analyze(cand.code)
        seeds = seeds or [secrets.randbelow(1 << 31) for _ in range(self.n_seeds)]
        variants, notes = self.plan(problem)
        notes = list(notes)
        refs: list[tuple[dict[str, Any], dict[str, Any], list[bytes]]] = []
        for vi, var in enumerate(variants):
            timed = self.device == "cuda" and vi == 0
            header, payloads = self._reference_data(problem, var, seeds, timed)
            if not header.get("ok"):
                notes.append(f"variant {var['name']} skipped: reference raised {header.get('error')}")
                continue
            refs.append((var, header, payloads))
            notes += [c["note"] for c in header["checks"] if c.get("note")]
        if not refs:
            raise ProblemError(
                f"problem {problem.name}: the reference fails on every shape variant ({'; '.join(notes)})"
            )
        job, frames, layout = self._job(cand, refs)
        run = self._run(job, frames)
        verdict = self._decide(base, cand, static.hacks, refs, layout, run)
        verdict.notes = notes
        return verdict

    def _job(self, cand: Any, refs: list) -> tuple[dict[str, Any], list[bytes], list[dict[str, Any]]]:
        frames: list[bytes] = []
        variants, checks, layout = [], [], []
        for vi, (var, header, payloads) in enumerate(refs):
            frames.append(payloads[0])
            variants.append(
                {
                    "name": var["name"],
                    "init_seed": header["checks"][0]["seed"] ^ 0x5EED,
                    "init_frame": len(frames) - 1,
                }
            )
            for si, chk in enumerate(header["checks"]):
                frames.append(payloads[1 + 2 * si])
                checks.append({"variant": vi, "inputs_frame": len(frames) - 1})
                layout.append(
                    {
                        "variant": var["name"],
                        "vi": vi,
                        "seed_index": si,
                        "distribution": chk["distribution"],
                        "inputs": payloads[1 + 2 * si],
                        "outputs": payloads[2 + 2 * si],
                    }
                )
        job: dict[str, Any] = {
            "code": cand.code,
            "backend": cand.backend,
            "device": self.device,
            "threads": 1,
            "variants": variants,
            "checks": checks,
            "cuda_compile_only": cand.backend == "cuda" and self.device != "cuda",
        }
        if self.device == "cuda" and cand.backend != "none":
            first = [c["inputs_frame"] for c in checks if c["variant"] == 0]
            job["timing"] = {"variant": 0, "inputs_frames": first, "trials": self.timing_trials, "warmup": 10}
        return job, frames, layout

    def _run(self, job: dict[str, Any], frames: list[bytes]) -> dict[str, Any]:
        """Fork a child in the sandbox, stream the job in, collect frames and log under the deadlines."""
        server = self._fork_server()
        job_r, job_w = os.pipe()
        log_r, log_w = os.pipe()
        res_r, res_w = os.pipe()
        env = {
            **_base_env(),
            "HOME": "{job}/home",
            "TMPDIR": "{job}/tmp",
            "TRITON_CACHE_DIR": "{job}/triton",
            "TORCH_EXTENSIONS_DIR": "{job}/ext",
        }
        if self.device == "cpu":
            env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
        cmd = {
            "cmd": "run",
            "env": env,
            "limits": asdict(self.limits),
            "device": self.device,
            "uid": server.uid,
            "seccomp": self.seccomp,
        }
        try:
            socket.send_fds(server.sock, [json.dumps(cmd).encode()], [job_r, log_w, res_w])
        except OSError as e:
            for fd in (job_r, job_w, log_r, log_w, res_r, res_w):
                os.close(fd)
            raise InfraError(f"sandbox fork server unreachable: {e}") from None
        for fd in (job_r, log_w, res_w):
            os.close(fd)
        payload = pack(job) + b"".join(pack({}, f) for f in frames)
        writer = threading.Thread(target=_write_all, args=(job_w, payload), daemon=True)
        writer.start()
        try:
            return self._collect(server, log_r, res_r)
        finally:
            os.close(log_r)
            os.close(res_r)
            writer.join(timeout=5)

    def _collect(self, server: ForkServer, log_r: int, res_r: int) -> dict[str, Any]:
        sel = selectors.DefaultSelector()
        sel.register(log_r, selectors.EVENT_READ, "log")
        sel.register(res_r, selectors.EVENT_READ, "res")
        sel.register(server.sock, selectors.EVENT_READ, "ctl")
        reader = FrameReader(max_payload=self.limits.output_mb << 20)
        frames: list[tuple[dict[str, Any], bytes, float]] = []
        log = bytearray()
        total = 0
        start = time.monotonic()
        deadline = start + self.limits.compile_timeout_s
        timed_out = overflow = kill_sent = False
        phase = "compile"
        exit_info: dict[str, Any] | None = None
        open_fds = {log_r, res_r}
        while exit_info is None or open_fds:
            timeout = max(0.0, deadline - time.monotonic()) if exit_info is None else 2.0
            events = sel.select(timeout=min(timeout, 1.0))
            if not events and exit_info is not None:
                break  # pipes held by nothing we can see: stop waiting
            for key, _ in events:
                if key.data == "ctl":
                    msg = server.sock.recv(1 << 16)
                    if not msg:
                        raise InfraError(f"sandbox fork server died: {server.log_tail()}")
                    exit_info = json.loads(msg)
                    sel.unregister(server.sock)
                    continue
                chunk = os.read(key.fd, 1 << 20)
                if not chunk:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    continue
                if key.data == "log":
                    log += chunk
                    del log[: max(0, len(log) - (self.limits.log_kb << 10))]
                    continue
                total += len(chunk)
                try:
                    new = reader.feed(chunk) if not overflow else []
                except ValueError:
                    new, overflow = [], True
                if total > self.limits.output_mb << 20:
                    overflow = True
                now = time.monotonic()
                for header, payload in new:
                    frames.append((header, payload, now))
                    if header.get("event") == "compiled" and phase == "compile":
                        phase, deadline = "run", now + self.limits.run_timeout_s
            if exit_info is None and not kill_sent and (time.monotonic() >= deadline or overflow):
                timed_out = not overflow
                kill_sent = True
                server.sock.send(json.dumps({"cmd": "kill"}).encode())
        sel.close()
        if exit_info is None:
            raise InfraError("sandbox fork server gave no exit status")
        return {
            "frames": frames,
            "log": log.decode(errors="replace"),
            "exit": exit_info,
            "timed_out": timed_out,
            "overflow": overflow,
            "phase": phase,
            "start": start,
        }

    def _decide(
        self,
        base: Verdict,
        cand: Any,
        static_hacks: list[str],
        refs: list,
        layout: list[dict[str, Any]],
        run: dict[str, Any],
    ) -> Verdict:
        events = {}
        checks_raw: dict[int, tuple[dict[str, Any], bytes]] = {}
        stamps: dict[str, float] = {}
        for header, payload, at in run["frames"]:
            ev = header.get("event")
            if ev == "check" and isinstance(header.get("index"), int):
                checks_raw[header["index"]] = (header, payload)
            elif isinstance(ev, str):
                events.setdefault(ev, header)
                stamps.setdefault(ev, at)
        exit_info = run["exit"]
        compiled = "compiled" in events
        hacks = list(static_hacks)
        checks: list[Check] = []
        prev: dict[int, tuple[list, list]] = {}
        for ci, lay in enumerate(layout):
            if ci not in checks_raw:
                continue
            refs_out = wire.decode(lay["outputs"])
            header, payload = checks_raw[ci]
            outs1 = outs2 = after = None
            meta = header.get("meta") if isinstance(header.get("meta"), list) else []
            if payload:
                try:
                    outs1, after, outs2 = _split_check_payload(payload, header)
                except (ValueError, KeyError, TypeError):
                    outs1 = after = outs2 = None
            res = judge.judge_check(
                lay["variant"],
                lay["seed_index"],
                lay["distribution"],
                refs_out,
                wire.decode(lay["inputs"]),
                meta,
                outs1,
                outs2,
                after,
                self.device,
            )
            hacks += res.hacks
            if (
                header.get("reused")
                and lay["vi"] in prev
                and judge.stale(prev[lay["vi"]][0], outs1, prev[lay["vi"]][1], refs_out)
            ):
                hacks.append("stale_output")
            prev[lay["vi"]] = (outs1 or [], refs_out)
            checks.append(res.check)
        forward_ran = bool(checks)
        if "done" in events:  # the hooks' report; a killed child has none, and absence proves nothing
            hacks += judge.runtime_hacks(
                events["done"], cand.backend, refs[0][1].get("ref_ops", {}), forward_ran
            )
        if cand.backend == "none" and "no_kernel" not in hacks:
            hacks.append("no_kernel")
        err = events.get("error")
        status = error = None
        if run["timed_out"]:
            status, error = (
                "timeout",
                f"no result within the {run['phase']} budget ({self.limits.compile_timeout_s if run['phase'] == 'compile' else self.limits.run_timeout_s:.0f} s)",
            )
        elif exit_info.get("oom"):
            status, error = "oom", f"memory limit of {self.limits.memory_mb} MiB exceeded"
        elif run["overflow"]:
            status, error = "runtime_error", f"candidate output exceeded {self.limits.output_mb} MiB"
        elif "not_executed" in events:
            status, compiled, error = "not_executed", True, "CUDA candidate compiled; no GPU here to run it"
        elif err:
            kind = err.get("kind")
            status = {"oom": "oom", "compile": "compile_error"}.get(kind, "runtime_error")
            error = f"{err.get('type')}: {err.get('message')}"[:1000]
            if kind == "cuda_fatal":
                error = "fatal CUDA error: " + error
        elif "done" not in events:
            code = exit_info.get("code")
            status, error = (
                "runtime_error",
                f"candidate process exited ({_describe_exit(code)}) before reporting results",
            )
        elif len(checks) < len(layout):
            status, error = "runtime_error", f"only {len(checks)} of {len(layout)} checks reported"
        correct = bool(checks) and len(checks) == len(layout) and all(c.passed for c in checks)
        if status is None:
            status = "ok" if correct else "mismatch"
            if not correct:
                error = next(
                    (
                        f"{c.variant} seed {c.seed_index} ({c.distribution}): {c.message}"
                        for c in checks
                        if not c.passed
                    ),
                    None,
                )
        runtime_ms = ref_ms = speedup = None
        if "timing" in events and correct:
            t = events["timing"]
            ref_t = refs[0][1].get("timing") or {}
            parent_wall = (stamps["timing"] - stamps.get("timing_start", stamps["timing"])) * 1e3
            sol = timing.speed_of_light_ms(
                refs[0][1].get("flops", 0.0), refs[0][1].get("bytes", 0), refs[0][1].get("device_name", "")
            )
            hacks += timing.timing_hacks(t, parent_wall, sol)
            if isinstance(t.get("median_ms"), (int, float)) and t["median_ms"] > 0 and ref_t.get("median_ms"):
                runtime_ms, ref_ms = float(t["median_ms"]), float(ref_t["median_ms"])
                speedup = ref_ms / runtime_ms
        if hacks and status not in ("infra_error",):
            status = "hack_detected"
            error = error or "reward hack detected: " + ", ".join(sorted(set(hacks)))
        if status == "hack_detected":
            runtime_ms = speedup = None
        log = run["log"]
        if err and err.get("traceback"):
            log = (log + "\n" + str(err["traceback"]))[-8000:]
        return replace(
            base,
            status=status,
            compiled=compiled,
            executed=forward_ran,
            correct=correct,
            checks=checks,
            hacks=hacks,
            runtime_ms=runtime_ms,
            ref_runtime_ms=ref_ms,
            speedup=speedup,
            error=error,
            log_tail=log,
        )


def _split_check_payload(payload: bytes, header: dict[str, Any]) -> tuple[list, list, list]:
    """A check payload is two wire messages back to back: (outputs + inputs after run 1), (outputs of run 2)."""
    (hlen,) = struct.unpack("<Q", payload[:8])
    entries = json.loads(payload[8 : 8 + hlen])
    body = sum(e.get("n", 0) for e in entries if isinstance(e, dict))
    first_len = 8 + hlen + body
    first, second = wire.decode(payload[:first_len]), wire.decode(payload[first_len:])
    n1 = int(header["n_out"])
    return first[:n1], first[n1:], second


def _describe_exit(code: Any) -> str:
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:
        pass  # the child died or stopped reading; the collector reports why
    finally:
        os.close(fd)
