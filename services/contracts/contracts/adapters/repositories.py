"""Load and save the contracts service's aggregates, locked for the length of the transaction.

The hot path's statements are built once, here, with bind parameters: building a statement and its cache
key anew for every message cost more CPU than running it. A write of several rows is one statement over
arrays (`unnest`), whatever the number of rows, and a save writes only the rows that changed since the load.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ARRAY, Boolean, DateTime, String, any_, bindparam, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from platform_runtime.errors import Rejected

from ..domain.accounts import Account
from ..domain.contracts import Contract, Milestone
from ..domain.sagas import NEEDS_ATTENTION, RUNNING, Saga
from .tables import accounts, contracts, milestone_history, milestones, sagas

_ACCOUNT_FIELDS = [c.name for c in accounts.c if c.name != "registered_at"]
_CONTRACT_FIELDS = [c.name for c in contracts.c]
_MILESTONE_FIELDS = [c.name for c in milestones.c if c.name != "contract_id"]
_HISTORY_FIELDS = ["milestone_id", "status", "event", "at"]


def rows_of(table, columns: list[str], alias: str, **more: TypeEngine):
    """`unnest(:alias_a, :alias_b, ...) AS alias(a, b, ...)`: rows given as one array per column (a column of
    `table`, or one of `more` with its type), bound as `<alias>_<column>` (see arrays_of)."""
    types = {**{c: table.c[c].type for c in columns}, **more}
    arrays = [bindparam(f"{alias}_{c}", type_=ARRAY(t)) for c, t in types.items()]
    return func.unnest(*arrays).table_valued(*types, name=alias).render_derived()


def arrays_of(rows: list[dict], columns: list[str], alias: str) -> dict[str, list]:
    """The parameters of a `rows_of` statement: one list per column."""
    return {f"{alias}_{c}": [r[c] for r in rows] for c in columns}


@dataclass
class Seen:
    """What one handler's statements read already, shared by its repositories: a contract row locked with
    its saga (ContractRepository.get takes it from there) and accounts' last recorded activity (an activity
    recorded recently enough is not written again: Context.record_activity)."""

    locked_contracts: dict[str, dict] = field(default_factory=dict)
    activity: dict[str, datetime | None] = field(default_factory=dict)


_IDS = bindparam("ids", type_=ARRAY(String))  # `= ANY(:ids)`: one statement text for any number of ids


# -- accounts --------------------------------------------------------------------------------------

_GET_ACCOUNTS = select(accounts).where(accounts.c.account_id == any_(_IDS))
_LOCK_ACCOUNT = select(accounts).where(accounts.c.account_id == bindparam("id")).with_for_update()
# Activity of several accounts in one statement, their rows locked in one order (account id), so two
# transactions recording the same parties never deadlock; only a recorded activity older than the
# resolution is written (see activity_is_news).
_STALE_ACTIVITY = (select(accounts.c.account_id)
                   .where(accounts.c.account_id == any_(_IDS),
                          or_(accounts.c.last_activity_at.is_(None), accounts.c.last_activity_at < bindparam("before")))
                   .order_by(accounts.c.account_id).with_for_update())
_RECORD_ACTIVITY = (update(accounts)
                    .where(accounts.c.account_id.in_(_STALE_ACTIVITY.scalar_subquery()),
                           or_(accounts.c.last_activity_at.is_(None),
                               accounts.c.last_activity_at < bindparam("before")))
                    .values(last_activity_at=bindparam("now", type_=accounts.c.last_activity_at.type)))


def _account(row) -> Account:
    return Account(**{k: row[k] for k in _ACCOUNT_FIELDS})


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str, lock: bool = False) -> Account | None:
        if lock:
            row = (await self.session.execute(_LOCK_ACCOUNT, {"id": account_id})).mappings().first()
            return _account(row) if row else None
        return (await self.get_many([account_id])).get(account_id)

    async def get_many(self, account_ids: list[str]) -> dict[str, Account]:
        """The accounts of these ids that exist, unlocked, in one round trip."""
        rows = (await self.session.execute(_GET_ACCOUNTS, {"ids": list(account_ids)})).mappings()
        return {row["account_id"]: _account(row) for row in rows}

    async def add(self, account: Account) -> bool:
        inserted = await self.session.scalar(
            insert(accounts).values(**asdict(account)).on_conflict_do_nothing().returning(accounts.c.account_id))
        return inserted is not None

    async def save(self, account: Account) -> None:
        await self.session.execute(update(accounts).where(accounts.c.account_id == account.account_id)
                                   .values(**asdict(account)))

    async def record_activity(self, account_ids: list[str], now: datetime, resolution: timedelta) -> None:
        """Written only where the recorded activity is older than `resolution` (see activity_is_news)."""
        await self.session.execute(_RECORD_ACTIVITY, {"ids": list(account_ids), "before": now - resolution, "now": now})


# -- contracts and their milestones ----------------------------------------------------------------

_CONTRACT = contracts.c.contract_id == bindparam("b_contract_id")
_LOCK_CONTRACT = select(contracts).where(_CONTRACT).with_for_update()
_MILESTONES_OF = select(milestones).where(milestones.c.contract_id == bindparam("b_contract_id")) \
    .order_by(milestones.c.position)
# Unlocked (a read API): the contract and its milestones in one statement, one snapshot.
_READ_CONTRACT = (select(contracts, *[milestones.c[k].label(f"m_{k}") for k in _MILESTONE_FIELDS])
                  .outerjoin(milestones, milestones.c.contract_id == contracts.c.contract_id)
                  .where(_CONTRACT).order_by(milestones.c.position))
_EVENT, _AT = bindparam("event", type_=String), bindparam("at", type_=DateTime(timezone=True))


def _history_of(moved):
    """The history rows of milestones a CTE wrote (`moved`: its milestone_id and new status)."""
    return insert(milestone_history).from_select(["milestone_id", "status", "event", "at"],
                                                 select(moved.c.milestone_id, moved.c.status, _EVENT, _AT))


# A save is one statement (its parts are CTEs): the contract, its new milestones (each claiming its id: one
# another contract holds is left as it is and not returned), its changed ones, and the history of each
# milestone whose status moved. It returns the ids of the new milestones it claimed.
_NEW_ROWS = rows_of(milestones, [*_MILESTONE_FIELDS, "contract_id"], "new")


def _claim_milestones(*guards):
    return (insert(milestones).from_select([*_MILESTONE_FIELDS, "contract_id"], select(*_NEW_ROWS.c).where(*guards))
            .on_conflict_do_nothing().returning(milestones.c.milestone_id, milestones.c.status).cte("claimed"))


# A new contract claims its id first; its milestones are written only when it did.
_NEW_CONTRACT = (insert(contracts).values({k: bindparam(k, type_=contracts.c[k].type) for k in _CONTRACT_FIELDS})
                 .on_conflict_do_nothing().returning(contracts.c.contract_id).cte("new_contract"))
_CLAIMED_IN_NEW = _claim_milestones(exists(select(_NEW_CONTRACT.c.contract_id)))
_SAVE_NEW = select(exists(select(_NEW_CONTRACT.c.contract_id)).label("contract"),
                   select(func.array_agg(_CLAIMED_IN_NEW.c.milestone_id)).scalar_subquery().label("milestones")) \
    .add_cte(_history_of(_CLAIMED_IN_NEW).cte("new_history"))

# A loaded contract: its row when it changed (`write_contract`), and only ever its own milestones (the
# contract id in the WHERE keeps another contract's milestone untouched).
_CONTRACT_CHANGED = update(contracts).where(_CONTRACT, bindparam("write_contract", type_=Boolean)).values(
    {k: bindparam(f"set_{k}", type_=contracts.c[k].type) for k in _CONTRACT_FIELDS if k != "contract_id"}) \
    .cte("contract_changed")
_CHANGED_ROWS = rows_of(milestones, _MILESTONE_FIELDS, "changed", moved=Boolean())
_MILESTONES_CHANGED = (update(milestones)
                       .where(milestones.c.milestone_id == _CHANGED_ROWS.c.milestone_id,
                              milestones.c.contract_id == bindparam("b_contract_id"))
                       .values({k: _CHANGED_ROWS.c[k] for k in _MILESTONE_FIELDS if k != "milestone_id"})
                       .returning(milestones.c.milestone_id, milestones.c.status, _CHANGED_ROWS.c.moved)
                       .cte("milestones_changed"))
_CLAIMED_IN_LOADED = _claim_milestones()
_SAVE_LOADED = select(select(func.array_agg(_CLAIMED_IN_LOADED.c.milestone_id)).scalar_subquery()).add_cte(
    _CONTRACT_CHANGED,
    _history_of(_CLAIMED_IN_LOADED).cte("new_history"),
    _history_of(select(_MILESTONES_CHANGED).where(_MILESTONES_CHANGED.c.moved).subquery()).cte("moved_history"))
_IDS_TAKEN = select(milestones.c.milestone_id).where(milestones.c.milestone_id == any_(_IDS))


def _contract(row, milestone_rows) -> Contract:
    return Contract(**{k: row[k] for k in _CONTRACT_FIELDS},
                    milestones=[Milestone(**{k: r[k] for k in _MILESTONE_FIELDS}) for r in milestone_rows])


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
            rows = (await self.session.execute(_READ_CONTRACT, {"b_contract_id": contract_id})).mappings().all()
            if not rows:
                return None
            contract = _contract(rows[0], [{k: r[f"m_{k}"] for k in _MILESTONE_FIELDS} for r in rows
                                           if r["m_milestone_id"] is not None])
            self._remember(contract)
            return contract
        # Locked with its saga (taken once: a second get reads the row as this transaction left it).
        row = self._seen.locked_contracts.pop(contract_id, None)
        if row is None:
            row = (await self.session.execute(_LOCK_CONTRACT, {"b_contract_id": contract_id})).mappings().first()
            if row is None:
                return None
        milestone_rows = (await self.session.execute(_MILESTONES_OF, {"b_contract_id": contract_id})).mappings().all()
        contract = _contract(row, milestone_rows)
        self._remember(contract)
        return contract

    async def milestone_ids_taken(self, ids: list[str]) -> list[str]:
        return list(await self.session.scalars(_IDS_TAKEN, {"ids": list(ids)}))

    async def save(self, contract: Contract, event: str, now: datetime) -> None:
        """Write what changed of the contract and its milestones since they were loaded, in one statement. A
        new contract or milestone claims its id: an id another contract holds (ids are unique across the
        platform) is refused `id_taken` and that row is never touched, even when both were checked free at once
        in concurrent transactions."""
        row = {k: getattr(contract, k) for k in _CONTRACT_FIELDS}
        rows = {m.milestone_id: {k: getattr(m, k) for k in _MILESTONE_FIELDS} for m in contract.milestones}
        loaded_row, loaded = (None, {}) if contract.is_new else self._loaded.get(contract.contract_id, (None, {}))
        new = [{**r, "contract_id": contract.contract_id} for i, r in rows.items() if i not in loaded]
        changed = [{**r, "moved": r["status"] != loaded[i]["status"]} for i, r in rows.items()
                   if i in loaded and r != loaded[i]]
        claiming = {"event": event, "at": now, **arrays_of(new, [*_MILESTONE_FIELDS, "contract_id"], "new")}
        if contract.is_new:
            saved = (await self.session.execute(_SAVE_NEW, {**row, **claiming})).one()
            if not saved.contract:
                raise Rejected("id_taken", f"contract id {contract.contract_id} is already used (ids are never reused)")
            claimed = saved.milestones
            contract.is_new = False
        elif row != loaded_row or new or changed:
            claimed = await self.session.scalar(_SAVE_LOADED, {
                **claiming, "b_contract_id": contract.contract_id, "write_contract": row != loaded_row,
                **{f"set_{k}": v for k, v in row.items() if k != "contract_id"},
                **arrays_of(changed, [*_MILESTONE_FIELDS, "moved"], "changed")})
        else:
            claimed = []
        if taken := [r["milestone_id"] for r in new if r["milestone_id"] not in set(claimed or ())]:
            raise Rejected("id_taken", f"milestone ids already used: {', '.join(taken)}")
        self._loaded[contract.contract_id] = (row, rows)

    def _remember(self, contract: Contract) -> None:
        self._loaded[contract.contract_id] = (
            {k: getattr(contract, k) for k in _CONTRACT_FIELDS},
            {m.milestone_id: {k: getattr(m, k) for k in _MILESTONE_FIELDS} for m in contract.milestones})

    async def history(self, milestone_ids: list[str]) -> dict[str, list[dict]]:
        result: dict[str, list[dict]] = {m: [] for m in milestone_ids}
        rows = await self.session.execute(select(milestone_history).where(
            milestone_history.c.milestone_id.in_(milestone_ids)).order_by(milestone_history.c.seq))
        for r in rows.mappings():
            result[r["milestone_id"]].append({"status": r["status"], "event": r["event"],
                                              "at": r["at"].isoformat().replace("+00:00", "Z")})
        return result


# -- sagas -----------------------------------------------------------------------------------------

_SAGA = sagas.c.saga_id == bindparam("saga_id")
_CLIENT, _FREELANCER = accounts.alias("client"), accounts.alias("freelancer")
# The saga and its contract, both locked in one round trip: every handler of a saga locks the saga first,
# then its contract (a command on a contract locks the contract and only ever creates sagas). The parties'
# recorded activity comes along, unlocked: read stale it can only look older, never newer.
_LOCK_SAGA_AND_CONTRACT = (select(sagas, *[contracts.c[k].label(f"c_{k}") for k in _CONTRACT_FIELDS],
                                  _CLIENT.c.account_id.label("client_found"),
                                  _CLIENT.c.last_activity_at.label("client_active_at"),
                                  _FREELANCER.c.account_id.label("freelancer_found"),
                                  _FREELANCER.c.last_activity_at.label("freelancer_active_at"))
                           .join(contracts, contracts.c.contract_id == sagas.c.contract_id)
                           .outerjoin(_CLIENT, _CLIENT.c.account_id == contracts.c.client_id)
                           .outerjoin(_FREELANCER, _FREELANCER.c.account_id == contracts.c.freelancer_id)
                           .where(_SAGA).with_for_update(of=[sagas, contracts]))
_LOCK_SAGA = select(sagas).where(_SAGA).with_for_update()
_SAVE_SAGA = insert(sagas).values({k: bindparam(k, type_=sagas.c[k].type) for k in Saga.FIELDS})
_SAVE_SAGA = _SAVE_SAGA.on_conflict_do_update(
    index_elements=["saga_id"], set_={k: _SAVE_SAGA.excluded[k] for k in Saga.FIELDS if k != "saga_id"})


class SagaRepository:
    def __init__(self, session: AsyncSession, seen: Seen | None = None) -> None:
        self.session = session
        self._seen = seen or Seen()

    async def get(self, saga_id: str) -> Saga | None:
        """The saga, locked, and its contract's row locked with it (ContractRepository.get takes it from there)."""
        row = (await self.session.execute(_LOCK_SAGA_AND_CONTRACT, {"saga_id": saga_id})).mappings().first()
        if row is not None:
            self._seen.locked_contracts[row["contract_id"]] = {k: row[f"c_{k}"] for k in _CONTRACT_FIELDS}
            for party in ("client", "freelancer"):
                if row[f"{party}_found"] is not None:
                    self._seen.activity[row[f"{party}_found"]] = row[f"{party}_active_at"]
        else:  # no saga, or (never seen) a saga without its contract
            row = (await self.session.execute(_LOCK_SAGA, {"saga_id": saga_id})).mappings().first()
        return Saga.load(row) if row else None

    async def save(self, saga: Saga) -> None:
        values = {k: getattr(saga, k) for k in Saga.FIELDS}
        values["data"] = saga.data.model_dump(mode="json")
        await self.session.execute(_SAVE_SAGA, values)

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
