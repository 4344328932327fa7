"""Reads and appends the ledger inside the unit of work's transaction."""

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain import ledger
from .tables import account_balances, escrow_contracts, holdings, ledger_transactions, postings


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def has_transaction(self, transaction_id: str) -> bool:
        found = await self.session.scalar(
            select(ledger_transactions.c.transaction_id).where(ledger_transactions.c.transaction_id == transaction_id))
        return found is not None

    async def contract_currency(self, contract_id: str) -> str | None:
        return await self.session.scalar(
            select(escrow_contracts.c.currency).where(escrow_contracts.c.contract_id == contract_id))

    async def open_contract(self, contract_id: str, client_id: str, currency: str) -> None:
        await self.session.execute(insert(escrow_contracts).values(
            contract_id=contract_id, client_id=client_id, currency=currency).on_conflict_do_nothing())

    async def append(self, transaction_id: str, kind: str, contract_id: str, milestone_id: str | None,
                     new_postings: list[ledger.Posting]) -> None:
        """Append one balanced ledger transaction and move the running balances with it."""
        touched = sorted({p.debit_account for p in new_postings} | {p.credit_account for p in new_postings})
        # Locked in a fixed order so two transactions touching the same accounts cannot deadlock.
        rows = await self.session.execute(
            select(account_balances.c.account, account_balances.c.balance)
            .where(account_balances.c.account.in_(touched)).order_by(account_balances.c.account).with_for_update())
        current = {account: balance for account, balance in rows}
        changed = ledger.apply(current, new_postings)
        await self.session.execute(insert(ledger_transactions).values(
            transaction_id=transaction_id, kind=kind, contract_id=contract_id, milestone_id=milestone_id))
        await self.session.execute(insert(postings), [
            {"posting_id": p.posting_id, "transaction_id": transaction_id, "debit_account": p.debit_account,
             "credit_account": p.credit_account, "amount": p.amount, "currency": p.currency}
            for p in new_postings
        ])
        currency = new_postings[0].currency
        upsert = insert(account_balances)
        await self.session.execute(
            upsert.on_conflict_do_update(index_elements=["account"], set_={"balance": upsert.excluded.balance}),
            [{"account": a, "currency": currency, "balance": changed[a]} for a in touched],
        )

    async def held(self, contract_id: str, milestone_id: str) -> int:
        row = (await self.session.execute(
            select(holdings.c.funded - holdings.c.released - holdings.c.refunded)
            .where(holdings.c.contract_id == contract_id, holdings.c.milestone_id == milestone_id)
            .with_for_update())).scalar()
        return row or 0

    async def add_to_holding(self, contract_id: str, milestone_id: str, currency: str, *, funded: int = 0,
                             released: int = 0, refunded: int = 0) -> None:
        if funded:
            stmt = insert(holdings).values(contract_id=contract_id, milestone_id=milestone_id, currency=currency,
                                           funded=funded)
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=["contract_id", "milestone_id"], set_={"funded": holdings.c.funded + funded}))
        if released or refunded:
            # An UPDATE, not an upsert: PostgreSQL checks the candidate insert row's CHECK constraint first.
            await self.session.execute(update(holdings).where(
                holdings.c.contract_id == contract_id, holdings.c.milestone_id == milestone_id).values(
                released=holdings.c.released + released, refunded=holdings.c.refunded + refunded))

    async def escrow_of(self, contract_id: str) -> tuple[str | None, list[tuple[str, int]]]:
        currency = await self.contract_currency(contract_id)
        rows = await self.session.execute(
            select(holdings.c.milestone_id, holdings.c.funded - holdings.c.released - holdings.c.refunded)
            .where(holdings.c.contract_id == contract_id).order_by(holdings.c.milestone_id))
        return currency, [(m, held) for m, held in rows]

    async def everything(self) -> tuple[list[ledger.Posting], dict[str, int], dict[str, int]]:
        """All postings, stored balances and what milestones hold: the ledger check's inputs."""
        all_postings = [
            ledger.Posting(r.posting_id, r.debit_account, r.credit_account, r.amount, r.currency)
            for r in await self.session.execute(select(postings))
        ]
        stored = {a: b for a, b in await self.session.execute(select(account_balances.c.account,
                                                                      account_balances.c.balance))}
        held = {
            ledger.escrow(c, m): h for c, m, h in await self.session.execute(
                select(holdings.c.contract_id, holdings.c.milestone_id,
                       holdings.c.funded - holdings.c.released - holdings.c.refunded))
        }
        return all_postings, stored, held
