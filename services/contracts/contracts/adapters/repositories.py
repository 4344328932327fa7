"""Load and save the contracts service's aggregates, locked for the length of the transaction."""

from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.errors import Rejected

from ..domain.accounts import Account
from ..domain.contracts import Contract, Milestone
from ..domain.sagas import NEEDS_ATTENTION, RUNNING, Saga
from .tables import accounts, contracts, milestone_history, milestones, sagas

_ACCOUNT_FIELDS = [c.name for c in accounts.c if c.name != "registered_at"]
_CONTRACT_FIELDS = [c.name for c in contracts.c]
_MILESTONE_FIELDS = [c.name for c in milestones.c if c.name != "contract_id"]


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str, lock: bool = False) -> Account | None:
        query = select(accounts).where(accounts.c.account_id == account_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).mappings().first()
        return Account(**{k: row[k] for k in _ACCOUNT_FIELDS}) if row else None

    async def add(self, account: Account) -> bool:
        inserted = await self.session.scalar(
            insert(accounts).values(**asdict(account)).on_conflict_do_nothing().returning(accounts.c.account_id))
        return inserted is not None

    async def save(self, account: Account) -> None:
        values = asdict(account)
        await self.session.execute(update(accounts).where(accounts.c.account_id == account.account_id).values(**values))

    async def record_activity(self, account_id: str, now: datetime, resolution: timedelta) -> None:
        """Written only when the recorded activity is older than `resolution` (see activity_is_news)."""
        await self.session.execute(update(accounts).where(
            accounts.c.account_id == account_id,
            or_(accounts.c.last_activity_at.is_(None), accounts.c.last_activity_at < now - resolution),
        ).values(last_activity_at=now))


class ContractRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._loaded: dict[str, dict[str, str]] = {}  # milestone statuses as loaded, for the history

    async def get(self, contract_id: str, lock: bool = True) -> Contract | None:
        """The contract and its milestones, locked: two handlers on one contract run one after the other."""
        query = select(contracts).where(contracts.c.contract_id == contract_id)
        row = (await self.session.execute(query.with_for_update() if lock else query)).mappings().first()
        if row is None:
            return None
        rows = (await self.session.execute(
            select(milestones).where(milestones.c.contract_id == contract_id).order_by(milestones.c.position)
        )).mappings().all()
        contract = Contract(**{k: row[k] for k in _CONTRACT_FIELDS},
                            milestones=[Milestone(**{k: r[k] for k in _MILESTONE_FIELDS}) for r in rows])
        self._loaded[contract_id] = {m.milestone_id: m.status for m in contract.milestones}
        return contract

    async def milestone_ids_taken(self, ids: list[str]) -> list[str]:
        return list(await self.session.scalars(select(milestones.c.milestone_id).where(milestones.c.milestone_id.in_(ids))))

    async def exists(self, contract_id: str) -> bool:
        return await self.session.scalar(
            select(contracts.c.contract_id).where(contracts.c.contract_id == contract_id)) is not None

    async def save(self, contract: Contract, event: str, now: datetime) -> None:
        """Write the contract and its milestones. A new contract or milestone claims its id: an id another
        contract holds (ids are unique across the platform) is refused `id_taken` and that row is never
        touched, even when both were checked free at once in concurrent transactions."""
        values = {k: getattr(contract, k) for k in _CONTRACT_FIELDS}
        if contract.is_new:
            claimed = await self.session.scalar(insert(contracts).values(**values).on_conflict_do_nothing()
                                                .returning(contracts.c.contract_id))
            if claimed is None:
                raise Rejected("id_taken", f"contract id {contract.contract_id} is already used")
            contract.is_new = False
        else:
            await self.session.execute(update(contracts).where(contracts.c.contract_id == contract.contract_id)
                                       .values(**values))
        before = self._loaded.get(contract.contract_id, {})
        rows = [{**{k: getattr(m, k) for k in _MILESTONE_FIELDS}, "contract_id": contract.contract_id}
                for m in contract.milestones]
        new_rows = [r for r in rows if r["milestone_id"] not in before]
        if new_rows:
            claimed = set(await self.session.scalars(
                insert(milestones).values(new_rows).on_conflict_do_nothing().returning(milestones.c.milestone_id)))
            if taken := [r["milestone_id"] for r in new_rows if r["milestone_id"] not in claimed]:
                raise Rejected("id_taken", f"milestone ids already used: {', '.join(taken)}")
        if old_rows := [r for r in rows if r["milestone_id"] in before]:
            stmt = insert(milestones)
            # Only ever this contract's own rows: the WHERE keeps another contract's milestone untouched.
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=["milestone_id"], set_={k: stmt.excluded[k] for k in _MILESTONE_FIELDS},
                where=milestones.c.contract_id == stmt.excluded.contract_id), old_rows)
        changed = [{"milestone_id": m.milestone_id, "status": m.status, "event": event, "at": now}
                   for m in contract.milestones if before.get(m.milestone_id) != m.status]
        if changed:
            await self.session.execute(insert(milestone_history), changed)
        self._loaded[contract.contract_id] = {m.milestone_id: m.status for m in contract.milestones}

    async def history(self, milestone_ids: list[str]) -> dict[str, list[dict]]:
        result: dict[str, list[dict]] = {m: [] for m in milestone_ids}
        rows = await self.session.execute(select(milestone_history).where(
            milestone_history.c.milestone_id.in_(milestone_ids)).order_by(milestone_history.c.seq))
        for r in rows.mappings():
            result[r["milestone_id"]].append({"status": r["status"], "event": r["event"],
                                              "at": r["at"].isoformat().replace("+00:00", "Z")})
        return result


class SagaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, saga_id: str) -> Saga | None:
        row = (await self.session.execute(
            select(sagas).where(sagas.c.saga_id == saga_id).with_for_update())).mappings().first()
        return Saga.load(row) if row else None

    async def save(self, saga: Saga) -> None:
        values = {k: getattr(saga, k) for k in Saga.FIELDS}
        values["data"] = saga.data.model_dump(mode="json")
        stmt = insert(sagas).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=["saga_id"], set_={k: stmt.excluded[k] for k in Saga.FIELDS if k != "saga_id"}))

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
