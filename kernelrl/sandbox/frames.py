"""Length-prefixed frames on a pipe: a JSON header plus an optional binary payload (a `wire` message)."""

from __future__ import annotations

import json
import os
import struct
from typing import Any


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<IQ", len(h), len(payload)) + h + payload


def write_frame(fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    view = memoryview(pack(header, payload))
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameReader:
    """Incremental parser: feed bytes as they arrive, take complete frames out; sizes are bounded."""

    def __init__(self, max_header: int = 1 << 20, max_payload: int = 1 << 34) -> None:
        self.buf = bytearray()
        self.max_header, self.max_payload = max_header, max_payload

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        self.buf += data
        frames = []
        while len(self.buf) >= 12:
            hlen, plen = struct.unpack("<IQ", self.buf[:12])
            if hlen > self.max_header or plen > self.max_payload:
                raise ValueError("frame exceeds the size limit")
            if len(self.buf) < 12 + hlen + plen:
                break
            header = json.loads(bytes(self.buf[12 : 12 + hlen]))
            if not isinstance(header, dict):
                raise ValueError("frame header is not an object")
            payload = bytes(self.buf[12 + hlen : 12 + hlen + plen])
            del self.buf[: 12 + hlen + plen]
            frames.append((header, payload))
        return frames


def read_all_frames(fd: int) -> list[tuple[dict[str, Any], bytes]]:
    """Read frames until EOF (trusted direction: the supervisor's job for the child)."""
    reader, frames = FrameReader(), []
    while chunk := os.read(fd, 1 << 20):
        frames += reader.feed(chunk)
    return frames
