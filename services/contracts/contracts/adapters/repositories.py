"""Load and save the contracts service's aggregates, locked for the length of the transaction.

The hot path's statements (a fund saga's: the parties read, the saga and its contract locked, a save) are
fixed SQL on the transaction's asyncpg connection (adapters/sql.py); the rest are SQLAlchemy Core, built once
with bind parameters. A write of several rows is one statement over arrays (`unnest`), whatever the number
of rows, and a save writes only the rows that changed since the load, in one statement with what goes with
it: the saga whose step moved the contract and the statement's entries of the event being handled.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, String, any_, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.errors import Rejected

from ..domain.accounts import Account, activity_is_news
from ..domain.contracts import Contract, Milestone
from ..domain.sagas import NEEDS_ATTENTION, RUNNING, Saga
from ..domain.statement import Movement
from . import sql
from .saves_together import (
    CONTRACT_FIELDS, ENTRY_FIELDS, MILESTONE_FIELDS, SAGA_ALONE, Save, Shape, kind_of, saga_alone,
)
from .sql import compose, names, placeholders, planned_once, unnest
from .tables import accounts, milestone_history, milestones, sagas, statement_entries

_ACCOUNT_FIELDS = [c.name for c in accounts.c if c.name != "registered_at"]


@dataclass
class Preloaded:
    """A fetched batch's sagas, each locked with its contract, and those contracts' milestones: read in two
    statements before the batch's replies are handled (SagaRepository.preload), not two per reply.

    A saga is taken once, by the first handler that gets it, with its contract and milestones. Whatever a
    handler of the batch loads or saves of a contract by other means, the batch's later handlers must see as
    it left it: that contract is forgotten here (`forget`), and they read it again.
    """

    sagas: dict[str, Any] = field(default_factory=dict)  # saga id -> its row, its contract's columns joined
    milestones: dict[str, list] = field(default_factory=dict)  # contract id -> its milestone rows, in order
    _sagas_of: dict[str, list[str]] = field(default_factory=dict)  # contract id -> the saga ids above

    def add(self, saga_rows: list, milestone_rows: list) -> None:
        for row in saga_rows:
            self.sagas[row["saga_id"]] = row
            self._sagas_of.setdefault(row["contract_id"], []).append(row["saga_id"])
        for row in milestone_rows:
            self.milestones.setdefault(row["contract_id"], []).append(row)

    def take(self, saga_id: str) -> tuple[Any, list] | None:
        """The saga's row and its contract's milestone rows, if preloaded and still as the batch found them."""
        row = self.sagas.get(saga_id)
        if row is None:
            return None
        milestone_rows = self.milestones.get(row["contract_id"], [])
        self.forget(row["contract_id"])
        return row, milestone_rows

    def forget(self, contract_id: str) -> None:
        self.milestones.pop(contract_id, None)
        for saga_id in self._sagas_of.pop(contract_id, ()):
            self.sagas.pop(saga_id, None)


@dataclass
class Seen:
    """What one handler's statements read already, shared by its repositories: a contract row locked with
    its saga and, when the batch preloaded it, its milestone rows (ContractRepository.get takes them from
    there), accounts' last recorded activity (an activity recorded recently enough is not written again:
    Context.record_activity), and the batch's preloaded sagas."""

    locked_contracts: dict[str, dict] = field(default_factory=dict)
    locked_milestones: dict[str, list] = field(default_factory=dict)
    activity: dict[str, datetime | None] = field(default_factory=dict)
    batch: Preloaded = field(default_factory=Preloaded)


# -- accounts --------------------------------------------------------------------------------------

_GET_ACCOUNTS = f"SELECT {names(_ACCOUNT_FIELDS)} FROM accounts WHERE account_id = ANY($1::varchar[])"
_LOCK_ACCOUNT = f"SELECT {names(_ACCOUNT_FIELDS)} FROM accounts WHERE account_id = $1 FOR UPDATE"
# Activity of several accounts in one statement, their rows locked in one order (account id), so two
# transactions recording the same parties never deadlock; only a recorded activity older than the
# resolution ($2) is written (see activity_is_news).
_RECORD_ACTIVITY = """
UPDATE accounts SET last_activity_at = $3
WHERE account_id IN (SELECT account_id FROM accounts
                     WHERE account_id = ANY($1::varchar[]) AND (last_activity_at IS NULL OR last_activity_at < $2)
                     ORDER BY account_id FOR UPDATE)
  AND (last_activity_at IS NULL OR last_activity_at < $2)"""


def _account(row) -> Account:
    return Account(**{k: row[k] for k in _ACCOUNT_FIELDS})


def _copy(account: Account) -> Account:
    return replace(account, past_due=dict(account.past_due), past_due_versions=dict(account.past_due_versions))


class AccountRepository:
    """Accounts; unlocked reads are served from the batch's preload when it has them (`preloaded`: the accounts
    a batch of offers names, read at once by `offers.read_parties_ahead`), each a copy. An account this batch
    adds or saves is dropped from the preload, and the activity it records is recorded there too, so a later
    handler of the batch reads the account as the earlier ones left it."""

    def __init__(self, session: AsyncSession, preloaded: dict[str, Account] | None = None) -> None:
        self.session = session
        self._preloaded = preloaded if preloaded is not None else {}

    async def get(self, account_id: str, lock: bool = False) -> Account | None:
        if lock:
            row = await (await sql.driver(self.session)).fetchrow(_LOCK_ACCOUNT, account_id)
            return _account(row) if row else None
        return (await self.get_many([account_id])).get(account_id)

    async def get_many(self, account_ids: list[str]) -> dict[str, Account]:
        """The accounts of these ids that exist, unlocked, in one round trip (none if the batch read them all)."""
        found = {a: _copy(self._preloaded[a]) for a in account_ids if a in self._preloaded}
        if rest := [a for a in account_ids if a not in found]:
            rows = await (await sql.driver(self.session)).fetch(_GET_ACCOUNTS, rest)
            found.update({row["account_id"]: _account(row) for row in rows})
        return found

    async def add(self, account: Account) -> bool:
        self._preloaded.pop(account.account_id, None)
        inserted = await self.session.scalar(
            insert(accounts).values(**asdict(account)).on_conflict_do_nothing().returning(accounts.c.account_id))
        return inserted is not None

    async def save(self, account: Account) -> None:
        self._preloaded.pop(account.account_id, None)
        await self.session.execute(update(accounts).where(accounts.c.account_id == account.account_id)
                                   .values(**asdict(account)))

    async def record_activity(self, account_ids: list[str], now: datetime, resolution: timedelta) -> None:
        """Written only where the recorded activity is older than `resolution` (see activity_is_news)."""
        await sql.write_later(self.session, _RECORD_ACTIVITY, list(account_ids), now - resolution, now)
        for account_id in account_ids:  # the same rule on the batch's preload
            known = self._preloaded.get(account_id)
            if known is not None and activity_is_news(known.last_activity_at, now, resolution):
                self._preloaded[account_id] = replace(known, last_activity_at=now)


# -- contracts and their milestones ----------------------------------------------------------------

_LOCK_CONTRACT = f"SELECT {names(CONTRACT_FIELDS)} FROM contracts WHERE contract_id = $1 FOR UPDATE"
_MILESTONES_OF = f"SELECT {names(MILESTONE_FIELDS)} FROM milestones WHERE contract_id = $1 ORDER BY position"
# Unlocked (a read API): the contract and its milestones in one statement, one snapshot.
_READ_CONTRACT = (f"SELECT {names(CONTRACT_FIELDS, 'c.')}, "
                  f"{', '.join(f'm.{k} AS m_{k}' for k in MILESTONE_FIELDS)} FROM contracts c "
                  f"LEFT JOIN milestones m ON m.contract_id = c.contract_id WHERE c.contract_id = $1 "
                  f"ORDER BY m.position")
_IDS_TAKEN = select(milestones.c.milestone_id).where(
    milestones.c.milestone_id == any_(bindparam("ids", type_=ARRAY(String))))

# A save is one statement of the parts it needs (CTEs; their parameters in this order):
# A new contract claims its id first (its columns); its milestones are written only when it did.
_NEW_CONTRACT = (f"new_contract AS (INSERT INTO contracts ({names(CONTRACT_FIELDS)}) "
                 f"VALUES ({placeholders(len(CONTRACT_FIELDS))}) ON CONFLICT DO NOTHING RETURNING contract_id)")
# A loaded contract's row, when it changed (its columns but the id, then the id).
_CONTRACT_CHANGED = (f"contract_changed AS (UPDATE contracts SET "
                     f"{', '.join(f'{k} = $?' for k in CONTRACT_FIELDS if k != 'contract_id')} "
                     f"WHERE contract_id = $? RETURNING 1)")
# Its changed milestones, only ever its own (the contract id in the WHERE keeps another contract's milestone
# untouched), with whether each one's status moved (one array per column and `moved`, then the contract id).
_MILESTONES_CHANGED = (f"milestones_changed AS (UPDATE milestones m SET "
                       f"{', '.join(f'{k} = c.{k}' for k in MILESTONE_FIELDS if k != 'milestone_id')} "
                       f"FROM {unnest(milestones, MILESTONE_FIELDS, 'c', moved='BOOLEAN')} "
                       f"WHERE m.milestone_id = c.milestone_id AND m.contract_id = $? "
                       f"RETURNING m.milestone_id, m.status, c.moved)")
_HISTORY = ("{name} AS (INSERT INTO milestone_history (milestone_id, status, event, at) "
            "SELECT milestone_id, status, $?::varchar, $?::timestamptz FROM {source})")
_MOVED_HISTORY = _HISTORY.format(name="moved_history", source="milestones_changed WHERE moved")
# New milestones, each claiming its id: one another contract holds is left as it is and not returned (one
# array per column, the contract id's included); their history (the event, when).
_CLAIM = (f"claimed AS (INSERT INTO milestones ({names([*MILESTONE_FIELDS, 'contract_id'])}) "
          f"SELECT * FROM {unnest(milestones, [*MILESTONE_FIELDS, 'contract_id'], 'n')} {{guard}} "
          f"ON CONFLICT DO NOTHING RETURNING milestone_id, status)")
_CLAIM_IN_NEW = _CLAIM.format(guard="WHERE EXISTS (SELECT FROM new_contract)")
_CLAIM_IN_LOADED = _CLAIM.format(guard="")
_NEW_HISTORY = _HISTORY.format(name="new_history", source="claimed")
# The saga whose step moved the contract (its columns).
_SAGA_SAVED = (f"saga_saved AS (INSERT INTO sagas ({names(list(Saga.FIELDS))}) "
               f"VALUES ({placeholders(len(Saga.FIELDS))}) ON CONFLICT (saga_id) DO UPDATE SET "
               f"{', '.join(f'{k} = EXCLUDED.{k}' for k in Saga.FIELDS if k != 'saga_id')} RETURNING 1)")
# The statement's entries of the event being handled; a replayed event's are there already (one array per
# column).
_ENTRIES = (f"entries AS (INSERT INTO statement_entries ({names(ENTRY_FIELDS)}) "
            f"SELECT * FROM {unnest(statement_entries, ENTRY_FIELDS, 'e')} ON CONFLICT DO NOTHING RETURNING 1)")
# Whether the contract's id was claimed (always, for a loaded one) and the new milestones' ids claimed.
_SAVED_NEW = "SELECT EXISTS (SELECT FROM new_contract) AS contract, " \
             "(SELECT array_agg(milestone_id) FROM claimed) AS milestones"
_SAVED_LOADED = "SELECT TRUE AS contract, (SELECT array_agg(milestone_id) FROM claimed) AS milestones"
_SAVED_NOTHING_NEW = "SELECT TRUE AS contract, NULL::varchar[] AS milestones"


def _contract(row, milestone_rows) -> Contract:
    return Contract(**{k: row[k] for k in CONTRACT_FIELDS},
                    milestones=[Milestone(**{k: r[k] for k in MILESTONE_FIELDS}) for r in milestone_rows])


def _columns(rows: list[dict], columns: list[str]) -> list[list]:
    """Rows as one list per column: the parameters of an `unnest`."""
    return [[r[c] for r in rows] for c in columns]


def saga_values(saga: Saga) -> list:
    """The saga's row, its JSON columns as text (the asyncpg connection's codec takes JSON text)."""
    row = {k: getattr(saga, k) for k in Saga.FIELDS}
    row["data"] = saga.data.model_dump_json()
    row["step_log"] = json.dumps(saga.step_log)
    return [row[k] for k in Saga.FIELDS]


def entry_values(contract_id: str, entries: list[Movement]) -> list[list]:
    return _columns([{"contract_id": contract_id, **m.__dict__} for m in entries], ENTRY_FIELDS)


class ContractRepository:
    def __init__(self, session: AsyncSession, seen: Seen | None = None) -> None:
        self.session = session
        self._seen = seen or Seen()
        # Each contract's row and milestone rows as loaded or last saved: a save writes what differs.
        self._loaded: dict[str, tuple[dict, dict[str, dict]]] = {}

    async def get(self, contract_id: str, lock: bool = True) -> Contract | None:
        """The contract and its milestones; locked, two handlers on one contract run one after the other.
        Locked, the milestones are read in a statement after the lock: one that waited for the lock would
        read them as they were before the transaction it waited for."""
        if not lock:
            rows = await (await sql.driver(self.session)).fetch(_READ_CONTRACT, contract_id)
            if not rows:
                return None
            contract = _contract(rows[0], [{k: r[f"m_{k}"] for k in MILESTONE_FIELDS} for r in rows
                                           if r["m_milestone_id"] is not None])
            self._remember(contract)
            return contract
        # Locked with its saga (taken once: a second get reads the row as this transaction left it).
        row = self._seen.locked_contracts.pop(contract_id, None)
        milestone_rows = self._seen.locked_milestones.pop(contract_id, None)
        if row is None:
            self._seen.batch.forget(contract_id)
            row = await (await sql.driver(self.session)).fetchrow(_LOCK_CONTRACT, contract_id)
            if row is None:
                return None
        if milestone_rows is None:
            milestone_rows = await (await sql.driver(self.session)).fetch(_MILESTONES_OF, contract_id)
        contract = _contract(row, milestone_rows)
        self._remember(contract)
        return contract

    async def milestone_ids_taken(self, ids: list[str]) -> list[str]:
        return list(await self.session.scalars(_IDS_TAKEN, {"ids": list(ids)}))

    async def save(self, contract: Contract, event: str, now: datetime, *, saga: Saga | None = None,
                   entries: list[Movement] = ()) -> None:
        """Write what changed of the contract and its milestones since they were loaded, with the saga whose
        step moved it and the statement's entries of the event being handled: one statement (in a batch's first
        try, one for a run of saves of its shape: saves_together.py). A new contract or milestone claims its id:
        an id another contract holds (ids are unique across the platform) is refused `id_taken` and that row is
        never touched, even when both were checked free at once in concurrent transactions."""
        self._seen.batch.forget(contract.contract_id)
        row = {k: getattr(contract, k) for k in CONTRACT_FIELDS}
        rows = {m.milestone_id: {k: getattr(m, k) for k in MILESTONE_FIELDS} for m in contract.milestones}
        loaded_row, loaded = (None, {}) if contract.is_new else self._loaded.get(contract.contract_id, (None, {}))
        new = [{**r, "contract_id": contract.contract_id} for i, r in rows.items() if i not in loaded]
        changed = [{**r, "moved": r["status"] != loaded[i]["status"], "contract_id": contract.contract_id}
                   for i, r in rows.items() if i in loaded and r != loaded[i]]
        contract_changed = not contract.is_new and row != loaded_row
        parts, args = [], []
        if contract.is_new:
            parts.append(_NEW_CONTRACT)
            args += [row[k] for k in CONTRACT_FIELDS]
        else:
            if contract_changed:
                parts.append(_CONTRACT_CHANGED)
                args += [row[k] for k in CONTRACT_FIELDS if k != "contract_id"] + [contract.contract_id]
            if changed:
                parts += [_MILESTONES_CHANGED, _MOVED_HISTORY]
                args += _columns(changed, [*MILESTONE_FIELDS, "moved"]) + [contract.contract_id, event, now]
        if new:
            parts += [_CLAIM_IN_NEW if contract.is_new else _CLAIM_IN_LOADED, _NEW_HISTORY]
            args += _columns(new, [*MILESTONE_FIELDS, "contract_id"]) + [event, now]
        saga_row = saga_values(saga) if saga is not None else None
        entry_rows = entry_values(contract.contract_id, list(entries)) if entries else []
        if saga_row is not None:
            parts.append(_SAGA_SAVED)
            args += saga_row
        if entry_rows:
            parts.append(_ENTRIES)
            args += entry_rows
        if not parts:
            self._loaded[contract.contract_id] = (row, rows)
            return
        claims = contract.is_new or bool(new)
        statement = compose(tuple(parts),
                            _SAVED_NEW if contract.is_new else _SAVED_LOADED if new else _SAVED_NOTHING_NEW)
        new_ids = {r["milestone_id"] for r in new}
        expect = (lambda row: row["contract"] and set(row["milestones"] or ()) == new_ids) if claims else None
        shape = Shape(new_contract=contract.is_new, contract_changed=contract_changed,
                      milestones_changed=bool(changed), milestones_new=bool(new), saga=saga_row is not None,
                      entries=bool(entry_rows))
        # Left for later with the batch's other saves, every claim is taken as made (a batch where one is not is
        # handled again, each save at once); at once, a claim refused is refused `id_taken` here.
        saved = await sql.write_together(self.session, kind_of(shape), Save(
            shape, row, changed, new, saga_row, entry_rows, event, now, alone=(statement, tuple(args), expect)))
        if saved is not None:
            if not saved["contract"]:
                raise Rejected("id_taken", f"contract id {contract.contract_id} is already used (ids are never reused)")
            claimed = set(saved["milestones"] or ())
            if taken := [r["milestone_id"] for r in new if r["milestone_id"] not in claimed]:
                raise Rejected("id_taken", f"milestone ids already used: {', '.join(taken)}")
        contract.is_new = False
        self._loaded[contract.contract_id] = (row, rows)

    def _remember(self, contract: Contract) -> None:
        self._loaded[contract.contract_id] = (
            {k: getattr(contract, k) for k in CONTRACT_FIELDS},
            {m.milestone_id: {k: getattr(m, k) for k in MILESTONE_FIELDS} for m in contract.milestones})

    async def history(self, milestone_ids: list[str]) -> dict[str, list[dict]]:
        result: dict[str, list[dict]] = {m: [] for m in milestone_ids}
        rows = await self.session.execute(select(milestone_history).where(
            milestone_history.c.milestone_id.in_(milestone_ids)).order_by(milestone_history.c.seq))
        for r in rows.mappings():
            result[r["milestone_id"]].append({"status": r["status"], "event": r["event"],
                                              "at": r["at"].isoformat().replace("+00:00", "Z")})
        return result


# -- sagas -----------------------------------------------------------------------------------------

# The saga and its contract, both locked in one round trip: every handler of a saga locks the saga first,
# then its contract (a command on a contract locks the contract and only ever creates sagas). The parties'
# recorded activity comes along, unlocked: read stale it can only look older, never newer.
_LOCK_SAGAS_WHERE = (
    f"SELECT {names(list(Saga.FIELDS), 's.')}, {', '.join(f'c.{k} AS c_{k}' for k in CONTRACT_FIELDS)}, "
    f"client.account_id AS client_found, client.last_activity_at AS client_active_at, "
    f"freelancer.account_id AS freelancer_found, freelancer.last_activity_at AS freelancer_active_at "
    f"FROM sagas s JOIN contracts c ON c.contract_id = s.contract_id "
    f"LEFT JOIN accounts client ON client.account_id = c.client_id "
    f"LEFT JOIN accounts freelancer ON freelancer.account_id = c.freelancer_id "
    f"WHERE {{sagas}} FOR UPDATE OF s, c")
# A batch's: locked in saga id order, so two batches that share sagas take them in the same order.
# Planned once (sql.planned_once): a lone reply's one-element array made PostgreSQL plan them again at every
# execution (issue 10, twenty-third step); each probes its rows by key, whatever their number.
_LOCK_SAGAS_AND_CONTRACTS = planned_once(
    _LOCK_SAGAS_WHERE.format(sagas="s.saga_id = ANY($1::varchar[]) ORDER BY s.saga_id"))
_LOCK_SAGA_AND_CONTRACT = _LOCK_SAGAS_WHERE.format(sagas="s.saga_id = $1")
# Their contracts' milestones, read after the lock (see ContractRepository.get).
_MILESTONES_OF_MANY = planned_once(f"SELECT contract_id, {names(MILESTONE_FIELDS)} FROM milestones "
                                   f"WHERE contract_id = ANY($1::varchar[]) ORDER BY contract_id, position")
_LOCK_SAGA = f"SELECT {names(list(Saga.FIELDS))} FROM sagas WHERE saga_id = $1 FOR UPDATE"
_SAVE_SAGA = compose((_SAGA_SAVED,), "SELECT 1")


class SagaRepository:
    def __init__(self, session: AsyncSession, seen: Seen | None = None) -> None:
        self.session = session
        self._seen = seen or Seen()

    async def preload(self, saga_ids: list[str]) -> Preloaded:
        """These sagas (those that exist), each locked with its contract, and the contracts' milestones: two
        statements for a batch of replies. The handlers' `get` takes them from the Preloaded."""
        conn = await sql.driver(self.session)
        preloaded = Preloaded()
        rows = await conn.fetch(_LOCK_SAGAS_AND_CONTRACTS, sorted(set(saga_ids)))
        if rows:
            contract_ids = sorted({row["contract_id"] for row in rows})
            preloaded.add(rows, await conn.fetch(_MILESTONES_OF_MANY, contract_ids))
        return preloaded

    async def get(self, saga_id: str) -> Saga | None:
        """The saga, locked, and its contract's row locked with it (ContractRepository.get takes it from there):
        from the batch's preload when it holds them as the batch found them, else in a statement of its own."""
        taken = self._seen.batch.take(saga_id)
        if taken is not None:
            row, milestone_rows = taken
            self._seen.locked_milestones[row["contract_id"]] = milestone_rows
        else:
            conn = await sql.driver(self.session)
            row = await conn.fetchrow(_LOCK_SAGA_AND_CONTRACT, saga_id)
            if row is None:  # no saga, or (never seen) a saga without its contract
                row = await conn.fetchrow(_LOCK_SAGA, saga_id)
                return Saga.load(row) if row else None
            self._seen.batch.forget(row["contract_id"])
        self._seen.locked_contracts[row["contract_id"]] = {k: row[f"c_{k}"] for k in CONTRACT_FIELDS}
        for party in ("client", "freelancer"):
            if row[f"{party}_found"] is not None:
                self._seen.activity[row[f"{party}_found"]] = row[f"{party}_active_at"]
        return Saga.load(row)

    async def save(self, saga: Saga) -> None:
        await sql.write_together(self.session, kind_of(SAGA_ALONE), saga_alone(saga_values(saga), _SAVE_SAGA))

    async def waiting(self, status: str, moved_before: datetime, limit: int,
                      after: tuple[datetime, str] | None = None, kind: str | None = None) -> list[Saga]:
        """Sagas in `status` (running or needs_attention) that have not moved since `moved_before`,
        the longest waiting first; `after` is the (updated_at, saga_id) of the last one of the page before."""
        query = select(sagas).where(sagas.c.status == status, sagas.c.updated_at <= moved_before)
        if kind is not None:
            query = query.where(sagas.c.kind == kind)
        if after is not None:
            query = query.where(tuple_(sagas.c.updated_at, sagas.c.saga_id) > tuple_(*after))
        rows = await self.session.execute(query.order_by(sagas.c.updated_at, sagas.c.saga_id).limit(limit))
        return [Saga.load(row) for row in rows.mappings()]

    async def waiting_by_kind(self) -> list[tuple[str, str, int, datetime]]:
        """(kind, status, how many, oldest move) of the sagas still running or needing attention."""
        rows = await self.session.execute(
            select(sagas.c.kind, sagas.c.status, func.count(), func.min(sagas.c.updated_at))
            .where(sagas.c.status.in_((RUNNING, NEEDS_ATTENTION))).group_by(sagas.c.kind, sagas.c.status))
        return [tuple(r) for r in rows]
