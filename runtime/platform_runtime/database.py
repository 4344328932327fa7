"""The service's database engine: a pool that pings a connection only after it sat idle.

SQLAlchemy's pool_pre_ping pings on every checkout: one more round trip for every transaction, that is for
every consumed batch and HTTP request. A connection checked in a moment ago is almost surely alive, and if the
server went away meanwhile the statement fails as a disconnect, which the consumer retries as a transient fault
(consumer.py). A connection idle for longer (the server may have restarted, a firewall may have dropped it) is
pinged at checkout, and replaced when the ping fails, as pool_pre_ping would.
"""

import time

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_CHECKED_IN_AT = "checked_in_at"


def new_engine(url: str, ping_after_idle: float, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    # hide_parameters: a failed statement's values (emails, names, card tokens...) stay out of error messages,
    # which end in logs and in failure replies.
    # use_lifo: the connection checked in last goes out first, so at low rates one warm connection does the work
    # (its prepared statements cached) instead of each in turn paying its first-use queries and idle pings.
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, hide_parameters=True,
                                 pool_use_lifo=True)
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection, record) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get(_CHECKED_IN_AT)
        if idle_since is None or time.monotonic() - idle_since < ping_after_idle:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the pool replaces the connection
            raise DisconnectionError(f"idle connection failed its ping: {error!r}") from error

    return engine
