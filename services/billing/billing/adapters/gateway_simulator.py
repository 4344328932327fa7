"""A deterministic payment gateway, in the manner of a card network's test tokens.

It keeps its charges in a database of its own (GATEWAY_DATABASE_URL), so a billing restart forgets
nothing and tests can count real charges. Every call carries an idempotency key: the same key never
charges twice, which is what makes `tok_timeoutAfterCharge` safe to retry.

Outages and refusals are controlled from outside, per call, by rows of its table `sim_faults`
(token — `*` for every token —, operation `charge` | `refund` | `void`, mode `unavailable` | `refuse`, until):
while `now() < until`, a call on that token fails as if the network were down (`unavailable`: no answer,
nothing done) or is refused (`refuse`). Delete the row, or let `until` pass, and calls go through again.
A refund's token is its charge's.
"""

import asyncio
import hashlib
from datetime import datetime, timezone

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain.gateway import Declined, GatewayCharge, GatewayUnavailable

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


class SimulatedGateway:
    """Tables made with SQLAlchemy; calls made on asyncpg directly (a daily bonus batch makes thousands)."""

    def __init__(self, engine: AsyncEngine, pool_size: int = 10) -> None:
        self.engine = engine
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def create_tables(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                    self._pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size)
        return self._pool

    async def charge(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge:
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
        reference = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
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
        pool = await self._connections()
        if await pool.fetchval(_REFUND_OF_KEY, idempotency_key):
            return f"re_{idempotency_key}"
        charge = await pool.fetchrow("SELECT token, amount, refunded FROM sim_charges WHERE reference = $1",
                                     charge_reference)
        await self._check_faults(pool, "refund", charge["token"] if charge else "*")
        _ensure_refundable(charge, charge_reference, amount)
        if charge["token"] == "tok_processingError" and await self._count_attempt(idempotency_key) == 1:
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
        pool = await self._connections()
        token = await pool.fetchval("SELECT token FROM sim_charges WHERE idempotency_key = $1", idempotency_key)
        await self._check_faults(pool, "charge", token or "*")  # the network down for charges is down for voids
        await self._check_faults(pool, "void", token or "*")  # ... and voids alone may be down too
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_KEY, idempotency_key)
            await conn.execute("INSERT INTO sim_voids (idempotency_key, created_at) VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING", idempotency_key, datetime.now(timezone.utc))
            return await conn.fetchval("UPDATE sim_charges SET refunded = amount WHERE idempotency_key = $1 "
                                       "RETURNING reference", idempotency_key) or ""

    async def _check_faults(self, pool: asyncpg.Pool, operation: str, token: str) -> None:
        """An outage or refusal switched on from outside (table sim_faults), read on every call."""
        mode = await pool.fetchval(_FAULT, operation, token)
        if mode == "unavailable":
            raise GatewayUnavailable(f"{operation} unavailable (simulated outage)")
        if mode == "refuse":
            raise Declined(f"{operation}_refused", f"The gateway refused the {operation} (simulated).")

    async def _count_attempt(self, idempotency_key: str) -> int:
        """Attempts are durable too: 'first attempt' must mean the first ever, across restarts."""
        async with (await self._connections()).acquire() as own:  # its own transaction: committed whatever follows
            return await own.fetchval(
                "INSERT INTO sim_attempts (idempotency_key, attempts) VALUES ($1, 1) ON CONFLICT (idempotency_key) "
                "DO UPDATE SET attempts = sim_attempts.attempts + 1 RETURNING attempts", idempotency_key)


_CHARGE_OF_KEY = "SELECT reference, amount, currency FROM sim_charges WHERE idempotency_key = $1"
_REFUND_OF_KEY = "SELECT 1 FROM sim_refunds WHERE idempotency_key = $1"
_VOIDED = "SELECT 1 FROM sim_voids WHERE idempotency_key = $1"
_LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtext($1))"
_FAULT = ("SELECT mode FROM sim_faults WHERE operation = $1 AND token IN ($2, '*') AND until > now() "
          "ORDER BY token = '*' LIMIT 1")


def _ensure_refundable(charge, charge_reference: str, amount: int) -> None:
    if charge is None or charge["amount"] - charge["refunded"] < amount:
        raise Declined("refund_exceeds_charge", f"cannot refund {amount} of {charge_reference}")
