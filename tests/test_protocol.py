"""The result channel: only the runner can speak it, and any other speech is tamper, never an outage.

Genuine streams are written by the real `Channel` into a real pipe and read back by the real `Reader`; the
property tests then mutate them every way a candidate sharing the process could (extra, missing, duplicated,
reordered, re-sealed with a guessed key, byte-flipped, junk in between) and require `Tamper` every time.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from kernelrl.sandbox import protocol
from kernelrl.sandbox.protocol import Channel, Reader, Tamper, canonical, seal, validate

KEY = bytes(range(32))
DONE = {
    "event": "done",
    "launches": {"k": 2},
    "launch_configs": {},
    "torch_ops": {"empty_like": 2},
    "timing_ops": {},
    "threads_started": 0,
    "scalar_reads": 0,
    "violations": [],
    "integrity": [],
}


def genuine(n_checks: int = 2, key: bytes = KEY) -> bytes:
    """The bytes a runner writes for a run with `n_checks` checks, through a real pipe."""
    r, w = os.pipe()
    ch = Channel(w, key)
    ch.send({"event": "started", "seccomp": True, "uid": 61000})
    ch.send({"event": "compiled", "init_ops": {}})
    for i in range(n_checks):
        meta = [{"type": "Tensor", "plain": True, "device": "cpu"}]
        ch.send(
            {"event": "check", "index": i, "meta": meta, "reused": i > 0, "n_out": 1, "n_in": 1}, b"p" * 40
        )
    ch.send(DONE)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    return data


def parse(data: bytes) -> list[tuple[dict, bytes, float]]:
    return [(h, p, 0.0) for h, p in Reader(max_payload=1 << 20).feed(data)]


def frames_bytes(frames: list[tuple[dict, bytes, float]]) -> bytes:
    out = b""
    for h, p, _ in frames:
        body = canonical(h)
        out += struct.pack("<IQ", len(body), len(p)) + body + p
    return out


def test_a_genuine_stream_validates():
    t = validate(parse(genuine()), KEY, n_checks=2, timed=False)
    assert set(t.checks) == {0, 1} and t.has("done") and t.get("done")["launches"] == {"k": 2}


def test_a_killed_runner_leaves_a_truncated_frame_which_is_dropped_not_tamper():
    data = genuine()
    frames = Reader(max_payload=1 << 20).feed(data[:-7])
    t = validate([(h, p, 0.0) for h, p in frames], KEY, n_checks=2, timed=False)
    assert not t.has("done")  # the child died: the supervisor says runtime_error, not hack


def _forged(header: dict, payload: bytes = b"", seq: int = 0, key: bytes = b"guess" * 6 + b"!!") -> tuple:
    h = {**header, "seq": seq}
    return ({**h, "tag": seal(key, seq, h, payload).hex()}, payload, 0.0)


MUTATIONS = [
    "drop",
    "duplicate",
    "swap",
    "extra_after_done",
    "forged_done",
    "flip_header",
    "flip_payload",
    "renumber",
]


def mutate(frames: list, how: str, rng: random.Random) -> list:
    frames = list(frames)
    i = rng.randrange(1, len(frames) - 1)
    if how == "drop":
        del frames[i]
    elif how == "duplicate":
        frames.insert(i, frames[i])
    elif how == "swap":
        frames[i], frames[i + 1] = frames[i + 1], frames[i]
    elif how == "extra_after_done":
        frames.append(_forged(DONE, seq=len(frames), key=KEY))  # even correctly sealed: nothing follows done
    elif how == "forged_done":
        frames.insert(i, _forged({**DONE, "torch_ops": {}}, seq=i))
    elif how == "flip_header":
        h, p, at = frames[i]
        frames[i] = ({**h, "reused": not h.get("reused")} if "reused" in h else {**h, "extra": 1}, p, at)
    elif how == "flip_payload":
        h, p, at = frames[i]
        frames[i] = (h, (p[:-1] + b"X") if p else b"X", at)
    elif how == "renumber":
        h, p, at = frames[i]
        frames[i] = ({**h, "seq": h["seq"] + 1}, p, at)
    return frames


@pytest.mark.parametrize("how", MUTATIONS)
def test_every_mutation_of_a_genuine_stream_is_tamper(how):
    rng = random.Random(how)
    for _ in range(25):
        frames = mutate(parse(genuine(n_checks=3)), how, rng)
        with pytest.raises(Tamper):
            validate(frames, KEY, n_checks=3, timed=False)


def test_random_bytes_on_the_channel_are_tamper_or_a_cut_frame():
    """Junk spliced into the byte stream: either the parser refuses it or the frames no longer validate."""
    rng = random.Random(0)
    data = genuine(n_checks=2)
    for _ in range(200):
        cut = rng.randrange(0, len(data))
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        spliced = data[:cut] + junk + data[cut:]
        try:
            frames = parse(spliced)
            validate(frames, KEY, n_checks=2, timed=False)
        except Tamper:
            continue
        except protocol.Oversize:
            continue
        pytest.fail(f"junk at byte {cut} went unnoticed")


def test_a_well_framed_forgery_without_the_key_is_tamper():
    """A frame any candidate can write: right grammar, right fields, its own seal."""
    frames = parse(genuine(n_checks=1))
    forged = [_forged({"event": "started", "seccomp": True, "uid": 0})] + frames[1:]
    with pytest.raises(Tamper, match="wrong seal"):
        validate(forged, KEY, n_checks=1, timed=False)


def test_grammar_rules():
    frames = parse(genuine(n_checks=2))
    with pytest.raises(Tamper, match="check"):  # more checks reported than the job had
        validate(frames, KEY, n_checks=1, timed=False)
    with pytest.raises(Tamper, match="done after"):  # timing was due and never came
        validate(frames, KEY, n_checks=2, timed=True)
    with pytest.raises(Tamper, match="unknown kind"):
        validate([_forged({"event": "hello"}, key=KEY)], KEY, n_checks=0, timed=False)
    with pytest.raises(Tamper, match="fields"):
        validate([_forged({"event": "started", "seccomp": "yes", "uid": 0}, key=KEY)], KEY, 0, False)


def test_reader_refuses_headers_no_runner_writes_and_flags_huge_outputs():
    with pytest.raises(Tamper):
        Reader(max_payload=100).feed(struct.pack("<IQ", 1 << 30, 0))
    with pytest.raises(Tamper):
        Reader(max_payload=100).feed(struct.pack("<IQ", 4, 0) + b"[1] ")
    with pytest.raises(protocol.Oversize):
        Reader(max_payload=100).feed(struct.pack("<IQ", 2, 1000) + b"{}")


def test_channel_notices_its_descriptor_was_replaced():
    r, w = os.pipe()
    ch = Channel(w, KEY)
    ch.send({"event": "started", "seccomp": True, "uid": 1})
    r2, w2 = os.pipe()
    os.dup2(w2, w)  # same number, another pipe: what a dup2 relay does
    assert not ch.intact()
    with pytest.raises(Tamper):
        ch.send(DONE)
    for fd in (r, w, r2, w2):
        os.close(fd)
    with pytest.raises(OSError):
        Channel(os.open(os.devnull, os.O_WRONLY), KEY)  # not a pipe at all
