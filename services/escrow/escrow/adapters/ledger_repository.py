"""Reads and appends the ledger inside the unit of work's transaction."""

from dataclasses import dataclass

import asyncpg
from sqlalchemy import BigInteger, Integer, String, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.driver_sql import Fixed, write_together
from platform_runtime.errors import IsolationNeeded, Rejected

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

    async def hold(self, tx: TransactionId, client_id: str, postings: list[ledger.Posting],
                   funding: Funding) -> tuple[bool, str] | None:
        """A hold in one statement: its ledger transaction claimed, the contract's escrow opened in the hold's
        currency unless it is open already, and, when the claim is new and the currencies agree, the postings,
        the balances they move and the money into the milestones' holdings. Answers (claimed, the contract's
        currency); refuses (Rejected, the caller's savepoint rolls back) if a posting overdraws.

        In a batch that leaves writes for later (driver_sql.write_together) the hold goes with the batch's others,
        a run of holds in one statement (_Holds), and answers None: it is taken as claimed, in its own currency
        and within funds, and a batch where one is not is handled again, each hold at once (a step sent again, a
        currency mismatch, an overdraft)."""
        held = _Hold(LedgerTransaction(tx, funding.contract_id, None, postings), client_id, funding)
        row = await write_together(self.session, _HOLDS, held)
        if row is None:
            return None
        if row["claimed"] and row["currency"] == funding.currency:
            _refuse_overdraft(_balances_after(row), ledger.balances(postings), [postings])
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

    async def post(self, transactions: list[LedgerTransaction]) -> None:
        """The postings of ledger transactions recorded already (`claim`, `append_all`) and the running balances
        they move, in one statement; refuses (Rejected, the caller's savepoint rolls back) if one overdraws."""
        legs = [p for t in transactions for p in t.postings]
        if not legs:
            return
        moved = ledger.balances(legs)
        rows = await _POST.fetch(self.session, _posting_columns(transactions) | _balance_columns(_lock_order(moved), moved))
        after = {Account(kind, owner, sub, currency): balance for kind, owner, sub, currency, balance in rows}
        _refuse_overdraft(after, moved, [t.postings for t in transactions])

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


def _posting_columns(transactions: list[LedgerTransaction]) -> dict[str, list]:
    legs = [(t.tx, leg, p) for t in transactions for leg, p in enumerate(t.postings)]
    return {"transaction_kind": [tx.kind for tx, _, _ in legs], "transaction_id": [tx.id for tx, _, _ in legs],
            "leg": [leg for _, leg, _ in legs], "posting_id": [p.posting_id for _, _, p in legs],
            **{f"{side}_{field}": [getattr(getattr(p, f"{side}_account"), attr) for _, _, p in legs]
               for side in ("debit", "credit") for field, attr in _ACCOUNT_FIELDS},
            "amount": [p.amount for _, _, p in legs], "currency": [p.currency for _, _, p in legs]}


def _lock_order(moved: dict[Account, int]) -> list[Account]:
    """The order a statement locks its accounts' balances in: the gateway's (money outside the platform, moved by
    every hold, refund and charge) first, then the others sorted. Sorted alone, two statements could not deadlock,
    but a transaction runs several (a batch's holds): one that held the gateway from its first hold could wait
    for a client's balance that another batch had locked on its way to the gateway. Taken first, the gateway is
    a queue: a batch that touches it holds no balance until it has it."""
    return sorted(moved, key=lambda account: (account.kind != ledger.GATEWAY, account))


def _balance_columns(touched: list[Account], moved: dict[Account, int]) -> dict[str, list]:
    """The accounts' balances to move, in the order given: the order their rows are locked in (`_lock_order`)."""
    return {"b_kind": [a.kind for a in touched], "b_owner_id": [a.owner for a in touched],
            "b_sub_id": [a.sub for a in touched], "b_currency": [a.currency for a in touched],
            "b_delta": [moved[a] for a in touched]}


def _balances_after(row) -> dict[Account, int]:
    """The balances a hold's postings left, from its answer's arrays (none when nothing was posted)."""
    columns = (row[f"b_{c}"] or () for c in ("kind", "owner_id", "sub_id", "currency", "balance"))
    return {Account(kind, owner, sub, currency): balance for kind, owner, sub, currency, balance in zip(*columns)}


def _refuse_overdraft(after: dict[Account, int], moved: dict[Account, int],
                      transactions: list[list[ledger.Posting]]) -> None:
    """The domain's rule on the balances as they were before the postings (those after, less what the postings
    moved): refused (Rejected, the caller's savepoint rolls back) if any transaction, in turn, overdraws."""
    ledger.apply_all({a: after[a] - moved[a] for a in moved}, transactions)


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
# The postings' CTE, open: `)` closes it, after a guard if it has one.
_POSTINGS = f"""new_postings AS (
    INSERT INTO postings ({', '.join(_POSTING_COLUMNS)})
    SELECT * FROM unnest({', '.join(':' + c for c in _POSTING_COLUMNS)})"""
# The balances of the accounts the postings touch, moved by their net amounts (rows made at 0 where new), in the
# order given; the balances after come back for the overdraft check.
_BALANCES = """INSERT INTO account_balances (kind, owner_id, sub_id, currency, balance)
SELECT kind, owner_id, sub_id, currency, delta
FROM unnest(:b_kind, :b_owner_id, :b_sub_id, :b_currency, :b_delta)
     WITH ORDINALITY AS moved (kind, owner_id, sub_id, currency, delta, n) {guard}
ORDER BY n
ON CONFLICT (kind, owner_id, sub_id, currency) DO UPDATE SET balance = account_balances.balance + excluded.balance
RETURNING kind, owner_id, sub_id, currency, balance"""
_POST_PARAMS = (*_arrays(**{c: Integer if c == "leg" else BigInteger if c == "amount" else String
                            for c in _POSTING_COLUMNS}),
                *_arrays(b_kind=String, b_owner_id=String, b_sub_id=String, b_currency=String, b_delta=BigInteger))
_POST = Fixed.of(text(f"WITH {_POSTINGS})\n{_BALANCES.format(guard='')}").bindparams(*_POST_PARAMS))
# A hold (LedgerRepository.hold): claimed; the contract opened by the hold that claims it (the final SELECT
# sees the table as it was before this statement, so exactly one of its two branches names the contract's
# currency); posted, funded and balanced only when the claim is new and the currencies agree. One row answers:
# the claim, the currency, the balances after (arrays, for the overdraft check; none when nothing was posted).
_HOLD = Fixed.of(text(f"""WITH claimed AS (
    INSERT INTO ledger_transactions (kind, transaction_id, contract_id)
    VALUES (:tx_kind, :tx_id, :contract_id) ON CONFLICT DO NOTHING RETURNING transaction_id),
opened AS (
    INSERT INTO escrow_contracts (contract_id, client_id, currency)
    SELECT :contract_id, :client_id, :hold_currency WHERE EXISTS (SELECT FROM claimed)
    ON CONFLICT DO NOTHING RETURNING currency),
held_in AS (
    SELECT coalesce((SELECT currency FROM opened),
                    (SELECT currency FROM escrow_contracts WHERE contract_id = :contract_id)) AS currency),
go AS (SELECT FROM held_in WHERE currency = :hold_currency AND EXISTS (SELECT FROM claimed)),
{_POSTINGS} WHERE EXISTS (SELECT FROM go)),
funded AS (
    INSERT INTO holdings (contract_id, milestone_id, currency, funded)
    SELECT :contract_id, milestone_id, :hold_currency, amount
    FROM unnest(:f_milestone_id, :f_funded) AS f (milestone_id, amount) WHERE EXISTS (SELECT FROM go)
    ON CONFLICT (contract_id, milestone_id) DO UPDATE SET funded = holdings.funded + excluded.funded),
balances AS (
{_BALANCES.format(guard="WHERE EXISTS (SELECT FROM go)")})
SELECT EXISTS (SELECT FROM claimed) AS claimed, (SELECT currency FROM held_in) AS currency,
       {", ".join(f"array_agg(b.{c}) FILTER (WHERE b.kind IS NOT NULL) AS b_{c}"
                  for c in ("kind", "owner_id", "sub_id", "currency", "balance"))}
FROM (SELECT) AS one LEFT JOIN balances b ON TRUE
""").bindparams(*(bindparam(n, type_=String) for n in ("tx_kind", "tx_id", "contract_id", "client_id",
                                                        "hold_currency")),
                *_POST_PARAMS, *_arrays(f_milestone_id=String, f_funded=BigInteger)))

_HELD = Fixed.of(select(holdings.c.funded - holdings.c.released - holdings.c.refunded)
                 .where(holdings.c.contract_id == bindparam("contract_id"),
                        holdings.c.milestone_id == bindparam("milestone_id"))
                 .with_for_update())
_TAKE_FROM_HOLDING = Fixed.of(update(holdings).where(
    holdings.c.contract_id == bindparam("b_contract_id"),
    holdings.c.milestone_id == bindparam("b_milestone_id")).values(
    released=holdings.c.released + bindparam("b_released", type_=BigInteger),
    refunded=holdings.c.refunded + bindparam("b_refunded", type_=BigInteger)))


# -- a run of holds in one statement ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Hold:
    transaction: LedgerTransaction
    client_id: str
    funding: Funding


def _hold_params(held: _Hold) -> dict:
    """`_HOLD`'s parameters for one hold."""
    moved = ledger.balances(held.transaction.postings)
    milestones = sorted(held.funding.by_milestone)
    return {"tx_kind": held.transaction.tx.kind, "tx_id": held.transaction.tx.id,
            "contract_id": held.funding.contract_id, "client_id": held.client_id,
            "hold_currency": held.funding.currency, **_posting_columns([held.transaction]),
            **_balance_columns(_lock_order(moved), moved),
            "f_milestone_id": milestones, "f_funded": [held.funding.by_milestone[m] for m in milestones]}


class _Holds:
    """A batch's holds left for later (driver_sql.write_together), a run of them written by one statement instead
    of one `_HOLD` each: the claims, the contracts opened, the postings, the holdings and the balances, each table
    once. The balances move by what all the holds move, summed per account (the gateway's row once, not once a
    hold) and locked in `_lock_order`, gateway first, as a lone hold locks them. Each hold is taken for granted as
    a hold left for later is: claimed (its step not seen before), in its contract's currency, within funds. One
    that is not shows in the statement's answer (a step again posts nothing: only the postings of transactions
    claimed now are written), and the batch is handled again, one savepoint each (IsolationNeeded), where each
    hold runs alone and is answered or refused."""

    merge_from = 2  # one hold alone: its own statement, which costs as much (bench.escrow_cpu --batch 1)
    gathered = False  # see driver_sql.Together

    def alone(self, held: _Hold) -> tuple:
        """`_HOLD` for this hold, taken as claimed, in its own currency and within funds, as a hold left for later."""
        postings = held.transaction.postings

        def as_taken(row) -> bool:
            if not row["claimed"] or row["currency"] != held.funding.currency:
                return False
            try:
                _refuse_overdraft(_balances_after(row), ledger.balances(postings), [postings])
            except Rejected:
                return False
            return True

        return _HOLD.sql, tuple(_HOLD.args(_hold_params(held))), as_taken

    async def write_all(self, driver: asyncpg.Connection, holds: list[_Hold]) -> None:
        if len({h.transaction.tx for h in holds}) < len(holds):  # a step twice in one batch: the second is "again"
            raise IsolationNeeded("a hold's step came twice in one batch")
        row = await driver.fetchrow(_HOLDS_SQL.sql, *holds_arguments(holds))
        if row["claimed"] != len(holds) or row["mismatched"]:
            raise IsolationNeeded("a hold left for later was not new, or not in its contract's currency")
        transactions = [h.transaction.postings for h in holds]
        try:
            _refuse_overdraft(_balances_after(row), ledger.balances(p for t in transactions for p in t), transactions)
        except Rejected:
            raise IsolationNeeded("a hold left for later overdrew an account") from None


def holds_arguments(holds: list[_Hold]) -> list:
    """`_HOLDS_SQL`'s arguments for a run of holds: one array per column of each table, the holdings summed per
    milestone and the balances per account."""
    transactions = [h.transaction for h in holds]
    moved = ledger.balances(p for t in transactions for p in t.postings)
    opened: dict[str, _Hold] = {}
    funded: dict[tuple[str, str], list] = {}
    for h in holds:
        opened.setdefault(h.funding.contract_id, h)  # the first hold of a contract opens it, as it would alone
        for milestone, amount in h.funding.by_milestone.items():
            funded.setdefault((h.funding.contract_id, milestone), [h.funding.currency, 0])[1] += amount
    by_key = sorted(funded)
    return _HOLDS_SQL.args({
        "h_kind": [t.tx.kind for t in transactions], "h_id": [t.tx.id for t in transactions],
        "h_contract_id": [h.funding.contract_id for h in holds], "h_currency": [h.funding.currency for h in holds],
        "o_contract_id": list(opened), "o_client_id": [h.client_id for h in opened.values()],
        "o_currency": [h.funding.currency for h in opened.values()],
        **_posting_columns(transactions), **_balance_columns(_lock_order(moved), moved),
        "f_contract_id": [c for c, _ in by_key], "f_milestone_id": [m for _, m in by_key],
        "f_currency": [funded[k][0] for k in by_key], "f_funded": [funded[k][1] for k in by_key]})


_HOLDS = _Holds()
# The final SELECT sees the tables as they were before the statement: a contract's currency is the one this
# statement opened it in, or the one it had.
_HOLDS_SQL = Fixed.of(text(f"""WITH claimed AS (
    INSERT INTO ledger_transactions (kind, transaction_id, contract_id)
    SELECT * FROM unnest(:h_kind, :h_id, :h_contract_id)
    ON CONFLICT DO NOTHING RETURNING kind, transaction_id),
opened AS (
    INSERT INTO escrow_contracts (contract_id, client_id, currency)
    SELECT * FROM unnest(:o_contract_id, :o_client_id, :o_currency)
    ON CONFLICT DO NOTHING RETURNING contract_id, currency),
{_POSTINGS} AS p ({", ".join(_POSTING_COLUMNS)})
    WHERE (p.transaction_kind, p.transaction_id) IN (SELECT kind, transaction_id FROM claimed)),
funded AS (
    INSERT INTO holdings (contract_id, milestone_id, currency, funded)
    SELECT * FROM unnest(:f_contract_id, :f_milestone_id, :f_currency, :f_funded)
    ON CONFLICT (contract_id, milestone_id) DO UPDATE SET funded = holdings.funded + excluded.funded),
balances AS (
{_BALANCES.format(guard="")})
SELECT (SELECT count(*) FROM claimed) AS claimed,
       (SELECT count(*) FROM unnest(:h_contract_id, :h_currency) AS h (contract_id, currency)
        LEFT JOIN opened o USING (contract_id) LEFT JOIN escrow_contracts e USING (contract_id)
        WHERE coalesce(o.currency, e.currency) IS DISTINCT FROM h.currency) AS mismatched,
       {", ".join(f"array_agg(b.{c}) FILTER (WHERE b.kind IS NOT NULL) AS b_{c}"
                  for c in ("kind", "owner_id", "sub_id", "currency", "balance"))}
FROM (SELECT) AS one LEFT JOIN balances b ON TRUE
""").bindparams(*_arrays(h_kind=String, h_id=String, h_contract_id=String, h_currency=String,
                         o_contract_id=String, o_client_id=String, o_currency=String),
                *_POST_PARAMS,
                *_arrays(f_contract_id=String, f_milestone_id=String, f_currency=String, f_funded=BigInteger)),
    plan_once=True)
