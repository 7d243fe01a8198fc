"""A tiny, pickle-free format for tensors and plain values crossing a process boundary.

Data coming back from a candidate is hostile: it is parsed here with strict bounds and never unpickled.
Layout: 8-byte little-endian header length, a JSON header (a list of entries), then the raw tensor bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 1 << 20


class WireError(ValueError):
    """The bytes are not a well-formed message (truncated, oversized, or forged)."""


def encode(values: list[Any]) -> bytes:
    """Encode tensors (copied to contiguous CPU memory) and JSON-able scalars."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for v in values:
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous()
            if t.dtype not in _NAMES:
                raise WireError(f"unsupported tensor dtype {t.dtype}")
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            entries.append({"t": _NAMES[t.dtype], "shape": list(t.shape), "off": offset, "n": len(raw)})
            chunks.append(raw)
            offset += len(raw)
        else:
            entries.append({"v": v})
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)


def decode(data: bytes, max_bytes: int = 1 << 34) -> list[Any]:
    """Decode a message, validating every size against the payload; tensors come back as fresh copies."""
    if len(data) < 8:
        raise WireError("message shorter than its header")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > MAX_HEADER or 8 + hlen > len(data) or len(data) > max_bytes:
        raise WireError("message header length is out of bounds")
    try:
        entries = json.loads(data[8 : 8 + hlen])
    except ValueError as e:
        raise WireError(f"message header is not JSON: {e}") from None
    if not isinstance(entries, list):
        raise WireError("message header is not a list")
    body = memoryview(data)[8 + hlen :]
    out: list[Any] = []
    for e in entries:
        if not isinstance(e, dict):
            raise WireError("malformed entry")
        if "v" in e:
            out.append(e["v"])
            continue
        dtype = DTYPES.get(e.get("t"))
        shape, off, n = e.get("shape"), e.get("off"), e.get("n")
        if (
            dtype is None
            or not isinstance(shape, list)
            or not all(isinstance(s, int) and s >= 0 for s in shape)
        ):
            raise WireError("malformed tensor entry")
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not isinstance(off, int) or not isinstance(n, int) or n != numel * itemsize or off < 0:
            raise WireError("tensor entry size does not match its shape")
        if off + n > len(body):
            raise WireError("tensor entry runs past the end of the message")
        if n == 0:
            out.append(torch.empty(shape, dtype=dtype))
        else:
            flat = torch.frombuffer(bytearray(body[off : off + n]), dtype=torch.uint8)
            out.append(flat.view(dtype).reshape(shape))
    return out
