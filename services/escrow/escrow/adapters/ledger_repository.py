"""Reads and appends the ledger inside the unit of work's transaction."""

from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.driver_sql import Fixed

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


@dataclass(frozen=True)
class Funding:
    """What a hold puts into its contract's milestones' holdings (milestone id -> amount)."""

    contract_id: str
    currency: str
    by_milestone: dict[str, int]


def _account_values(prefix: str, account: Account) -> dict[str, str]:
    return {f"{prefix}kind": account.kind, f"{prefix}owner_id": account.owner, f"{prefix}sub_id": account.sub}


def _account_of(row, prefix: str) -> Account:
    return Account(row[f"{prefix}kind"], row[f"{prefix}owner_id"], row[f"{prefix}sub_id"], row["currency"])


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_all(self, transactions: list[LedgerTransaction]) -> list[LedgerTransaction]:
        """`claim` of many in one statement: those recorded now, their postings to follow (`post`); one recorded
        already (its step again) is left out. A concurrent claim of the same id waits for this transaction."""
        if not transactions:
            return []
        rows = await _CLAIM_ALL.fetch(self.session, {
            "kind": [t.tx.kind for t in transactions], "transaction_id": [t.tx.id for t in transactions],
            "contract_id": [t.contract_id for t in transactions],
            "milestone_id": [t.milestone_id for t in transactions]})
        claimed = {row["transaction_id"] for row in rows}
        return [t for t in transactions if t.tx.id in claimed]

    async def claim(self, tx: TransactionId, contract_id: str, milestone_id: str | None) -> bool:
        """The ledger transaction recorded for this step, its postings to follow (`post`); False if it was
        recorded already (the step again: one effect per step). A concurrent claim of the same id waits for
        this transaction, then finds it taken."""
        return await _CLAIM.fetchval(self.session, {
            "kind": tx.kind, "transaction_id": tx.id, "contract_id": contract_id,
            "milestone_id": milestone_id}) is not None

    async def open_fund(self, tx: TransactionId, contract_id: str, client_id: str, currency: str) -> tuple[bool, str]:
        """`claim` of a hold, and the contract's escrow opened in the hold's currency unless it is open already,
        in one statement: (claimed, the contract's currency)."""
        row = await _OPEN_FUND.fetchrow(self.session, {
            "kind": tx.kind, "transaction_id": tx.id, "contract_id": contract_id, "client_id": client_id,
            "currency": currency})
        return row["claimed"], row["currency"]

    async def contract_currency(self, contract_id: str) -> str | None:
        return await self.session.scalar(
            select(escrow_contracts.c.currency).where(escrow_contracts.c.contract_id == contract_id))

    async def append(self, tx: TransactionId, contract_id: str, milestone_id: str | None,
                     new_postings: list[ledger.Posting]) -> None:
        await self.append_all([LedgerTransaction(tx, contract_id, milestone_id, new_postings)])

    async def append_all(self, transactions: list[LedgerTransaction]) -> None:
        """Append balanced ledger transactions and move the running balances with them, in three statements
        whatever their number; none of them may overdraw an account."""
        if not transactions:
            return
        await _ADD_TRANSACTIONS.execute(self.session, {
            "kind": [t.tx.kind for t in transactions], "transaction_id": [t.tx.id for t in transactions],
            "contract_id": [t.contract_id for t in transactions],
            "milestone_id": [t.milestone_id for t in transactions]})
        await self.post(transactions)

    async def post(self, transactions: list[LedgerTransaction], funding: Funding | None = None) -> None:
        """The postings of ledger transactions recorded already (`claim`, `append_all`), the running balances they
        move and, for a hold, the money into its milestones' holdings, in one statement; refuses (Rejected, the
        caller's savepoint rolls back) if one overdraws."""
        legs = [(t.tx, leg, p) for t in transactions for leg, p in enumerate(t.postings)]
        if not legs:
            return
        moved = ledger.balances(p for _, _, p in legs)
        touched = sorted(moved)  # locked in a fixed order, so two transactions cannot deadlock on them
        posting_columns = {
            "transaction_kind": [tx.kind for tx, _, _ in legs], "transaction_id": [tx.id for tx, _, _ in legs],
            "leg": [leg for _, leg, _ in legs], "posting_id": [p.posting_id for _, _, p in legs],
            **{f"{side}_{field}": [getattr(getattr(p, f"{side}_account"), attr) for _, _, p in legs]
               for side in ("debit", "credit") for field, attr in _ACCOUNT_FIELDS},
            "amount": [p.amount for _, _, p in legs], "currency": [p.currency for _, _, p in legs]}
        balance_columns = {"b_kind": [a.kind for a in touched], "b_owner_id": [a.owner for a in touched],
                           "b_sub_id": [a.sub for a in touched], "b_currency": [a.currency for a in touched],
                           "b_delta": [moved[a] for a in touched]}
        if funding is None:
            rows = await _POST.fetch(self.session, posting_columns | balance_columns)
        else:
            milestones = sorted(funding.by_milestone)
            rows = await _POST_AND_FUND.fetch(self.session, posting_columns | balance_columns | {
                "f_contract_id": funding.contract_id, "f_currency": funding.currency, "f_milestone_id": milestones,
                "f_funded": [funding.by_milestone[m] for m in milestones]})
        after = {Account(kind, owner, sub, currency): balance for kind, owner, sub, currency, balance in rows}
        before = {a: after[a] - moved[a] for a in touched}
        # The domain's rule, on the balances as they were: refused if any transaction, in turn, overdraws.
        ledger.apply_all(before, [t.postings for t in transactions])

    async def held(self, contract_id: str, milestone_id: str) -> int:
        """What a milestone holds, locked until this transaction ends."""
        return await _HELD.fetchval(self.session, {"contract_id": contract_id, "milestone_id": milestone_id}) or 0

    async def take_from_holding(self, contract_id: str, milestone_id: str, *, released: int = 0,
                                refunded: int = 0) -> None:
        # An UPDATE, not an upsert: PostgreSQL checks the candidate insert row's CHECK constraint first.
        await _TAKE_FROM_HOLDING.execute(self.session, {
            "b_contract_id": contract_id, "b_milestone_id": milestone_id, "b_released": released,
            "b_refunded": refunded})

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


# -- statements built once (building one costs more CPU than running it); arrays unnested, so one text serves
# any number of rows ------------------------------------------------------------------------------------------
_ACCOUNT_FIELDS = (("kind", "kind"), ("owner_id", "owner"), ("sub_id", "sub"))


def _arrays(**types) -> list:
    return [bindparam(name, type_=ARRAY(type_)) for name, type_ in types.items()]


# The ledger's statements, each compiled once and run on the transaction's asyncpg connection (driver_sql.Fixed):
# every hold, release, refund and bonus posting runs them.
_CLAIM = Fixed.of(insert(ledger_transactions).values(
    kind=bindparam("kind"), transaction_id=bindparam("transaction_id"), contract_id=bindparam("contract_id"),
    milestone_id=bindparam("milestone_id", type_=String)).on_conflict_do_nothing()
    .returning(ledger_transactions.c.transaction_id))

# The contract is opened by the hold that claims its transaction; the outer SELECT sees the table as it was
# before this statement, so exactly one of its two branches names the contract's currency.
_OPEN_FUND = Fixed.of(text("""
WITH claimed AS (
    INSERT INTO ledger_transactions (kind, transaction_id, contract_id)
    VALUES (:kind, :transaction_id, :contract_id) ON CONFLICT DO NOTHING RETURNING transaction_id),
opened AS (
    INSERT INTO escrow_contracts (contract_id, client_id, currency)
    SELECT :contract_id, :client_id, :currency WHERE EXISTS (SELECT FROM claimed)
    ON CONFLICT DO NOTHING RETURNING currency)
SELECT EXISTS (SELECT FROM claimed) AS claimed,
       coalesce((SELECT currency FROM opened),
                (SELECT currency FROM escrow_contracts WHERE contract_id = :contract_id)) AS currency
""").bindparams(*(bindparam(n, type_=String) for n in ("kind", "transaction_id", "contract_id", "client_id",
                                                        "currency"))))

_ADD_TRANSACTIONS = Fixed.of(text(
    "INSERT INTO ledger_transactions (kind, transaction_id, contract_id, milestone_id) "
    "SELECT * FROM unnest(:kind, :transaction_id, :contract_id, :milestone_id)"
).bindparams(*_arrays(kind=String, transaction_id=String, contract_id=String, milestone_id=String)))

# Kinds are not mixed in one call (the bonuses'), so the transaction id alone names what was claimed.
_CLAIM_ALL = Fixed.of(text(
    "INSERT INTO ledger_transactions (kind, transaction_id, contract_id, milestone_id) "
    "SELECT * FROM unnest(:kind, :transaction_id, :contract_id, :milestone_id) "
    "ON CONFLICT DO NOTHING RETURNING transaction_id"
).bindparams(*_arrays(kind=String, transaction_id=String, contract_id=String, milestone_id=String)))

_POSTING_COLUMNS = ("transaction_kind", "transaction_id", "leg", "posting_id", "debit_kind", "debit_owner_id",
                    "debit_sub_id", "credit_kind", "credit_owner_id", "credit_sub_id", "amount", "currency")
_POSTINGS = f"""new_postings AS (
    INSERT INTO postings ({', '.join(_POSTING_COLUMNS)})
    SELECT * FROM unnest({', '.join(':' + c for c in _POSTING_COLUMNS)}))"""
_FUNDED = """funded AS (
    INSERT INTO holdings (contract_id, milestone_id, currency, funded)
    SELECT :f_contract_id, milestone_id, :f_currency, amount
    FROM unnest(:f_milestone_id, :f_funded) AS f (milestone_id, amount)
    ON CONFLICT (contract_id, milestone_id) DO UPDATE SET funded = holdings.funded + excluded.funded)"""
# The balances of the accounts the postings touch, moved by their net amounts (rows made at 0 where new), in the
# order given; the balances after come back for the overdraft check.
_BALANCES = """INSERT INTO account_balances (kind, owner_id, sub_id, currency, balance)
SELECT kind, owner_id, sub_id, currency, delta
FROM unnest(:b_kind, :b_owner_id, :b_sub_id, :b_currency, :b_delta)
     WITH ORDINALITY AS moved (kind, owner_id, sub_id, currency, delta, n)
ORDER BY n
ON CONFLICT (kind, owner_id, sub_id, currency) DO UPDATE SET balance = account_balances.balance + excluded.balance
RETURNING kind, owner_id, sub_id, currency, balance"""
_POST_PARAMS = (*_arrays(**{c: Integer if c == "leg" else BigInteger if c == "amount" else String
                            for c in _POSTING_COLUMNS}),
                *_arrays(b_kind=String, b_owner_id=String, b_sub_id=String, b_currency=String, b_delta=BigInteger))
_POST = Fixed.of(text(f"WITH {_POSTINGS}\n{_BALANCES}").bindparams(*_POST_PARAMS))
_POST_AND_FUND = Fixed.of(text(f"WITH {_POSTINGS},\n{_FUNDED}\n{_BALANCES}").bindparams(
    *_POST_PARAMS, bindparam("f_contract_id", type_=String), bindparam("f_currency", type_=String),
    *_arrays(f_milestone_id=String, f_funded=BigInteger)))

_HELD = Fixed.of(select(holdings.c.funded - holdings.c.released - holdings.c.refunded)
                 .where(holdings.c.contract_id == bindparam("contract_id"),
                        holdings.c.milestone_id == bindparam("milestone_id"))
                 .with_for_update())
_TAKE_FROM_HOLDING = Fixed.of(update(holdings).where(
    holdings.c.contract_id == bindparam("b_contract_id"),
    holdings.c.milestone_id == bindparam("b_milestone_id")).values(
    released=holdings.c.released + bindparam("b_released", type_=BigInteger),
    refunded=holdings.c.refunded + bindparam("b_refunded", type_=BigInteger)))
