"""What a failure is: the message's fault (retried a few times, then dead-lettered) or a passing fault of
a dependency (retried without limit, never counted against the message).

Database faults are told by their SQLSTATE, wherever it sits in the chain SQLAlchemy builds
(`DBAPIError.orig` -> the dialect's adapted error -> asyncpg's exception), never by the exception's class
name: asyncpg raises its own classes for "the database system is starting up" or "too many clients",
and SQLAlchemy wraps them in whatever DBAPIError subclass its mapping picks.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .errors import TransientError

# SQLSTATE classes and codes that say nothing about the message being handled.
TRANSIENT_SQLSTATE_CLASSES = {
    "08": "connection exception",
    "53": "insufficient resources (too many connections, out of memory, disk full)",
    "58": "system error (I/O)",
}
TRANSIENT_SQLSTATES = {
    "57P01": "admin shutdown",
    "57P02": "crash shutdown",
    "57P03": "cannot connect now (starting up)",
    "57P04": "database dropped",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "55P03": "lock not available (lock timeout)",
    "55006": "object in use",
    "25P03": "idle in transaction session timeout",
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE anywhere in the chain (asyncpg's `sqlstate`, the adapted error's `pgcode`)."""
    for e in _chain(error):
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _connection_lost(e: BaseException) -> bool:
    import asyncpg

    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    # Without a SQLSTATE (lost before the server answered): the DBAPI's "operational" and "interface" errors.
    return isinstance(e, (ConnectionError, OSError, TimeoutError, OperationalError, InterfaceError,
                          asyncpg.exceptions.InterfaceError,
                          asyncpg.exceptions.ConnectionDoesNotExistError))


def is_transient(error: BaseException) -> bool:
    """True for a fault of a dependency (database unreachable, restarting, overloaded, a lock conflict,
    the payment gateway down); False for anything the message itself may cause."""
    code = sqlstate_of(error)
    if code is not None:
        return code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_SQLSTATE_CLASSES
    return any(isinstance(e, TransientError) or _connection_lost(e) for e in _chain(error))


def describe(error: BaseException) -> str:
    code = sqlstate_of(error)
    what = TRANSIENT_SQLSTATES.get(code or "") or TRANSIENT_SQLSTATE_CLASSES.get((code or "")[:2], "")
    return f"{code} {what}".strip() if code else type(error).__name__


@dataclass
class TransientFaults:
    """Whether this process is waiting out a dependency's fault right now: readiness is red meanwhile."""

    failing_since: float | None = None
    last_error: str | None = None

    def failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = describe(error)

    def recovered(self) -> None:
        self.failing_since, self.last_error = None, None

    @property
    def ok(self) -> bool:
        return self.failing_since is None
