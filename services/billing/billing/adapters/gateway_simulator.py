"""A deterministic payment gateway, in the manner of a card network's test tokens.

It keeps its charges in a database of its own (GATEWAY_DATABASE_URL), so a billing restart forgets
nothing and tests can count real charges. Every call carries an idempotency key: the same key never
charges twice, which is what makes `tok_timeoutAfterCharge` safe to retry.
"""

import hashlib
from datetime import datetime, timezone

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert
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
sim_attempts = Table(
    "sim_attempts", metadata,
    Column("idempotency_key", String(250), primary_key=True),
    Column("attempts", Integer, nullable=False),
)

DECLINES = {
    "tok_chargeDeclined": ("card_declined", "The card was declined."),
    "tok_chargeDeclinedInsufficientFunds": ("insufficient_funds", "The card has insufficient funds."),
}


class SimulatedGateway:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def charge(self, idempotency_key: str, token: str, amount: int, currency: str) -> GatewayCharge:
        async with self.engine.begin() as conn:
            existing = (await conn.execute(
                select(sim_charges).where(sim_charges.c.idempotency_key == idempotency_key))).mappings().first()
            if existing:
                return GatewayCharge(existing["reference"], existing["amount"], existing["currency"])
            if token in DECLINES:
                raise Declined(*DECLINES[token])
            first_attempt = await self._count_attempt(conn, idempotency_key) == 1
            if token == "tok_processingError" and first_attempt:
                raise GatewayUnavailable("processing error (simulated, first attempt)")
            reference = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
            await conn.execute(insert(sim_charges).values(
                idempotency_key=idempotency_key, reference=reference, token=token, amount=amount,
                currency=currency, created_at=datetime.now(timezone.utc)))
        if token == "tok_timeoutAfterCharge" and first_attempt:
            # The money is taken (committed above) but the answer never arrives.
            raise GatewayUnavailable("timed out after charging (simulated, first attempt)")
        return GatewayCharge(reference, amount, currency)

    async def refund(self, idempotency_key: str, charge_reference: str, amount: int) -> str:
        async with self.engine.begin() as conn:
            if await conn.scalar(select(sim_refunds.c.idempotency_key)
                                 .where(sim_refunds.c.idempotency_key == idempotency_key)):
                return f"re_{idempotency_key}"
            charge = (await conn.execute(select(sim_charges).where(sim_charges.c.reference == charge_reference)
                                         .with_for_update())).mappings().first()
            if charge is None or charge["amount"] - charge["refunded"] < amount:
                raise Declined("refund_exceeds_charge", f"cannot refund {amount} of {charge_reference}")
            if charge["token"] == "tok_processingError" and await self._count_attempt(conn, idempotency_key) == 1:
                raise GatewayUnavailable("processing error (simulated, first attempt)")
            await conn.execute(insert(sim_refunds).values(
                idempotency_key=idempotency_key, charge_reference=charge_reference, amount=amount,
                created_at=datetime.now(timezone.utc)))
            await conn.execute(update(sim_charges).where(sim_charges.c.reference == charge_reference)
                               .values(refunded=sim_charges.c.refunded + amount))
        return f"re_{idempotency_key}"

    async def _count_attempt(self, conn, idempotency_key: str) -> int:
        """Attempts are durable too: 'first attempt' must mean the first ever, across restarts."""
        async with self.engine.begin() as own:  # committed even when the caller's transaction is not
            stmt = insert(sim_attempts).values(idempotency_key=idempotency_key, attempts=1)
            return await own.scalar(stmt.on_conflict_do_update(
                index_elements=["idempotency_key"], set_={"attempts": sim_attempts.c.attempts + 1}
            ).returning(sim_attempts.c.attempts))
