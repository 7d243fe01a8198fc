"""The result channel from the runner (inside the candidate's process) to the supervisor: typed, in order, sealed.

Only the runner speaks it. Every frame carries its sequence number and a keyed BLAKE2b tag over
(sequence, canonical header, payload); the key is a per-job secret the supervisor sends in the job, read by the
runner before the candidate is imported and kept where guarded candidate code cannot reach. The supervisor
accepts exactly this grammar and nothing else:

    started  (compiled | error | not_executed)  check[0] ... check[n-1]  [timing_start timing]  [error]  done

(`error` after `compiled` reports a failure of the run phase; `not_executed`/`error` end the run early, then
`done`). A duplicate, early, late, unknown, unsealed or malformed frame, or bytes that are not a frame, is
`protocol_tamper`: a hack, never an infrastructure error. A frame cut short at the end of the stream is what a
killed process leaves behind and is dropped. The runner also checks, before every write, that its descriptor is
still the pipe it was given (device and inode, not the number), so a `dup2` over it is caught on its side.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

TAG_BYTES = 16
_LEN = struct.Struct("<IQ")  # header length, payload length


class Tamper(Exception):
    """The result stream is not what the runner writes: someone else spoke on the channel."""


class Oversize(Exception):
    """A frame larger than the output limit (a huge output, not a forgery)."""


def canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(key: bytes, seq: int, header: dict[str, Any], payload: bytes) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=TAG_BYTES)
    h.update(struct.pack("<Q", seq))
    body = canonical(header)
    h.update(struct.pack("<Q", len(body)))
    h.update(body)
    h.update(payload)
    return h.digest()


# -- the runner's side ------------------------------------------------------------------------------------
class Channel:
    """The runner's writer: owns the result descriptor, checks its identity before each write, seals frames."""

    def __init__(self, fd: int, key: bytes) -> None:
        st = os.fstat(fd)
        if not stat.S_ISFIFO(st.st_mode):
            raise OSError("the result descriptor is not a pipe")
        self._fd, self._key, self._seq = fd, key, 0
        self._identity = (st.st_dev, st.st_ino)

    def intact(self) -> bool:
        try:
            st = os.fstat(self._fd)
        except OSError:
            return False
        return stat.S_ISFIFO(st.st_mode) and (st.st_dev, st.st_ino) == self._identity

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if not self.intact():
            raise Tamper("the result descriptor was replaced")
        header = {**header, "seq": self._seq}
        tag = seal(self._key, self._seq, header, payload).hex()
        body = canonical({**header, "tag": tag})
        view = memoryview(_LEN.pack(len(body), len(payload)) + body + payload)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._seq += 1


# -- the supervisor's side -------------------------------------------------------------------------------
class Reader:
    """Incremental, strict parser of the raw byte stream; raises Tamper or Oversize, never anything else."""

    def __init__(self, max_payload: int, max_header: int = 1 << 20) -> None:
        self.buf = bytearray()
        self.max_payload, self.max_header = max_payload, max_header

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        self.buf += data
        frames = []
        while len(self.buf) >= _LEN.size:
            hlen, plen = _LEN.unpack_from(self.buf)
            if hlen > self.max_header:
                raise Tamper("a frame header beyond the size any runner frame has")
            if plen > self.max_payload:
                raise Oversize("a frame payload beyond the output limit")
            end = _LEN.size + hlen + plen
            if len(self.buf) < end:
                break
            try:
                header = json.loads(bytes(self.buf[_LEN.size : _LEN.size + hlen]))
            except ValueError:
                raise Tamper("a frame header that is not JSON") from None
            if not isinstance(header, dict):
                raise Tamper("a frame header that is not an object")
            frames.append((header, bytes(self.buf[_LEN.size + hlen : end])))
            del self.buf[:end]
        return frames


# The frame kinds and their fields (exact sets, exact types).
_INT, _FLOAT, _STR, _BOOL, _DICT, _LIST = int, (int, float), str, bool, dict, list
FIELDS: dict[str, dict[str, Any]] = {
    "started": {"seccomp": _BOOL, "uid": _INT},
    "compiled": {"init_ops": _DICT},
    "not_executed": {"message": _STR},
    "error": {"phase": _STR, "kind": _STR, "type": _STR, "message": _STR, "traceback": _STR},
    "check": {"index": _INT, "meta": _LIST, "reused": _BOOL, "n_out": _INT, "n_in": _INT},
    "timing_start": {},
    "timing": {
        "median_ms": _FLOAT,
        "mean_ms": _FLOAT,
        "min_ms": _FLOAT,
        "sum_ms": _FLOAT,
        "trials": _INT,
        "child_wall_ms": _FLOAT,
        "min_launches": _INT,
        "captured": _LIST,
        "n_out": _INT,
    },
    "done": {
        "launches": _DICT,
        "launch_configs": _DICT,
        "torch_ops": _DICT,
        "timing_ops": _DICT,
        "threads_started": _INT,
        "scalar_reads": _INT,
        "violations": _LIST,
        "integrity": _LIST,
    },
}


@dataclass
class Transcript:
    """What the runner reported, validated: one entry per kind (checks by index), with arrival times."""

    frames: dict[str, dict[str, Any]] = field(default_factory=dict)
    payloads: dict[str, bytes] = field(default_factory=dict)
    checks: dict[int, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)

    def has(self, kind: str) -> bool:
        return kind in self.frames

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.frames.get(kind)


def validate(
    frames: list[tuple[dict[str, Any], bytes, float]], key: bytes, n_checks: int, timed: bool
) -> Transcript:
    """Check every frame's seal, sequence, kind, fields and place in the grammar; Tamper on the first fault."""
    out = Transcript()
    state = "begin"
    next_check = 0
    for seq, (header, payload, at) in enumerate(frames):
        header = dict(header)
        tag = header.pop("tag", None)
        if not isinstance(tag, str) or header.get("seq") != seq:
            raise Tamper(f"frame {seq} is not numbered/sealed as the runner's")
        try:
            expected = seal(key, seq, header, payload).hex()
        except (TypeError, ValueError):
            raise Tamper(f"frame {seq} cannot be sealed") from None
        if tag != expected:
            raise Tamper(f"frame {seq} carries a wrong seal")
        kind = header.pop("event", None)
        header.pop("seq")
        spec = FIELDS.get(kind) if isinstance(kind, str) else None
        if spec is None:
            raise Tamper(f"frame {seq} is of unknown kind {kind!r}")
        if set(header) != set(spec) or not all(_typed(header[k], t) for k, t in spec.items()):
            raise Tamper(f"frame {seq} ({kind}) has the wrong fields or types")
        state = _advance(state, kind, header, next_check, n_checks, timed, seq)
        if kind == "check":
            out.checks[header["index"]] = (header, payload)
            next_check += 1
        else:
            out.frames[kind] = header
            out.payloads[kind] = payload
        out.stamps.setdefault(kind, at)
    return out


def _typed(value: Any, kind: Any) -> bool:
    if kind is _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is _FLOAT:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _advance(state: str, kind: str, header: dict[str, Any], nxt: int, n: int, timed: bool, seq: int) -> str:
    """The grammar in the module docstring as a state machine."""
    allowed = {
        "begin": {"started"},
        "started": {"compiled", "error", "not_executed"},
        "compiled": {"check", "error", "timing_start", "done"},
        "checking": {"check", "error", "timing_start", "done"},
        "timing_start": {"timing", "error"},
        "timing": {"error", "done"},
        "error": {"done"},
        "not_executed": {"done"},
        "done": set(),
    }[state]
    if kind not in allowed:
        raise Tamper(f"frame {seq} ({kind}) out of order after {state}")
    if kind == "check" and (header["index"] != nxt or nxt >= n):
        raise Tamper(f"frame {seq}: check {header['index']} where check {nxt} of {n} was due")
    if kind == "timing_start" and (not timed or nxt != n):
        raise Tamper(f"frame {seq}: timing frames where none were due")
    if kind == "done" and state in ("compiled", "checking") and (nxt != n or timed):
        raise Tamper(f"frame {seq}: done after {nxt} of {n} checks{' and no timing' if timed else ''}")
    if kind == "error" and (header["phase"] == "compile") != (state == "started"):
        raise Tamper(f"frame {seq}: an error of phase {header['phase']!r} after {state}")
    return "checking" if kind == "check" else kind
