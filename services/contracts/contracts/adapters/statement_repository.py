"""The statement's money movements, recorded from escrow's events in the consumer's transaction."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.statement import Movement
from . import sql
from .repositories import _ENTRIES, entry_values
from .tables import statement_entries

# Every movement of an event in one statement; a replayed event's entries are there already. A handler that
# saves the contract writes them with it instead (ContractRepository.save).
_RECORD = sql.compose((_ENTRIES,), "SELECT 1")


class StatementRepository:
    def __init__(self, session: AsyncConnection) -> None:
        self.session = session

    async def record(self, contract_id: str, movements: list[Movement]) -> None:
        if movements:
            await sql.write_later(self.session, _RECORD, *entry_values(contract_id, movements))

    async def of_contract(self, contract_id: str) -> list[Movement]:
        rows = await self.session.execute(select(statement_entries).where(
            statement_entries.c.contract_id == contract_id))
        return [Movement(r.entry_id, r.item_kind, r.item_id, r.kind, r.amount, r.at, r.available_at) for r in rows]
