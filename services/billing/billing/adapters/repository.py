"""Billing's reads and writes inside the unit of work's transaction."""

from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.billing_methods import BillingMethod, BillingMethods
from ..domain.history import HistoryRow
from . import history_rows
from .tables import billing_methods, charges, client_charge_streaks, known_accounts, transactions


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def learn_account(self, account_id: str, role: str, at: datetime) -> None:
        await self.session.execute(insert(known_accounts).values(account_id=account_id, role=role, registered_at=at)
                                   .on_conflict_do_nothing())

    async def knows_account(self, account_id: str) -> bool:
        """Registered (as contracts told), or seen in billing's own records before billing kept that list."""
        for column in (known_accounts.c.account_id, billing_methods.c.account_id, transactions.c.account_id,
                       charges.c.client_id):
            if await self.session.scalar(select(column).where(column == account_id).limit(1)) is not None:
                return True
        return False

    async def methods_page(self, account_id: str, after: tuple[datetime, str] | None,
                           limit: int) -> list[dict[str, Any]]:
        """Current billing methods, oldest first: `limit` of them after (added_at, billing_method_id) `after`."""
        conditions = [billing_methods.c.account_id == account_id, billing_methods.c.removed_at.is_(None)]
        if after is not None:
            conditions.append(tuple_(billing_methods.c.added_at, billing_methods.c.billing_method_id) > after)
        rows = await self.session.execute(
            select(billing_methods).where(and_(*conditions))
            .order_by(billing_methods.c.added_at, billing_methods.c.billing_method_id).limit(limit))
        return [dict(r) for r in rows.mappings()]

    async def methods_of(self, account_id: str) -> BillingMethods:
        rows = await self.session.execute(
            select(billing_methods).where(billing_methods.c.account_id == account_id,
                                          billing_methods.c.removed_at.is_(None))
            .order_by(billing_methods.c.added_at).with_for_update())
        return BillingMethods(account_id, [
            BillingMethod(r.billing_method_id, r.kind, r.token, r.is_primary) for r in rows
        ])

    async def method_id_taken(self, billing_method_id: str) -> bool:
        return await self.session.scalar(select(billing_methods.c.billing_method_id).where(
            billing_methods.c.billing_method_id == billing_method_id)) is not None

    async def save_methods(self, methods: BillingMethods, now: datetime) -> None:
        kept = [m.billing_method_id for m in methods.methods]
        await self.session.execute(update(billing_methods).where(
            billing_methods.c.account_id == methods.account_id, billing_methods.c.removed_at.is_(None),
            billing_methods.c.billing_method_id.not_in(kept)).values(removed_at=now, is_primary=False))
        # Clear first: the partial unique index allows one primary at any instant.
        await self.session.execute(update(billing_methods).where(
            billing_methods.c.account_id == methods.account_id).values(is_primary=False))
        for m in methods.methods:
            stmt = insert(billing_methods).values(
                billing_method_id=m.billing_method_id, account_id=methods.account_id, kind=m.kind, token=m.token,
                is_primary=m.primary, added_at=now)
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=["billing_method_id"], set_={"is_primary": m.primary}))

    async def count_charge_outcome(self, client_id: str, succeeded: bool) -> int:
        """Consecutive failed charges of a client after this one (0 after a success)."""
        if succeeded:
            await self.clear_streaks([client_id])
            return 0
        return await self.session.scalar(_COUNT_FAILURE, {"client_id": client_id})

    async def clear_streaks(self, client_ids: list[str]) -> None:
        """These clients' charges succeeded: none of them has failed charges in a row any more."""
        await self.session.execute(_CLEAR_STREAKS, {"client_ids": client_ids})

    async def consecutive_failures(self, client_id: str) -> int:
        return await self.session.scalar(_STREAK, {"client_id": client_id}) or 0

    async def add_history(self, rows: list[HistoryRow], occurred_at: datetime) -> set[str]:
        """Insert the rows not recorded yet, in one statement; returns the transaction ids that are new."""
        return await history_rows.add_history(self.session, rows, occurred_at)

    async def history(self, account_id: str, since: datetime | None, until: datetime | None, kind: str | None,
                      after_seq: int | None, limit: int) -> list[dict[str, Any]]:
        conditions = [transactions.c.account_id == account_id]
        if since:
            conditions.append(transactions.c.occurred_at >= since)
        if until:
            conditions.append(transactions.c.occurred_at < until)
        if kind:
            conditions.append(transactions.c.kind == kind)
        if after_seq:
            conditions.append(transactions.c.seq > after_seq)
        rows = await self.session.execute(
            select(transactions).where(and_(*conditions)).order_by(transactions.c.seq).limit(limit))
        return [dict(r) for r in rows.mappings()]


# Statements of the charge path, built once (building one costs more CPU than running it).
_streak_upsert = insert(client_charge_streaks).values(client_id=bindparam("client_id"), consecutive_failures=1)
_COUNT_FAILURE = _streak_upsert.on_conflict_do_update(
    index_elements=["client_id"], set_={"consecutive_failures": client_charge_streaks.c.consecutive_failures + 1},
).returning(client_charge_streaks.c.consecutive_failures)
_CLEAR_STREAKS = delete(client_charge_streaks).where(
    client_charge_streaks.c.client_id == any_(bindparam("client_ids", type_=ARRAY(String))))
_STREAK = select(client_charge_streaks.c.consecutive_failures).where(
    client_charge_streaks.c.client_id == bindparam("client_id"))
