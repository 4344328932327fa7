"""Earnings inside and past their security period, beside the ledger in the same transaction."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, any_, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from platform_runtime.driver_sql import Fixed

from ..domain import ledger
from ..domain.earnings import Earning
from .tables import account_balances, earnings, past_due_balances


_ADDED = ("kind", "earning_id", "contract_id", "milestone_id", "bonus_id", "freelancer_id", "currency", "amount",
          "released_at", "available_at")
_ADDED_TYPES = {"amount": BigInteger, "released_at": DateTime(timezone=True), "available_at": DateTime(timezone=True)}
# Any number of earnings in one statement (a bonus batch's chunk holds hundreds): arrays unnested, compiled once
# and run on the transaction's asyncpg connection (driver_sql.Fixed: through SQLAlchemy's execute it was a twentieth
# of escrow's CPU in a bonus batch); `pending` starts at the whole amount.
_ADD = Fixed.of(text(
    f"INSERT INTO earnings ({', '.join(_ADDED)}, pending) "
    f"SELECT *, amount FROM unnest({', '.join(':' + c for c in _ADDED)}) AS e({', '.join(_ADDED)}) "
    "ON CONFLICT DO NOTHING"
).bindparams(*(bindparam(c, type_=ARRAY(_ADDED_TYPES.get(c, String))) for c in _ADDED)))


class EarningsRepository:
    def __init__(self, session: AsyncConnection) -> None:
        self.session = session

    async def add(self, new: list[Earning]) -> None:
        if new:
            await _ADD.execute(self.session, {c: [getattr(e, c) for e in new] for c in _ADDED})

    async def still_pending(self, keys: list[tuple[str, str]]) -> list[tuple[Earning, int]]:
        """The earnings (kind, earning id) not yet made available, locked, with what is left of each."""
        if not keys:
            return []
        rows = await self.session.execute(
            select(earnings).where(tuple_(earnings.c.kind, earnings.c.earning_id).in_(keys),
                                   earnings.c.made_available_at.is_(None))
            .order_by(earnings.c.kind, earnings.c.earning_id).with_for_update())
        return [(_earning(r), r.pending) for r in rows]

    async def kinds_of(self, earning_ids: list[str]) -> list[tuple[str, str]]:
        """(kind, id) of earnings named by id alone (the payload of timers set before ids were keyed by kind)."""
        rows = await self.session.execute(select(earnings.c.kind, earnings.c.earning_id).where(
            earnings.c.earning_id == any_(bindparam("ids", earning_ids, type_=ARRAY(String)))))
        return [(k, i) for k, i in rows]

    async def first_available_at(self, kind: str, earning_ids: list[str]) -> datetime | None:
        return await self.session.scalar(select(func.min(earnings.c.available_at)).where(
            earnings.c.kind == kind, earnings.c.earning_id == any_(bindparam("ids", earning_ids, type_=ARRAY(String)))))

    async def mark_available(self, earning: Earning, now: datetime) -> None:
        await self.session.execute(update(earnings).where(earnings.c.kind == earning.kind,
                                                          earnings.c.earning_id == earning.earning_id)
                                   .values(pending=0, made_available_at=now))

    async def pending_by_account(self) -> dict[ledger.Account, int]:
        """What the pending accounts should hold: the earnings still inside their period (ledger check)."""
        rows = await self.session.execute(
            select(earnings.c.freelancer_id, earnings.c.currency, func.sum(earnings.c.pending))
            .where(earnings.c.pending > 0).group_by(earnings.c.freelancer_id, earnings.c.currency))
        return {ledger.freelancer_pending(f, c): int(total) for f, c, total in rows}

    async def set_past_due(self, client_id: str, currency: str, amount: int, version: int | None) -> bool:
        """Billing's word on what the client owes, unless a newer word (a higher version) was kept already;
        False when it was older and left alone. A word without a version (an older billing) is taken as is."""
        stmt = insert(past_due_balances).values(client_id=client_id, currency=currency, amount=amount,
                                                version=version)
        kept = past_due_balances.c.version
        written = await self.session.scalar(stmt.on_conflict_do_update(
            index_elements=["client_id", "currency"],
            set_={"amount": amount, "version": func.coalesce(stmt.excluded.version, kept)},
            where=stmt.excluded.version.is_(None) | kept.is_(None) | (kept < stmt.excluded.version),
        ).returning(past_due_balances.c.client_id))
        return written is not None

    async def balance_of(self, account_id: str) -> dict[str, dict[str, int]]:
        """`{currency: {pending, available}}` of a freelancer's accounts, and `past_due` where a client owes a
        declined bonus charge (empty for an unknown account)."""
        rows = await self.session.execute(
            select(account_balances.c.kind, account_balances.c.currency, account_balances.c.balance)
            .where(account_balances.c.kind.in_([ledger.FREELANCER_PENDING, ledger.FREELANCER]),
                   account_balances.c.owner_id == account_id, account_balances.c.sub_id == ""))
        result: dict[str, dict[str, int]] = {}
        for kind, currency, balance in rows:
            side = "pending" if kind == ledger.FREELANCER_PENDING else "available"
            result.setdefault(currency, {"pending": 0, "available": 0})[side] = balance
        owed = await self.session.execute(select(past_due_balances.c.currency, past_due_balances.c.amount).where(
            past_due_balances.c.client_id == account_id, past_due_balances.c.amount > 0))
        for currency, amount in owed:
            result.setdefault(currency, {"pending": 0, "available": 0})["past_due"] = amount
        return dict(sorted(result.items()))


CURRENCIES = ("USD", "EUR", "GBP")


def _earning(row) -> Earning:
    return Earning(row.earning_id, row.kind, row.contract_id, row.milestone_id, row.bonus_id, row.freelancer_id,
                   row.currency, row.amount, row.released_at, row.available_at)
