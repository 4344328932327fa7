"""Reads and appends the ledger inside the unit of work's transaction."""

from dataclasses import dataclass

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain import ledger
from ..domain.ledger import Account, TransactionId
from .tables import account_balances, escrow_contracts, holdings, ledger_transactions, postings

_BALANCE_KEY = (account_balances.c.kind, account_balances.c.owner_id, account_balances.c.sub_id,
                account_balances.c.currency)


@dataclass(frozen=True)
class LedgerTransaction:
    tx: TransactionId
    contract_id: str
    milestone_id: str | None
    postings: list[ledger.Posting]


def _account_values(prefix: str, account: Account) -> dict[str, str]:
    return {f"{prefix}kind": account.kind, f"{prefix}owner_id": account.owner, f"{prefix}sub_id": account.sub}


def _account_of(row, prefix: str) -> Account:
    return Account(row[f"{prefix}kind"], row[f"{prefix}owner_id"], row[f"{prefix}sub_id"], row["currency"])


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def has_transaction(self, tx: TransactionId) -> bool:
        found = await self.session.scalar(select(ledger_transactions.c.transaction_id).where(
            ledger_transactions.c.kind == tx.kind, ledger_transactions.c.transaction_id == tx.id))
        return found is not None

    async def already_posted(self, kind: str, transaction_ids: list[str]) -> set[str]:
        return set(await self.session.scalars(select(ledger_transactions.c.transaction_id).where(
            ledger_transactions.c.kind == kind, ledger_transactions.c.transaction_id.in_(transaction_ids))))

    async def contract_currency(self, contract_id: str) -> str | None:
        return await self.session.scalar(
            select(escrow_contracts.c.currency).where(escrow_contracts.c.contract_id == contract_id))

    async def open_contract(self, contract_id: str, client_id: str, currency: str) -> None:
        await self.session.execute(insert(escrow_contracts).values(
            contract_id=contract_id, client_id=client_id, currency=currency).on_conflict_do_nothing())

    async def append(self, tx: TransactionId, contract_id: str, milestone_id: str | None,
                     new_postings: list[ledger.Posting]) -> None:
        await self.append_all([LedgerTransaction(tx, contract_id, milestone_id, new_postings)])

    async def append_all(self, transactions: list[LedgerTransaction]) -> None:
        """Append balanced ledger transactions and move the running balances with them, in a handful of
        statements whatever their number; none of them may overdraw an account."""
        if not transactions:
            return
        touched = sorted({a for t in transactions for p in t.postings for a in (p.debit_account, p.credit_account)})
        # Locked in a fixed order so two transactions touching the same accounts cannot deadlock.
        rows = await self.session.execute(
            select(*_BALANCE_KEY, account_balances.c.balance)
            .where(tuple_(*_BALANCE_KEY).in_([(a.kind, a.owner, a.sub, a.currency) for a in touched]))
            .order_by(*_BALANCE_KEY).with_for_update())
        balances = {Account(kind, owner, sub, currency): balance for kind, owner, sub, currency, balance in rows}
        balances = ledger.apply_all(balances, [t.postings for t in transactions])
        await self.session.execute(insert(ledger_transactions), [
            {"kind": t.tx.kind, "transaction_id": t.tx.id, "contract_id": t.contract_id,
             "milestone_id": t.milestone_id} for t in transactions])
        await self.session.execute(insert(postings), [
            {"transaction_kind": t.tx.kind, "transaction_id": t.tx.id, "leg": leg, "posting_id": p.posting_id,
             **_account_values("debit_", p.debit_account), **_account_values("credit_", p.credit_account),
             "amount": p.amount, "currency": p.currency}
            for t in transactions for leg, p in enumerate(t.postings)])
        upsert = insert(account_balances)
        await self.session.execute(
            upsert.on_conflict_do_update(index_elements=[c.name for c in _BALANCE_KEY],
                                         set_={"balance": upsert.excluded.balance}),
            [{"kind": a.kind, "owner_id": a.owner, "sub_id": a.sub, "currency": a.currency, "balance": balances[a]}
             for a in touched])

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

    async def everything(self) -> tuple[list[ledger.Posting], dict[Account, int], dict[Account, int]]:
        """All postings, stored balances and what milestones hold: the ledger check's inputs."""
        all_postings = [
            ledger.Posting(r["posting_id"], _account_of(r, "debit_"), _account_of(r, "credit_"), r["amount"],
                           r["currency"])
            for r in (await self.session.execute(select(postings))).mappings()
        ]
        stored = {Account(kind, owner, sub, currency): balance
                  for kind, owner, sub, currency, balance in await self.session.execute(
                      select(*_BALANCE_KEY, account_balances.c.balance))}
        held = {
            ledger.escrow(c, m, cur): h for c, m, cur, h in await self.session.execute(
                select(holdings.c.contract_id, holdings.c.milestone_id, holdings.c.currency,
                       holdings.c.funded - holdings.c.released - holdings.c.refunded))
        }
        return all_postings, stored, held
