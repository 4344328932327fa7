"""The statement's money movements, recorded from escrow's events in the consumer's transaction."""

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.statement import Movement
from .repositories import arrays_of, rows_of
from .tables import statement_entries

_COLUMNS = [c.name for c in statement_entries.c]
_ENTRIES = rows_of(statement_entries, _COLUMNS, "entry")
# Every movement of an event in one statement; a replayed event's entries are there already.
_RECORD = insert(statement_entries).from_select(_COLUMNS, select(*_ENTRIES.c)).on_conflict_do_nothing()


class StatementRepository:
    def __init__(self, session: AsyncConnection) -> None:
        self.session = session

    async def record(self, contract_id: str, movements: list[Movement]) -> None:
        if movements:
            await self.session.execute(_RECORD, arrays_of(
                [{"contract_id": contract_id, **m.__dict__} for m in movements], _COLUMNS, "entry"))

    async def of_contract(self, contract_id: str) -> list[Movement]:
        rows = await self.session.execute(select(statement_entries).where(
            statement_entries.c.contract_id == contract_id))
        return [Movement(r.entry_id, r.item_kind, r.item_id, r.kind, r.amount, r.at, r.available_at) for r in rows]
