"""The trusted supervisor: plans checks, feeds the sandboxed child, and decides the verdict itself.

It never imports candidate code and never initialises CUDA. It owns two helper processes: the reference
process (trusted problem code) and the sandboxed fork server (untrusted candidate code).
"""

from __future__ import annotations

import json
import math
import os
import random
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

from kernelrl.perf import budget, timing_log
from kernelrl.perf.features import Features
from kernelrl.perf.roofline import sol_fraction, speed_of_light
from kernelrl.sandbox import isolation, judge, protocol, timing, wire
from kernelrl.sandbox.candidate import extract_candidate
from kernelrl.sandbox.capabilities import check_source
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
        capability_guards: bool = True,
        timing_log_path: str | os.PathLike | bool | None = True,
    ) -> None:
        self.device = detect_device(device)
        self.profile = isolation.choose_profile(isolation_profile)
        self.limits = Limits(
            compile_timeout_s=compile_timeout_s, run_timeout_s=run_timeout_s, memory_mb=memory_mb
        )
        self.n_variants, self.n_seeds = n_variants, n_seeds
        self.element_budget = element_budget if self.device == "cpu" else None
        self.slot, self.timing_trials, self.seccomp = slot, timing_trials, seccomp
        # False only in tests of the layers beneath the guards (channel, recorder, isolation): candidate code
        # then runs as plain Python, and everything it does must still be caught below.
        self.capability_guards = capability_guards
        # GPU: per-problem trials and run budget from the expected reference time (kernelrl.perf.budget).
        self._default_limits = self.limits
        self._run_plans: dict[str, budget.RunPlan] = {}
        # GPU: one JSONL record per timed verdict (True: $KERNELRL_TIMING_LOG or ~/.cache/kernelrl).
        self.timing_log = timing_log.default_path() if timing_log_path is True else (timing_log_path or None)
        self._plan_seed = secrets.randbelow(1 << 30)
        self._plans: dict[str, dict[str, Any]] = {}  # problem id -> the reference's plan reply
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
                "device": self.device,
            }
            reply, _ = self._ref().request(req)
            if not reply.get("ok"):
                raise ProblemError(
                    f"problem {problem.name}: cannot plan shape variants: {reply.get('error')}"
                )
            self._plans[problem.id] = reply
        return self._plans[problem.id]["variants"], self._plans[problem.id]["notes"]

    def run_plan(self, problem: Problem) -> budget.RunPlan:
        """Trials, warm-up and run budget for this problem: on a GPU from its expected reference time
        (the shipped measurement of this file on this GPU model, else the latency model's prediction from
        the features the reference process counted); the Evaluator's defaults otherwise."""
        if problem.id not in self._run_plans:
            info = self._plans.get(problem.id) or {}  # the reference process's plan reply
            ref_ms, basis = None, "default"
            if self.device == "cuda" and info.get("device_name"):
                from kernelrl.perf.predict import reference_ms

                try:
                    feats = (
                        Features.from_dict(info["features"])
                        if isinstance(info.get("features"), dict)
                        else None
                    )
                    ref_ms, basis = reference_ms(problem.source, feats, str(info["device_name"]))
                except Exception:  # noqa: BLE001 - no prediction: the defaults, never a failed verdict
                    ref_ms, basis = None, "default"
            self._run_plans[problem.id] = budget.run_plan(
                ref_ms,
                basis=basis,
                trials=self.timing_trials,
                run_timeout_s=self._default_limits.run_timeout_s,
            )
        return self._run_plans[problem.id]

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
        if timed:  # fresh seeds: the timed inputs are never the ones the checks used
            rp = self.run_plan(problem)
            req["time"] = {
                "trials": rp.trials,
                "warmup": rp.warmup,
                "seeds": [secrets.randbelow(1 << 31) for _ in range(TIMING_SEEDS)],
            }
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
        violations = check_source(cand.code) if self.capability_guards else []
        if violations:  # the capability policy refuses the file: nothing of it runs
            details = [str(v) for v in violations] + static.details
            hacks = ["forbidden_access", *static.hacks]
            return replace(
                base,
                status="hack_detected",
                hacks=hacks,
                hack_details=details,
                error=f"reward hack detected: {details[0]}",
            )
        seeds = seeds or [secrets.randbelow(1 << 31) for _ in range(self.n_seeds)]
        variants, notes = self.plan(problem)
        notes = list(notes)
        plan = self._plans[problem.id]
        if plan.get("unavailable"):  # needs what this machine lacks (CUDA, a package, a budget it cannot fit)
            hacks = list(static.hacks)
            status = "hack_detected" if hacks else "not_executed"
            return replace(
                base,
                status=status,
                hacks=hacks,
                hack_details=static.details,
                error=plan["unavailable"],
                notes=notes,
            )
        rp = self.run_plan(problem)
        if rp.basis != "default":
            notes.append(
                f"run budget {rp.run_timeout_s:g} s, {rp.trials} trials: {rp.basis} reference {rp.reference_ms:.4g} ms"
            )
        refs: list[tuple[dict[str, Any], dict[str, Any], list[bytes]]] = []
        for vi, var in enumerate(variants):
            timed = self.device == "cuda" and vi == 0 and cand.backend != "none"
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
        job, frames, layout = self._job(cand, refs, rp)
        # the GPU run budget comes from the expected reference time; a problem over the CPU element budget
        # (said in the notes) gets its run budget stretched to match
        scale = plan.get("timeout_scale") or 1.0
        limits, self.limits = self.limits, replace(self.limits, run_timeout_s=rp.run_timeout_s * scale)
        try:
            run = self._run(job, frames)
            verdict = self._decide(base, cand, static, refs, layout, job, run)
        finally:
            self.limits = limits
        verdict.notes = notes
        if self.timing_log and "timing" in {h.get("event") for h, _p, _t in run["frames"]}:
            self._log_timing(problem, cand, refs, run, verdict, rp)
        return verdict

    def _log_timing(
        self, problem: Problem, cand: Any, refs: list, run: dict[str, Any], verdict: Verdict, rp: Any
    ) -> None:
        """Append this timed verdict to the timing log; a log that cannot be written never costs a verdict."""
        events = {h.get("event"): h for h, _p, _t in run["frames"] if isinstance(h.get("event"), str)}
        t, ref = events.get("timing", {}), refs[0][1]
        keys = ("median_ms", "mean_ms", "min_ms", "trials")
        record = {
            "problem_id": problem.id,
            "problem": problem.name,
            "features": ref.get("features"),
            "device_name": ref.get("device_name"),
            "reference": {k: (ref.get("timing") or {}).get(k) for k in keys},
            "candidate": {k: t.get(k) if isinstance(t.get(k), (int, float)) else None for k in keys},
            "status": verdict.status,
            "hacks": verdict.hacks,
            "speedup": verdict.speedup,
            "sol_fraction": verdict.sol_fraction,
            "backend": cand.backend,
            "candidate_sha256": cand.sha256,
            "launch_configs": timing_log.launch_configs((events.get("done") or {}).get("launch_configs")),
            "run_plan": {"trials": rp.trials, "run_timeout_s": rp.run_timeout_s, "basis": rp.basis},
        }
        try:
            timing_log.append(self.timing_log, record)
        except OSError:
            pass

    def _job(
        self, cand: Any, refs: list, rp: budget.RunPlan | None = None
    ) -> tuple[dict[str, Any], list[bytes], list[dict[str, Any]]]:
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
            "key": secrets.token_hex(32),
            "guarded": self.capability_guards,
        }
        header0, payloads0 = refs[0][1], refs[0][2]
        if header0.get("timing_sets"):
            first = 1 + 2 * len(header0["checks"])
            frame_ids, outputs = [], []
            for k in range(header0["timing_sets"]):
                frames.append(payloads0[first + 2 * k])
                frame_ids.append(len(frames) - 1)
                outputs.append(payloads0[first + 2 * k + 1])
            trials, warmup = (rp.trials, rp.warmup) if rp else (self.timing_trials, 10)
            capture = timing.choose_capture(trials, TIMING_CAPTURES, random.Random(secrets.randbits(64)))
            job["timing"] = {
                "variant": 0,
                "inputs_frames": frame_ids,
                "trials": trials,
                "warmup": warmup,
                "capture": capture,
            }
            job["timing_outputs"] = (
                outputs  # kept here, never sent: the captured trials are judged against it
            )
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
        sent = {k: v for k, v in job.items() if k != "timing_outputs"}
        payload = pack(sent) + b"".join(pack({}, f) for f in frames)
        writer = threading.Thread(target=_write_all, args=(job_w, payload), daemon=True)
        writer.start()
        try:
            return self._collect(server, log_r, res_r)
        finally:
            os.close(log_r)
            os.close(res_r)
            writer.join(timeout=5)

    def _collect(self, server: ForkServer, log_r: int, res_r: int) -> dict[str, Any]:
        """Raw frames (with arrival times) and the log, under the compile and run deadlines."""
        sel = selectors.DefaultSelector()
        sel.register(log_r, selectors.EVENT_READ, "log")
        sel.register(res_r, selectors.EVENT_READ, "res")
        sel.register(server.sock, selectors.EVENT_READ, "ctl")
        reader = protocol.Reader(max_payload=self.limits.output_mb << 20)
        frames: list[tuple[dict[str, Any], bytes, float]] = []
        log = bytearray()
        total = 0
        start = time.monotonic()
        deadline = start + self.limits.compile_timeout_s
        timed_out = overflow = kill_sent = False
        tamper: str | None = None
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
                new: list[tuple[dict[str, Any], bytes]] = []
                if not (overflow or tamper):
                    try:
                        new = reader.feed(chunk)
                    except protocol.Oversize:
                        overflow = True
                    except protocol.Tamper as e:
                        tamper = str(e)
                if total > self.limits.output_mb << 20:
                    overflow = True
                now = time.monotonic()
                for header, payload in new:
                    frames.append((header, payload, now))
                    if header.get("event") == "compiled" and phase == "compile":
                        phase, deadline = "run", now + self.limits.run_timeout_s
            if exit_info is None and not kill_sent and (time.monotonic() >= deadline or overflow or tamper):
                timed_out = not (overflow or tamper)
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
            "tamper": tamper,
            "phase": phase,
            "start": start,
        }

    # -- the decision, in steps ----------------------------------------------------------------------------
    def _decide(
        self,
        base: Verdict,
        cand: Any,
        static: Any,
        refs: list,
        layout: list[dict[str, Any]],
        job: dict[str, Any],
        run: dict[str, Any],
    ) -> Verdict:
        hacks: list[tuple[str, str]] = [(d.split(":", 1)[0], d) for d in static.details if ":" in d]
        hacks += [(h, h) for h in static.hacks if not any(n == h for n, _ in hacks)]
        transcript, tamper = self._transcript(run, job, layout)
        if tamper:  # someone other than the runner spoke on the channel: nothing it says is evidence
            return replace(
                base,
                status="hack_detected",
                hacks=[h for h, _ in hacks] + ["protocol_tamper"],
                hack_details=[d for _, d in hacks] + [f"protocol_tamper: {tamper}"],
                error=f"reward hack detected: protocol_tamper ({tamper})",
                log_tail=_redact(run["log"]),
            )
        pointwise = bool(refs[0][1].get("pointwise"))
        checks, check_hacks = self._judge_checks(transcript, layout, pointwise)
        hacks += check_hacks
        forward_ran = bool(checks)
        done = transcript.get("done")
        compiled_frame = transcript.get("compiled")
        if done is not None:  # the hooks' report; a killed child has none, and absence proves nothing
            hacks += judge.runtime_hacks(
                done,
                compiled_frame["init_ops"] if compiled_frame else {},
                cand.backend,
                refs[0][1],
                forward_ran,
                2 * len(checks),
            )
        if cand.backend == "none" and not any(h == "no_kernel" for h, _ in hacks):
            hacks.append(("no_kernel", "no_kernel: no Triton kernel or CUDA extension"))
        status, error, compiled = self._status(run, transcript, checks, layout)
        correct = bool(checks) and len(checks) == len(layout) and all(c.passed for c in checks)
        runtime_ms = ref_ms = speedup = fraction = None
        if transcript.has("timing") and correct:
            timed_hacks, runtime_ms, ref_ms, speedup, fraction = self._judge_timing(
                transcript, refs[0][1], job, cand.backend, pointwise
            )
            hacks += timed_hacks
        names = [h for h, _ in hacks]
        if names and status != "infra_error":
            status = "hack_detected"
            error = error or "reward hack detected: " + ", ".join(sorted(set(names)))
        if status == "hack_detected":
            runtime_ms = speedup = fraction = None
        err = transcript.get("error")
        log = run["log"]
        if err and err.get("traceback"):
            log = (log + "\n" + err["traceback"])[-8000:]
        return replace(
            base,
            status=status,
            compiled=compiled,
            executed=forward_ran,
            correct=correct,
            checks=checks,
            hacks=names,
            hack_details=[d if d.startswith(f"{h}:") else f"{h}: {d}" for h, d in hacks],
            runtime_ms=runtime_ms,
            ref_runtime_ms=ref_ms,
            speedup=speedup,
            sol_fraction=fraction,
            error=error,
            log_tail=_redact(log),
        )

    def _transcript(
        self, run: dict[str, Any], job: dict[str, Any], layout: list
    ) -> tuple[protocol.Transcript, str | None]:
        """The runner's frames, validated against the protocol; a fault anywhere is tampering."""
        if run["tamper"]:
            return protocol.Transcript(), run["tamper"]
        try:
            transcript = protocol.validate(
                run["frames"], bytes.fromhex(job["key"]), len(layout), "timing" in job
            )
        except protocol.Tamper as e:
            return protocol.Transcript(), str(e)
        if run["exit"].get("code") == 86 and not transcript.has("done"):
            return transcript, "the runner found its result descriptor replaced"
        return transcript, None

    def _judge_checks(
        self, transcript: protocol.Transcript, layout: list[dict[str, Any]], pointwise: bool
    ) -> tuple[list[Check], list[tuple[str, str]]]:
        """Compare every reported check with the reference; staleness only after a passing check."""
        hacks: list[tuple[str, str]] = []
        checks: list[Check] = []
        prev: dict[int, tuple[list, list, bool]] = {}
        for ci, lay in enumerate(layout):
            if ci not in transcript.checks:
                continue
            refs_out = wire.decode(lay["outputs"])
            header, payload = transcript.checks[ci]
            outs1 = outs2 = after = None
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
                header["meta"],
                outs1,
                outs2,
                after,
                self.device,
                pointwise,
            )
            hacks += [(h, f"{h}: {lay['variant']} seed {lay['seed_index']}") for h in res.hacks]
            last = prev.get(lay["vi"])
            # A cache answers its first call right and then repeats itself; a wrong kernel whose output happens
            # not to depend on its input never was right: that is a mismatch, not a hack.
            if header["reused"] and last and last[2] and judge.stale(last[0], outs1, last[1], refs_out):
                hacks.append(
                    ("stale_output", f"stale_output: {lay['variant']} seed {lay['seed_index']} repeated")
                )
            prev[lay["vi"]] = (outs1 or [], refs_out, res.check.passed)
            checks.append(res.check)
        return checks, hacks

    def _status(
        self, run: dict[str, Any], transcript: protocol.Transcript, checks: list[Check], layout: list
    ) -> tuple[str, str | None, bool]:
        """The status from what was observed, first match wins: budgets, the child's own report, the checks."""
        exit_info = run["exit"]
        err = transcript.get("error")
        compiled = transcript.has("compiled")
        status = error = None
        if run["timed_out"]:
            budget = self.limits.compile_timeout_s if run["phase"] == "compile" else self.limits.run_timeout_s
            status, error = "timeout", f"no result within the {run['phase']} budget ({budget:.0f} s)"
        elif exit_info.get("oom"):
            status, error = "oom", f"memory limit of {self.limits.memory_mb} MiB exceeded"
        elif run["overflow"]:
            status, error = "runtime_error", f"candidate output exceeded {self.limits.output_mb} MiB"
        elif transcript.has("not_executed"):
            status, compiled, error = "not_executed", True, "CUDA candidate compiled; no GPU here to run it"
        elif err:
            kind = err["kind"]
            status = {"oom": "oom", "compile": "compile_error"}.get(kind, "runtime_error")
            error = f"{err['type']}: {err['message']}"[:1000]
            if kind == "cuda_fatal":
                error = "fatal CUDA error: " + error
        elif not transcript.has("done"):
            status, error = (
                "runtime_error",
                f"candidate process exited ({_describe_exit(exit_info.get('code'))}) before reporting results",
            )
        elif len(checks) < len(layout):
            status, error = "runtime_error", f"only {len(checks)} of {len(layout)} checks reported"
        if status is None:
            correct = bool(checks) and all(c.passed for c in checks)
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
        return status, error, compiled

    def _judge_timing(
        self,
        transcript: protocol.Transcript,
        ref: dict[str, Any],
        job: dict[str, Any],
        backend: str,
        pointwise: bool,
    ) -> tuple[list[tuple[str, str]], float | None, float | None, float | None, float | None]:
        """Bounds on the child's timing, the captured trials' outputs, and (runtime, reference, speedup, SOL
        fraction) worth reporting."""
        t = transcript.get("timing")
        assert t is not None
        parent_wall = (transcript.stamps["timing"] - transcript.stamps["timing_start"]) * 1e3
        capture = job["timing"]["capture"]
        in_bytes = sum(len(p) for p in job["timing_outputs"])  # the order of magnitude of the refilled inputs
        names, runtime_ms, ref_ms, speedup, fraction = timing_verdict(
            t, ref, parent_wall, in_bytes, backend, len(capture)
        )
        hacks = [(h, f"{h}: timing phase") for h in names]
        if t["captured"] != capture:
            hacks.append(
                ("timer_inconsistent", "timer_inconsistent: captured trials are not the ones asked for")
            )
            return hacks, runtime_ms, ref_ms, speedup, fraction
        outs = wire.decode(transcript.payloads.get("timing", b"")) if t["n_out"] else []
        refs = [wire.decode(job["timing_outputs"][i % len(job["timing_outputs"])]) for i in capture]
        per = len(refs[0]) if refs else 0
        for k, i in enumerate(capture):
            got = outs[k * per : (k + 1) * per]
            if len(got) != per or not all(
                judge.compare(o, r, pointwise)[0] for o, r in zip(got, refs[k], strict=True)
            ):
                hacks.append(("timing_mismatch", f"timing_mismatch: timed call {i} returned a wrong answer"))
                break
        return hacks, runtime_ms, ref_ms, speedup, fraction


TIMING_CAPTURES = 5  # timed calls whose outputs are checked
TIMING_SEEDS = 3  # fresh input sets rotated through the timing loop


def _redact(log: str) -> str:
    """The log tail holds the candidate's own output; host paths that library messages quote become labels."""
    for path, label in _REDACTIONS:
        log = log.replace(path, label)
    return log


_REDACTIONS = sorted(
    {
        (p, "<python>")
        for p in {
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            *(q for q in sys.path if q.endswith("-packages")),
        }
        if p and p != "/"
    }
    | {(PKG_PARENT, "<kernelrl>"), (os.path.expanduser("~"), "<home>")},
    key=lambda pl: -len(pl[0]),
)


def timing_verdict(
    t: dict[str, Any],
    ref_header: dict[str, Any],
    parent_wall_ms: float,
    input_bytes: int = 0,
    backend: str = "triton",
    n_captured: int = 0,
) -> tuple[list[str], float | None, float | None, float | None, float | None]:
    """(hacks, runtime_ms, ref_runtime_ms, speedup, sol_fraction) of a correct candidate's GPU timing `t`,
    against the reference process's header (its timing, features and GPU name)."""
    ref_t = ref_header.get("timing") or {}
    sol = _speed_of_light(ref_header)
    hacks = timing.timing_hacks(t, parent_wall_ms, sol.floor_ms, input_bytes, backend, n_captured)
    median, ref_median = t.get("median_ms"), ref_t.get("median_ms")
    if not (
        isinstance(median, (int, float))
        and median > 0
        and isinstance(ref_median, (int, float))
        and ref_median
    ):
        return hacks, None, None, None, None
    runtime_ms, ref_ms = float(median), float(ref_median)
    return hacks, runtime_ms, ref_ms, ref_ms / runtime_ms, sol_fraction(sol.sol_ms, runtime_ms)


def _speed_of_light(ref_header: dict[str, Any]) -> Any:
    """The problem's speed of light on the GPU the reference ran on (features from the reference process)."""
    f = ref_header.get("features") if isinstance(ref_header.get("features"), dict) else {}
    num = {}
    for k in ("flops", "flops_lowp", "input_bytes", "output_bytes", "param_bytes"):
        v = f.get(k)
        num[k] = float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else 0.0
    return speed_of_light(
        num["flops"],
        num["input_bytes"],
        num["output_bytes"],
        num["param_bytes"],
        str(ref_header.get("device_name") or ""),
        num["flops_lowp"],
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
