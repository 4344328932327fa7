"""Reads and writes of the bonus batch (bonuses, batches, per-client charges), in the unit of work's session.

Work is claimed with `FOR UPDATE SKIP LOCKED`, so several billing instances share a batch without
taking the same rows; every statement touches a bounded chunk, never the whole batch.
"""

from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    String, and_, any_, bindparam, delete, func, select, text, tuple_, update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime import driver_sql

from ..domain.bonus_batch import Bonus, ChargeResult, ChargeTotal, ClientSum
from ..domain.bonus_batch_states import (
    BONUS, BatchStatus, BonusEvent, BonusStatus, ChargeStatus, after, bonus_move,
)
from ..domain.gateway_work import VoidStatus
from ..domain.history import HistoryRow
from . import history_rows
from .tables import (
    billing_methods, bonus_batches, bonus_charges, bonus_credit_counts, bonuses, client_charge_streaks, past_due_balances,
)

_BONUS = (bonuses.c.bonus_id, bonuses.c.contract_id, bonuses.c.client_id, bonuses.c.freelancer_id, bonuses.c.amount,
          bonuses.c.currency)


def _each(values: list[str]):
    """`= ANY(:array)`: one statement text whatever the number of values."""
    return any_(bindparam(None, values, type_=ARRAY(String)))


def _bonus(row) -> Bonus:
    return Bonus(row.bonus_id, row.contract_id, row.client_id, row.freelancer_id, row.amount, row.currency)


class BonusRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- bonuses ----------------------------------------------------------------------------
    async def add_bonus(self, **values: Any) -> bool:
        added = await self.session.scalar(
            insert(bonuses).values(status=BonusStatus.PENDING, **values).on_conflict_do_nothing().returning(bonuses.c.bonus_id))
        return added is not None

    async def bonus(self, bonus_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(select(bonuses).where(bonuses.c.bonus_id == bonus_id))).mappings().first()
        return dict(row) if row else None

    async def take_pending(self, business_date: date, cutoff: datetime, limit: int,
                           charge_date: date) -> list[ClientSum]:
        """Give the batch up to `limit` pending bonuses given before `cutoff` that no batch took yet, except
        those of a client another batch already charges on `charge_date` in that currency: they wait for the
        next batch that charges on another day (charged once daily). Set-based: the database takes the rows
        and sums them per client and currency in the same statement; only the sums come back."""
        pending, taken = bonus_move(BonusEvent.TAKE)
        charged_today = select(bonus_charges.c.charge_id).where(
            bonus_charges.c.client_id == bonuses.c.client_id, bonus_charges.c.currency == bonuses.c.currency,
            bonus_charges.c.charge_date == charge_date, bonus_charges.c.business_date != business_date)
        past_due, _ = bonus_move(BonusEvent.RETRY)  # retried into this batch, like a new one
        # ... unless the charge that left them owed was given up unanswered and its void is not confirmed yet:
        # that charge may have been taken, so charging them again under this batch's key could charge twice.
        awaiting_void = select(bonus_charges.c.charge_id).where(
            bonus_charges.c.charge_id == bonuses.c.charge_id, bonus_charges.c.void_status == VoidStatus.PENDING)
        sums: list[ClientSum] = []
        took = 0
        # Past-due bonuses first (a declined charge's, retried by each later day's batch), then the new ones:
        # two statements, so each uses its own partial index. Both by client: a chunk takes whole clients (all
        # but the last), so each charge row is written about once, not once per chunk (seven times each at
        # 1,000,000 bonuses of 100,000 clients in chunks of 20,000 taken by age).
        # (`past_due_until` is set on every past-due bonus: it is what the partial index bonuses_past_due holds.)
        for due in (and_(bonuses.c.past_due_until.is_not(None), bonuses.c.status == past_due, ~awaiting_void.exists()),
                    and_(bonuses.c.batch_date.is_(None), bonuses.c.status == pending, bonuses.c.given_at < cutoff)):
            ids = (select(bonuses.c.bonus_id).where(due, ~charged_today.exists())
                   .order_by(bonuses.c.client_id, bonuses.c.currency)
                   .limit(limit - took).with_for_update(skip_locked=True).scalar_subquery())
            moved = (update(bonuses).where(bonuses.c.bonus_id.in_(ids))
                     .values(batch_date=business_date, status=taken)
                     .returning(bonuses.c.client_id, bonuses.c.currency, bonuses.c.amount).cte("moved"))
            rows = await self.session.execute(
                select(moved.c.client_id, moved.c.currency, func.sum(moved.c.amount), func.count(),
                       func.min(moved.c.amount))
                .group_by(moved.c.client_id, moved.c.currency))
            for client, currency, total, count, smallest in rows:
                sums.append(ClientSum(client, currency, int(total), count, smallest))
                took += count
            if took >= limit:
                break
        return sums

    async def refresh_statistics(self) -> None:
        """ANALYZE of the bonus tables, through the owner's function (migration a4e8c2f6b1d9)."""
        await self.session.execute(text("SELECT refresh_bonus_statistics()"))

    async def count_in_batch(self, business_date: date) -> int:
        return await self.session.scalar(select(func.count()).where(bonuses.c.batch_date == business_date))

    async def progress(self, business_date: date) -> dict[str, int]:
        """How many of the batch's bonuses are in each status."""
        rows = await self.session.execute(select(bonuses.c.status, func.count()).where(
            bonuses.c.batch_date == business_date).group_by(bonuses.c.status))
        return {status: count for status, count in rows}

    async def any_unsettled(self, business_date: date) -> bool:
        """Whether a bonus of the batch may still be under way (not paid, failed or past due): a charge of the batch
        is pending or has bonuses not moved on since it was settled, or escrow has not answered every credit asked.
        Read from the charges and the credit counts, never the bonuses (no index names their status); the batch's
        completion counts the bonuses themselves before it is recorded."""
        driver = await driver_sql.in_transaction(self.session)
        return await driver.fetchval(_ANY_UNSETTLED, business_date)

    async def credits_in_flight(self, business_date: date) -> int:
        """How many of the batch's bonuses are asked of escrow and not answered yet, exactly: the batch's "asked"
        count is locked until this transaction ends, so two instances crediting at once see each other's."""
        driver = await driver_sql.in_transaction(self.session)
        return await driver.fetchval(_CREDITS_IN_FLIGHT, business_date)

    async def claim_declined(self, business_date: date, limit: int) -> tuple[set[str], list[tuple[dict, Bonus]]]:
        """Up to `limit` of the batch's failed charges not followed up yet (skipped if another instance holds them)
        and up to `limit` of their declined bonuses, ordered by charge, all locked for this transaction: (the
        charges' ids, the bonuses). A charge may have none left (moved on before it was followed up)."""
        declined, _ = bonus_move(BonusEvent.FAIL)
        charges = (await self.session.execute(
            select(bonus_charges.c.charge_id, bonus_charges.c.client_id, bonus_charges.c.currency)
            .where(bonus_charges.c.business_date == business_date, bonus_charges.c.status == ChargeStatus.FAILED,
                   bonus_charges.c.followed_up_at.is_(None))
            .order_by(bonus_charges.c.charge_id).limit(limit).with_for_update(skip_locked=True))).all()
        if not charges:
            return set(), []
        rows = await self.session.execute(
            select(bonuses).where(
                bonuses.c.batch_date == business_date,
                tuple_(bonuses.c.client_id, bonuses.c.currency).in_([(c.client_id, c.currency) for c in charges]),
                bonuses.c.charge_id == _each([c.charge_id for c in charges]), bonuses.c.status == declined)
            .order_by(bonuses.c.charge_id, bonuses.c.bonus_id).limit(limit).with_for_update())
        return {c.charge_id for c in charges}, [(dict(r), _bonus(r)) for r in rows.mappings()]

    async def follow_up_failed(self, business_date: date, charge_ids: set[str], now: datetime) -> None:
        """These failed charges are followed up once none of their bonuses is left declined (this transaction's
        moves seen): a charge with more declined bonuses than a chunk stays for the next one."""
        if not charge_ids:
            return
        declined, _ = bonus_move(BonusEvent.FAIL)
        left = select(bonuses.c.bonus_id).where(
            bonuses.c.batch_date == business_date, bonuses.c.client_id == bonus_charges.c.client_id,
            bonuses.c.currency == bonus_charges.c.currency, bonuses.c.charge_id == bonus_charges.c.charge_id,
            bonuses.c.status == declined)
        await self.session.execute(update(bonus_charges).where(
            bonus_charges.c.charge_id == _each(sorted(charge_ids)), ~left.exists()).values(followed_up_at=now))

    async def ask_credits(self, business_date: date, limit: int, now: datetime) -> list[tuple[str, Bonus]]:
        """Up to `limit` charged bonuses of the batch's succeeded charges not followed up yet, now crediting and
        counted as asked, and each charge none of whose bonuses is left charged followed up, in one statement:
        as (charge id, bonus) ordered by charge then bonus.

        By charge, not by the bonuses' status: no index names it, so that their moves are updates in place (the
        migration 4b9e2d7c1a63). Charges another instance holds are skipped; a charge with more bonuses than
        `limit` is asked in several chunks."""
        charged, crediting = bonus_move(BonusEvent.CREDIT)
        driver = await driver_sql.in_transaction(self.session)
        rows = await driver.fetch(_ASK_CREDITS, business_date, charged, limit, crediting, now, ChargeStatus.SUCCEEDED)
        return sorted(((r["charge_id"], Bonus(*r[:6])) for r in rows), key=lambda pair: (pair[0], pair[1].bonus_id))

    async def set_failed(self, bonus_ids: list[str], now: datetime) -> None:
        """Failed for good: no longer owed, so out of the past-due index too."""
        _, failed = bonus_move(BonusEvent.FAIL)
        await self.session.execute(update(bonuses).where(bonuses.c.bonus_id == _each(bonus_ids))
                                   .values(status=failed, settled_at=now, past_due_until=None))

    async def set_past_due(self, bonus_ids: list[str], until) -> None:
        await self.session.execute(update(bonuses).where(bonuses.c.bonus_id == _each(bonus_ids))
                                   .values(status=after(BONUS, BonusStatus.DECLINED, BonusEvent.OWE),
                                           past_due_until=until))

    async def owed(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, date | None]]:
        """(client, currency) -> what its past-due bonuses add up to and the last day the oldest is retried."""
        if not pairs:
            return {}
        rows = await self.session.execute(
            select(bonuses.c.client_id, bonuses.c.currency, func.sum(bonuses.c.amount),
                   func.min(bonuses.c.past_due_until))
            .where(tuple_(bonuses.c.client_id, bonuses.c.currency).in_(sorted(pairs)),
                   bonuses.c.past_due_until.is_not(None),  # still owed: not charged, not failed
                   bonuses.c.status.in_((BonusStatus.PAST_DUE, BonusStatus.TAKEN, BonusStatus.DECLINED)))
            .group_by(bonuses.c.client_id, bonuses.c.currency))
        return {(client, currency): (int(total), until) for client, currency, total, until in rows}

    async def lock_past_due_balances(self, pairs: set[tuple[str, str]], now: datetime,
                                     create: bool = True) -> dict[tuple[str, str], tuple[int, int]]:
        """(client, currency) -> (amount, version) of these balances, each row locked for this transaction.

        With `create`, a pair never owed before gets its row first (0, version 0), so that there is a row to
        lock: whoever reads what is owed after this waits for every other transaction changing it. Without it,
        only existing rows are locked (and returned). Rows are made and locked in one order (client, then
        currency), so two transactions locking overlapping pairs never deadlock."""
        if not pairs:
            return {}
        ordered = sorted(pairs)
        if create:
            await self.session.execute(
                insert(past_due_balances).on_conflict_do_nothing(index_elements=["client_id", "currency"]),
                [{"client_id": client, "currency": currency, "amount": 0, "version": 0, "updated_at": now}
                 for client, currency in ordered])
        rows = await self.session.execute(
            select(past_due_balances.c.client_id, past_due_balances.c.currency, past_due_balances.c.amount,
                   past_due_balances.c.version)
            .where(tuple_(past_due_balances.c.client_id, past_due_balances.c.currency).in_(ordered))
            .order_by(past_due_balances.c.client_id, past_due_balances.c.currency).with_for_update())
        return {(client, currency): (amount, version) for client, currency, amount, version in rows}

    async def set_past_due_balance(self, client_id: str, currency: str, amount: int, retry_until, now) -> int:
        """Write a locked balance's new amount; returns its new version (one more than the last)."""
        return await self.session.scalar(
            update(past_due_balances).where(past_due_balances.c.client_id == client_id,
                                            past_due_balances.c.currency == currency)
            .values(amount=amount, retry_until=retry_until, updated_at=now, version=past_due_balances.c.version + 1)
            .returning(past_due_balances.c.version))

    async def mark_paid(self, bonus_ids: list[str], now: datetime) -> list[tuple[dict, Bonus]]:
        """The ones of these bonuses that were waiting for their credit, now paid (each only once)."""
        crediting, paid = bonus_move(BonusEvent.POSTED)
        driver = await driver_sql.in_transaction(self.session)
        rows = await driver.fetch(_MARK_PAID, paid, now, bonus_ids, crediting)
        return sorted(((dict(r), Bonus(*r[:6])) for r in rows), key=lambda pair: pair[1].bonus_id)

    # -- batches ----------------------------------------------------------------------------
    async def batch(self, business_date: date, lock: bool = False, skip_locked: bool = False) -> dict | None:
        query = select(bonus_batches).where(bonus_batches.c.business_date == business_date)
        if lock:
            query = query.with_for_update(skip_locked=skip_locked)
        row = (await self.session.execute(query)).mappings().first()
        return dict(row) if row else None

    async def add_batch(self, **values: Any) -> bool:
        """A new batch and its credit counts (both 0); False if the day has its batch already."""
        added = await self.session.scalar(insert(bonus_batches).values(**values).on_conflict_do_nothing()
                                          .returning(bonus_batches.c.business_date))
        if added is None:
            return False
        await self.session.execute(insert(bonus_credit_counts), [
            {"business_date": added, "side": side, "bonuses": 0} for side in ("asked", "posted")])
        return True

    async def update_batch(self, business_date: date, **values: Any) -> None:
        await self.session.execute(
            update(bonus_batches).where(bonus_batches.c.business_date == business_date).values(**values))

    async def last_scheduled_batch(self, timer_kind: str) -> date | None:
        timers = bonuses.metadata.tables["timers"]
        last = await self.session.scalar(select(func.max(timers.c.payload["business_date"].astext))
                                         .where(timers.c.kind == timer_kind))
        return date.fromisoformat(last) if last else None

    async def batches(self, status: str | None, started_before: datetime | None, limit: int,
                      after: date | None) -> list[dict]:
        """Batches by business day, one page after `after`: of one status, started before a moment."""
        query = select(bonus_batches).order_by(bonus_batches.c.business_date).limit(limit)
        if status is not None:
            query = query.where(bonus_batches.c.status == status)
        if started_before is not None:
            query = query.where(bonus_batches.c.started_at < started_before)
        if after is not None:
            query = query.where(bonus_batches.c.business_date > after)
        return [dict(r) for r in (await self.session.execute(query)).mappings()]

    async def open_batches(self) -> list[dict]:
        rows = await self.session.execute(select(bonus_batches).where(bonus_batches.c.status != BatchStatus.COMPLETED)
                                          .order_by(bonus_batches.c.business_date))
        return [dict(r) for r in rows.mappings()]

    # -- charges ----------------------------------------------------------------------------
    async def add_to_charges(self, business_date: date, totals: list[ChargeTotal], charge_date: date) -> None:
        """Add a chunk's sums to the charges (created on first sight); same transaction as the take."""
        if not totals:
            return
        # One statement for the chunk (unnest of one array per column), not one per charge: a chunk of 5,000
        # bonuses of 5,000 clients was 5,000 executions (3.2 s of the server's time for a batch of 100,000).
        await self.session.execute(_ADD_TO_CHARGES, {
            "business_date": business_date, "charge_date": charge_date, "status": ChargeStatus.PENDING,
            "ids": [t.charge_id for t in totals], "keys": [t.idempotency_key for t in totals],
            "clients": [t.client_id for t in totals], "currencies": [t.currency for t in totals],
            "amounts": [t.amount for t in totals], "counts": [t.bonuses for t in totals]})

    async def claim_charges(self, business_date: date, now: datetime, limit: int) -> list[dict]:
        rows = await self.session.execute(
            select(bonus_charges).where(
                bonus_charges.c.business_date == business_date, bonus_charges.c.status == ChargeStatus.PENDING,
                (bonus_charges.c.retry_at.is_(None)) | (bonus_charges.c.retry_at <= now))
            .order_by(bonus_charges.c.charge_id).limit(limit).with_for_update(skip_locked=True))
        return [dict(r) for r in rows.mappings()]

    async def primary_methods(self, client_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """client id -> (billing method id, token) of its primary method, for those that have one."""
        rows = await self.session.execute(
            select(billing_methods.c.account_id, billing_methods.c.billing_method_id, billing_methods.c.token)
            .where(billing_methods.c.account_id == _each(list(client_ids)), billing_methods.c.is_primary,
                   billing_methods.c.removed_at.is_(None)))
        return {account: (method, token) for account, method, token in rows}

    async def settle_charges(self, business_date: date, settled: list[dict[str, Any]]) -> None:
        """Record the gateway's answers and move each charge's bonuses on (charged or declined)."""
        if not settled:
            return
        await self.session.execute(
            update(bonus_charges).where(bonus_charges.c.charge_id == bindparam("b_charge_id")).values(
                status=bindparam("b_status"), billing_method_id=bindparam("b_method"),
                gateway_reference=bindparam("b_reference"), reason_code=bindparam("b_reason"),
                message=bindparam("b_message"), settled_at=bindparam("b_now"),
                attempts=bonus_charges.c.attempts + 1,
                # given up unanswered: voided by its key from now on (the gateway loop), see void_status
                void_status=bindparam("b_void_status"), retry_at=bindparam("b_void_at")),
            [{**{f"b_{k}": v for k, v in s.items() if k in ("charge_id", "status", "method", "reference", "reason",
                                                            "message", "now")},
              "b_void_status": s.get("void_status"), "b_void_at": s["now"] if s.get("void_status") else None}
             for s in settled])
        # The charges' bonuses in one statement (a charge is one client and currency of the batch).
        await self.session.execute(_SETTLE_BONUSES, {
            "business_date": business_date, "taken": BonusStatus.TAKEN,
            "clients": [s["client_id"] for s in settled], "currencies": [s["currency"] for s in settled],
            "statuses": [after(BONUS, BonusStatus.TAKEN, BonusEvent.CHARGED if s["status"] == ChargeStatus.SUCCEEDED
                               else BonusEvent.DECLINED) for s in settled],
            "charge_ids": [s["charge_id"] for s in settled], "reasons": [s["reason"] for s in settled],
            "messages": [s["message"] for s in settled]})

    async def postpone_charge(self, charge_id: str, retry_at: datetime, give_up_at: datetime, error: str) -> None:
        await self.session.execute(update(bonus_charges).where(bonus_charges.c.charge_id == charge_id).values(
            attempts=bonus_charges.c.attempts + 1, retry_at=retry_at, give_up_at=give_up_at, last_error=error[:2000]))

    async def count_outcomes(self, succeeded: list[str], failed: list[str]) -> None:
        """Consecutive failed charges per client, as for every other charge (a success resets it);
        `failed` holds only the failures that count (see domain.failed_charges)."""
        if succeeded:
            await self.session.execute(delete(client_charge_streaks).where(
                client_charge_streaks.c.client_id == _each(succeeded)))
        if failed:
            stmt = insert(client_charge_streaks)
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=["client_id"],
                set_={"consecutive_failures": client_charge_streaks.c.consecutive_failures + 1}),
                [{"client_id": c, "consecutive_failures": 1} for c in sorted(set(failed))])

    async def streaks(self, client_ids: set[str]) -> dict[str, int]:
        if not client_ids:
            return {}
        rows = await self.session.execute(select(client_charge_streaks).where(
            client_charge_streaks.c.client_id == _each(sorted(client_ids))))
        return {r.client_id: r.consecutive_failures for r in rows}

    async def pending_charges(self, business_date: date) -> int:
        return await self.session.scalar(select(func.count()).where(
            bonus_charges.c.business_date == business_date, bonus_charges.c.status == ChargeStatus.PENDING))

    async def count_failed_charges(self, business_date: date) -> int:
        return await self.session.scalar(select(func.count()).where(
            bonus_charges.c.business_date == business_date, bonus_charges.c.status == "failed"))

    async def failed_charges(self, business_date: date, after: str | None, limit: int) -> list[dict]:
        """A page of the batch's failed charges, by charge id (keyset: `after` the last id of the previous page)."""
        query = select(bonus_charges.c.charge_id, bonus_charges.c.client_id, bonus_charges.c.currency,
                       bonus_charges.c.amount, bonus_charges.c.bonuses, bonus_charges.c.reason_code,
                       bonus_charges.c.message).where(bonus_charges.c.business_date == business_date,
                                                      bonus_charges.c.status == "failed")
        if after is not None:
            query = query.where(bonus_charges.c.charge_id > after)
        return [dict(r) for r in (await self.session.execute(
            query.order_by(bonus_charges.c.charge_id).limit(limit))).mappings()]

    async def charge_results(self, business_date: date, page: int = 1000) -> AsyncIterator[ChargeResult]:
        """The batch's settled charges, streamed in pages (a server-side cursor), never loaded whole."""
        result = await self.session.stream(
            select(bonus_charges).where(bonus_charges.c.business_date == business_date)
            .order_by(bonus_charges.c.charge_id).execution_options(yield_per=page))
        async for row in result.mappings():
            yield ChargeResult(row["charge_id"], row["client_id"], row["currency"], row["amount"], row["bonuses"],
                               row["status"] == ChargeStatus.SUCCEEDED, row["reason_code"], row["message"])

    # -- history ----------------------------------------------------------------------------
    async def add_history(self, rows: list[HistoryRow], occurred_at: datetime) -> set[str]:
        """Insert the rows not recorded yet; returns the transaction ids that are new."""
        return await history_rows.add_history(self.session, rows, occurred_at)


# Statements run for each credit of up to 2,000 bonuses and each answer of up to 500, as fixed SQL on asyncpg
# (driver_sql.py): through SQLAlchemy, building and reading them cost billing more CPU than the rows themselves.
# Each move in or out of `crediting` counts itself in bonus_credit_counts, in the same statement: the only
# moves there are (domain/bonus_batch_states.py: credit, posted). A paid bonus is no longer owed: its
# `past_due_until` goes (NULL already for most, which keeps the update in place).
_MARK_PAID = """
WITH paid AS (
    UPDATE bonuses SET status = $1, settled_at = $2, past_due_until = NULL
    WHERE bonus_id = ANY($3::varchar[]) AND status = $4
    RETURNING bonus_id, contract_id, client_id, freelancer_id, amount, currency, batch_date, charge_id),
counted AS (
    UPDATE bonus_credit_counts c SET bonuses = c.bonuses + p.n
    FROM (SELECT batch_date, count(*) AS n FROM paid GROUP BY batch_date) p
    WHERE c.business_date = p.batch_date AND c.side = 'posted')
SELECT * FROM paid
"""
# "asked" read last, locked: it is what another instance's credit step changes; "posted" only grows meanwhile.
_CREDITS_IN_FLIGHT = """
SELECT asked.bonuses - posted.bonuses
FROM bonus_credit_counts posted, LATERAL (SELECT bonuses FROM bonus_credit_counts
                                           WHERE business_date = $1 AND side = 'asked' FOR UPDATE) asked
WHERE posted.business_date = $1 AND posted.side = 'posted'
"""
# The charges are chosen in charge order, as many as `limit` bonuses need by their counts (each has one at least,
# so `limit` charges are always enough), then locked, those another instance holds skipped (locking all `limit`
# first wrote a lock into 2,000 rows to use about 100); their charged bonuses are found by (batch, client,
# currency), the index a charge's bonuses share, and updated where they were read (by row address: no second
# look-up by id). The UPDATE checks each bonus's status again once it holds its row (following it to its newest
# version if it moved meanwhile): an older instance's credit step (by status) may have asked it, and nothing is
# asked twice.
_ASK_CREDITS = """
WITH chosen AS (
    SELECT charge_id FROM (
        SELECT charge_id, sum(bonuses) OVER (ORDER BY charge_id) - bonuses AS before FROM (
            SELECT charge_id, bonuses FROM bonus_charges
            WHERE business_date = $1 AND status = $6 AND followed_up_at IS NULL
            ORDER BY charge_id LIMIT $3) first) c
    WHERE before < $3),
charges AS (
    SELECT charge_id, client_id, currency FROM bonus_charges
    WHERE charge_id = ANY(ARRAY(SELECT charge_id FROM chosen)) AND followed_up_at IS NULL
    ORDER BY charge_id FOR UPDATE SKIP LOCKED),
due AS (
    SELECT b.ctid AS row, b.bonus_id, c.charge_id, row_number() OVER (ORDER BY c.charge_id, b.bonus_id) AS n
    FROM charges c JOIN bonuses b ON b.batch_date = $1 AND b.client_id = c.client_id AND b.currency = c.currency
                                 AND b.charge_id = c.charge_id
    WHERE b.status = $2),
moved AS (
    UPDATE bonuses b SET status = $4 FROM due
    WHERE due.n <= $3 AND b.ctid = due.row AND b.status = $2
    RETURNING b.bonus_id, b.contract_id, b.client_id, b.freelancer_id, b.amount, b.currency, due.charge_id),
followed AS (
    UPDATE bonus_charges SET followed_up_at = $5
    WHERE charge_id IN (SELECT charge_id FROM charges EXCEPT SELECT charge_id FROM due WHERE n > $3)),
counted AS (
    UPDATE bonus_credit_counts SET bonuses = bonuses + (SELECT count(*) FROM moved)
    WHERE business_date = $1 AND side = 'asked' AND EXISTS (SELECT FROM moved))
SELECT * FROM moved
"""
# A charge not followed up (pending, or settled with bonuses still to move on) or a credit not answered.
_ANY_UNSETTLED = """
SELECT EXISTS (SELECT FROM bonus_charges WHERE business_date = $1 AND followed_up_at IS NULL)
    OR coalesce((SELECT sum(CASE side WHEN 'asked' THEN bonuses ELSE -bonuses END) FROM bonus_credit_counts
                 WHERE business_date = $1), 0) > 0
"""


# Totals of one chunk are unique per charge (domain.bonus_batch.charge_totals merges them), as ON CONFLICT
# DO UPDATE requires of one statement.
_ADD_TO_CHARGES = text("""
INSERT INTO bonus_charges (charge_id, idempotency_key, business_date, charge_date, client_id, currency, amount,
                           bonuses, status)
SELECT t.charge_id, t.idempotency_key, :business_date, :charge_date, t.client_id, t.currency, t.amount, t.bonuses,
       :status
FROM unnest(CAST(:ids AS varchar[]), CAST(:keys AS varchar[]), CAST(:clients AS varchar[]),
            CAST(:currencies AS varchar[]), CAST(:amounts AS bigint[]), CAST(:counts AS integer[]))
     AS t(charge_id, idempotency_key, client_id, currency, amount, bonuses)
ON CONFLICT (charge_id) DO UPDATE SET amount = bonus_charges.amount + excluded.amount,
                                      bonuses = bonus_charges.bonuses + excluded.bonuses
""")

_SETTLE_BONUSES = text("""
UPDATE bonuses AS b SET status = t.status, charge_id = t.charge_id, reason_code = t.reason, message = t.message
FROM unnest(CAST(:clients AS varchar[]), CAST(:currencies AS varchar[]), CAST(:statuses AS varchar[]),
            CAST(:charge_ids AS varchar[]), CAST(:reasons AS varchar[]), CAST(:messages AS text[]))
     AS t(client_id, currency, status, charge_id, reason, message)
WHERE b.batch_date = :business_date AND b.client_id = t.client_id AND b.currency = t.currency
  AND b.status = :taken
""")
