"""Internal keys made of several parts, caller ids among them, that can never collide.

Joining parts with a separator (`f"{a}:{b}"`) is ambiguous as soon as a caller's id contains the
separator or equals a word the code appends: `("a:b", "c")` and `("a", "b:c")` would share a key. Both
encodings here are injective: distinct tuples of parts always give distinct keys.
"""

import hashlib
import json
import uuid
from json.encoder import encode_basestring  # the C encoder json.dumps itself uses for a str (ensure_ascii=False)
from urllib.parse import quote

_NAMESPACE = uuid.UUID("0f4d8a52-3c55-4f4e-9a2b-7d1e6b0c9e31")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def compose(*parts: str) -> str:
    """A readable, injective key: the parts as a compact JSON array (`["auto_release","cmd-1"]`).

    Byte for byte what `json.dumps(parts, separators=(",", ":"), ensure_ascii=False)` writes (keys are stored:
    they may never change), without building an encoder per call (a third of escrow's ledger CPU, measured)."""
    if all(type(part) is str for part in parts):
        return "[" + ",".join(map(encode_basestring, parts)) + "]"
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)


def label(*parts: str) -> str:
    """A readable, injective name for display: each part percent-escaped, so no part holds a `:`."""
    return ":".join(quote(part, safe="") for part in parts)


def digest(prefix: str, *parts: str) -> str:
    """A short id (`<prefix>-<32 hex>`) derived from the parts, for places that allow only id characters."""
    return f"{prefix}-{_uuid5_hex(compose(*parts))}"


def _uuid5_hex(name: str) -> str:
    """`uuid.uuid5(_NAMESPACE, name).hex`, without the UUID object: the SHA-1's first 16 bytes with the version
    (5) and the RFC 4122 variant bits set."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()
