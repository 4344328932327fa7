"""A deterministic payment gateway, in the manner of a card network's test tokens.

It keeps its charges in a database of its own (GATEWAY_DATABASE_URL), so a billing restart forgets
nothing and tests can count real charges. Every call carries an idempotency key: the same key never
charges twice, which is what makes `tok_timeoutAfterCharge` safe to retry.

Outages and refusals are controlled from outside, per call, by rows of its table `sim_faults`
(token — `*` for every token —, operation `charge` | `refund` | `void`, mode `unavailable` | `refuse`, until):
while `now() < until`, a call on that token fails as if the network were down (`unavailable`: no answer,
nothing done) or is refused (`refuse`). Delete the row, or let `until` pass, and calls go through again.
A refund's token is its charge's.

An ordinary call is one round trip and one commit: a function of its database (gateway_simulator_sql.py) takes the
key's lock, checks faults, voids and an earlier charge, and writes. The card network's test tokens below are played
step by step by a slower path. This is a stand-in: a real gateway is a network call, and costs billing's database
nothing.
"""

import asyncio
import hashlib
from datetime import datetime, timezone

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain.gateway import Declined, GatewayCharge, GatewayUnavailable
from .gateway_simulator_sql import FUNCTIONS

metadata = MetaData()
sim_charges = Table(
    "sim_charges", metadata,
    Column("idempotency_key", String(250), primary_key=True),
    Column("reference", String(100), nullable=False, unique=True),
    Column("token", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
sim_refunds = Table(
    "sim_refunds", metadata,
    Column("idempotency_key", String(250), primary_key=True),
    Column("charge_reference", String(100), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
sim_voids = Table(
    "sim_voids", metadata,  # keys voided: nothing stays charged under them, and no charge is taken with them again
    Column("idempotency_key", String(250), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
sim_faults = Table(
    "sim_faults", metadata,
    Column("token", String(200), primary_key=True),  # `*`: every token
    Column("operation", String(20), primary_key=True),  # charge (voids too) | refund | void
    Column("mode", String(20), nullable=False),  # unavailable | refuse
    Column("until", DateTime(timezone=True), nullable=False),
)
sim_attempts = Table(
    "sim_attempts", metadata,
    Column("idempotency_key", String(250), primary_key=True),
    Column("attempts", Integer, nullable=False),
)

FAIL_FIRST_ATTEMPT = ("tok_processingError", "tok_timeoutAfterCharge")
# Takes the money at the first call of each key, and no answer ever comes back for it (every call times out):
# the caller gives up not knowing, and only a void of the key gives the money back.
ANSWER_LOST = "tok_chargeAnswerLost"
DECLINES = {
    "tok_chargeDeclined": ("card_declined", "The card was declined."),
    "tok_chargeDeclinedInsufficientFunds": ("insufficient_funds", "The card has insufficient funds."),
}

# Played step by step by the slower path; every other token is charged by one call of sim_charge.
SPECIAL = frozenset({*FAIL_FIRST_ATTEMPT, ANSWER_LOST, *DECLINES})


class SimulatedGateway:
    """Tables made with SQLAlchemy; calls made on asyncpg directly (a daily bonus batch makes thousands)."""

    def __init__(self, engine: AsyncEngine, pool_size: int = 10) -> None:
        self.engine = engine
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def create_tables(self) -> None:
        """Its tables and functions (gateway_simulator_sql.py), made or brought up to date: safe to run again."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            for function in FUNCTIONS:
                await conn.exec_driver_sql(function)

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                    self._pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size,
                                                           reset=_keep_session)
        return self._pool

    async def charge(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge:
        if token in SPECIAL:
            return await self._charge_special(idempotency_key, token, amount, currency)
        row = await (await self._connections()).fetchrow(_CHARGE, idempotency_key, token, amount, currency,
                                                         _reference(idempotency_key))
        _raise_fault(row)
        if row["verdict"] == "voided":
            raise Declined("voided", "This charge was voided.")
        return GatewayCharge(row["detail"], row["amount"], row["currency"])  # charged now, or before under the key

    async def _charge_special(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge:
        """The card network's test tokens, played step by step (the same checks as sim_charge, in the same order)."""
        pool = await self._connections()
        await self._check_faults(pool, "charge", token)
        if await pool.fetchval(_VOIDED, idempotency_key):
            raise Declined("voided", "This charge was voided.")
        existing = await pool.fetchrow(_CHARGE_OF_KEY, idempotency_key)
        if existing and token == ANSWER_LOST:
            raise GatewayUnavailable("timed out (simulated: the charge was taken, its answer is lost)")
        if existing:
            return GatewayCharge(existing["reference"], existing["amount"], existing["currency"])
        if token in DECLINES:
            raise Declined(*DECLINES[token])
        # Only these tokens behave differently on a first attempt; counting costs a transaction of its own.
        first_attempt = token in FAIL_FIRST_ATTEMPT and await self._count_attempt(idempotency_key) == 1
        if token == "tok_processingError" and first_attempt:
            raise GatewayUnavailable("processing error (simulated, first attempt)")
        reference = _reference(idempotency_key)
        async with pool.acquire() as conn, conn.transaction():  # a void of the same key waits, or is waited for
            await conn.execute(_LOCK_KEY, idempotency_key)
            if await conn.fetchval(_VOIDED, idempotency_key):
                raise Declined("voided", "This charge was voided.")
            inserted = await conn.fetchval(
                "INSERT INTO sim_charges (idempotency_key, reference, token, amount, currency, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING reference",
                idempotency_key, reference, token, amount, currency, datetime.now(timezone.utc))
        if inserted is None:  # the same key charged at this very moment by another caller: still one charge
            existing = await pool.fetchrow(_CHARGE_OF_KEY, idempotency_key)
            return GatewayCharge(existing["reference"], existing["amount"], existing["currency"])
        if token == "tok_timeoutAfterCharge" and first_attempt or token == ANSWER_LOST:
            # The money is taken (committed above) but the answer never arrives.
            raise GatewayUnavailable("timed out after charging (simulated)")
        return GatewayCharge(reference, amount, currency)

    async def refund(self, idempotency_key: str, charge_reference: str, amount: int) -> str:
        row = await (await self._connections()).fetchrow(_REFUND, idempotency_key, charge_reference, amount)
        _raise_fault(row)
        if row["verdict"] == "special":
            return await self._refund_special(idempotency_key, charge_reference, amount)
        if row["verdict"] == "exceeds":
            raise _exceeds(charge_reference, amount)
        return f"re_{idempotency_key}"

    async def _refund_special(self, idempotency_key: str, charge_reference: str, amount: int) -> str:
        """A refund of a `tok_processingError` charge: its first attempt fails (the same checks as sim_refund)."""
        pool = await self._connections()
        if await pool.fetchval(_REFUND_OF_KEY, idempotency_key):
            return f"re_{idempotency_key}"
        charge = await pool.fetchrow("SELECT token, amount, refunded FROM sim_charges WHERE reference = $1",
                                     charge_reference)
        await self._check_faults(pool, "refund", charge["token"] if charge else "*")
        _ensure_refundable(charge, charge_reference, amount)
        if await self._count_attempt(idempotency_key) == 1:
            raise GatewayUnavailable("processing error (simulated, first attempt)")
        async with pool.acquire() as conn, conn.transaction():  # checked again, locked: refunds never overlap
            if await conn.fetchval(_REFUND_OF_KEY, idempotency_key):
                return f"re_{idempotency_key}"
            _ensure_refundable(await conn.fetchrow(
                "SELECT amount, refunded FROM sim_charges WHERE reference = $1 FOR UPDATE", charge_reference),
                charge_reference, amount)
            await conn.execute(
                "INSERT INTO sim_refunds (idempotency_key, charge_reference, amount, created_at) "
                "VALUES ($1, $2, $3, $4)", idempotency_key, charge_reference, amount, datetime.now(timezone.utc))
            await conn.execute("UPDATE sim_charges SET refunded = refunded + $2 WHERE reference = $1",
                               charge_reference, amount)
        return f"re_{idempotency_key}"

    async def void(self, idempotency_key: str) -> str:
        """Nothing stays charged under the key: a charge taken with it is given back whole, and a later charge
        with it is refused. Returns the voided charge's reference, or "" when nothing had been charged."""
        row = await (await self._connections()).fetchrow(_VOID, idempotency_key)
        _raise_fault(row)
        return row["detail"]

    async def _check_faults(self, pool: asyncpg.Pool, operation: str, token: str) -> None:
        """An outage or refusal switched on from outside (table sim_faults), read on every call."""
        _raise_for(await pool.fetchval(_FAULT, operation, token), operation)

    async def _count_attempt(self, idempotency_key: str) -> int:
        """Attempts are durable too: 'first attempt' must mean the first ever, across restarts."""
        async with (await self._connections()).acquire() as own:  # its own transaction: committed whatever follows
            return await own.fetchval(
                "INSERT INTO sim_attempts (idempotency_key, attempts) VALUES ($1, 1) ON CONFLICT (idempotency_key) "
                "DO UPDATE SET attempts = sim_attempts.attempts + 1 RETURNING attempts", idempotency_key)


# One round trip each (gateway_simulator_sql.py): the key's lock, the checks and the writes in one function call.
_CHARGE = "SELECT verdict, detail, amount, currency FROM sim_charge($1, $2, $3, $4, $5)"
_VOID = "SELECT verdict, detail FROM sim_void($1)"
_REFUND = "SELECT verdict, detail FROM sim_refund($1, $2, $3)"
_CHARGE_OF_KEY = "SELECT reference, amount, currency FROM sim_charges WHERE idempotency_key = $1"
_REFUND_OF_KEY = "SELECT 1 FROM sim_refunds WHERE idempotency_key = $1"
_VOIDED = "SELECT 1 FROM sim_voids WHERE idempotency_key = $1"
_LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtext($1))"
_FAULT = ("SELECT mode FROM sim_faults WHERE operation = $1 AND token IN ($2, '*') AND until > now() "
          "ORDER BY token = '*' LIMIT 1")


def _reference(idempotency_key: str) -> str:
    return "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def _raise_fault(row) -> None:
    """An outage or refusal of `sim_faults`, as the functions found it (verdict: its mode, detail: the operation)."""
    _raise_for(row["verdict"], row["detail"])


def _raise_for(mode: str | None, operation: str) -> None:
    if mode == "unavailable":
        raise GatewayUnavailable(f"{operation} unavailable (simulated outage)")
    if mode == "refuse":
        raise Declined(f"{operation}_refused", f"The gateway refused the {operation} (simulated).")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Released as it is: the simulator leaves no session state behind (no SET, LISTEN, cursor or session-level
    advisory lock; its locks are transaction-level), so asyncpg's reset query (4 statements and a commit per
    release) would find nothing to undo. A transaction left open is still rolled back by asyncpg itself."""


def _ensure_refundable(charge, charge_reference: str, amount: int) -> None:
    if charge is None or charge["amount"] - charge["refunded"] < amount:
        raise _exceeds(charge_reference, amount)


def _exceeds(charge_reference: str, amount: int) -> Declined:
    return Declined("refund_exceeds_charge", f"cannot refund {amount} of {charge_reference}")
