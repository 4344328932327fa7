"""Posts many bonuses at once: one ledger transaction each, written with a handful of statements in all."""

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain import ledger
from .tables import account_balances, ledger_transactions, postings


def _each(values: list[str]):
    """`= ANY(:array)`: one statement text whatever the number of values (IN would make one per count)."""
    return any_(bindparam("values", values, type_=ARRAY(String)))


class BonusLedger:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def already_posted(self, transaction_ids: list[str]) -> set[str]:
        return set(await self.session.scalars(select(ledger_transactions.c.transaction_id).where(
            ledger_transactions.c.transaction_id == _each(transaction_ids))))

    async def append_all(self, transactions: list[tuple[str, str, list[ledger.Posting]]]) -> None:
        """(transaction id, contract id, postings) each; balances move with them in this DB transaction."""
        if not transactions:
            return
        every = [p for _, _, ps in transactions for p in ps]
        currency_of = {a: p.currency for p in every for a in (p.debit_account, p.credit_account)}
        touched = sorted(currency_of)
        # Locked in a fixed order, as LedgerRepository.append does, so writers cannot deadlock each other.
        rows = await self.session.execute(
            select(account_balances.c.account, account_balances.c.balance)
            .where(account_balances.c.account == _each(touched)).order_by(account_balances.c.account)
            .with_for_update())
        balances = {account: balance for account, balance in rows}
        for _, _, ps in transactions:  # each transaction on its own: none may overdraw an account
            balances = ledger.apply(balances, ps)
        await self.session.execute(insert(ledger_transactions), [
            {"transaction_id": tx, "kind": "bonus", "contract_id": contract, "milestone_id": None}
            for tx, contract, _ in transactions])
        await self.session.execute(insert(postings), [
            {"posting_id": p.posting_id, "transaction_id": tx, "debit_account": p.debit_account,
             "credit_account": p.credit_account, "amount": p.amount, "currency": p.currency}
            for tx, _, ps in transactions for p in ps])
        upsert = insert(account_balances)
        await self.session.execute(
            upsert.on_conflict_do_update(index_elements=["account"], set_={"balance": upsert.excluded.balance}),
            [{"account": a, "currency": currency_of[a], "balance": balances[a]} for a in touched])
