"""Internal keys made of several parts, caller ids among them, that can never collide.

Joining parts with a separator (`f"{a}:{b}"`) is ambiguous as soon as a caller's id contains the
separator or equals a word the code appends: `("a:b", "c")` and `("a", "b:c")` would share a key. Both
encodings here are injective: distinct tuples of parts always give distinct keys.
"""

import json
import uuid
from urllib.parse import quote

_NAMESPACE = uuid.UUID("0f4d8a52-3c55-4f4e-9a2b-7d1e6b0c9e31")


def compose(*parts: str) -> str:
    """A readable, injective key: the parts as a compact JSON array (`["auto_release","cmd-1"]`)."""
    return json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False)


def label(*parts: str) -> str:
    """A readable, injective name for display: each part percent-escaped, so no part holds a `:`."""
    return ":".join(quote(part, safe="") for part in parts)


def digest(prefix: str, *parts: str) -> str:
    """A short id (`<prefix>-<32 hex>`) derived from the parts, for places that allow only id characters."""
    return f"{prefix}-{uuid.uuid5(_NAMESPACE, compose(*parts)).hex}"
