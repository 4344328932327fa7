"""A batch's saves written together: a run of them as one statement (driver_sql.write_together; issue 10,
thirty-fifth step).

A batch's first try leaves its saves for later. A run of saves of one shape (the same parts: a new contract and
its milestones, a changed contract and its changed milestones, a saga, a statement's entries) is then written by
one statement over arrays, each table once, where each save was a statement of its own. The rows come out as the
saves one after another would leave them:
- a row saved twice in the run (a contract, a milestone, a saga: each save writes its whole row) is written once,
  as saved last, since one statement may not change a row twice;
- the milestones' history and the statement's entries keep every save's rows, in the order they were saved.
A claim (a new contract's id, a new milestone's) is taken for granted; a run where one was not made is handled
again, one savepoint each (IsolationNeeded), where each save runs alone and a refused claim is answered `id_taken`.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache

import asyncpg

from platform_runtime.errors import IsolationNeeded

from ..domain.sagas import Saga
from .sql import compose, names, unnest
from .tables import contracts, milestones, sagas, statement_entries

CONTRACT_FIELDS = [c.name for c in contracts.c]
MILESTONE_FIELDS = [c.name for c in milestones.c if c.name != "contract_id"]
ENTRY_FIELDS = [c.name for c in statement_entries.c]
_OWNED = [*MILESTONE_FIELDS, "contract_id"]  # a milestone's columns with its contract's id
_HISTORY_FIELDS = ["milestone_id", "status", "event", "at"]


@dataclass(frozen=True)
class Shape:
    """Which parts a save has: saves of one shape go together."""

    new_contract: bool
    contract_changed: bool
    milestones_changed: bool
    milestones_new: bool
    saga: bool
    entries: bool


@dataclass(frozen=True)
class Save:
    """One save's rows (ContractRepository.save, or a saga's alone: SagaRepository.save), each a dict of its
    columns."""

    shape: Shape
    contract: dict | None  # the contract's row, new or changed (None: unchanged)
    changed: list[dict]  # changed milestones, each with whether its status moved ("moved")
    new: list[dict]  # new milestones, each with its contract's id
    saga: list | None  # the saga's row (saga_values)
    entries: list[list]  # the statement's entries, one list per column (entry_values)
    event: str
    at: datetime | None
    alone: tuple  # the save's own statement, its arguments and what is taken for granted of its answer


class ContractSaves:
    """The saves of one shape left for later, a run of them written by one statement."""

    # A save or two: their own statements, which cost less than one set-based statement (bench.contracts_cpu
    # --batch 1: the backends' CPU 1.29 times, contracts' own 1.09, had a lone save gone set-based).
    merge_from = 3
    gathered = False  # see driver_sql.Together

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.sql = _statement(shape)

    def alone(self, save: Save) -> tuple:
        return save.alone

    async def write_all(self, driver: asyncpg.Connection, saves: list[Save]) -> None:
        row = await driver.fetchrow(self.sql, *arguments(self.shape, saves))
        shape = self.shape
        if shape.new_contract and row["contracts"] != len(saves):
            raise IsolationNeeded("a new contract left for later did not claim its id")
        if shape.milestones_new and row["milestones"] != sum(len(s.new) for s in saves):
            raise IsolationNeeded("a new milestone left for later did not claim its id")


SAGA_ALONE = Shape(False, False, False, False, True, False)


def saga_alone(values: list, statement: str) -> Save:
    """A saga's save alone (SagaRepository.save): its row, and its own statement."""
    return Save(SAGA_ALONE, None, [], [], values, [], "", None, alone=(statement, tuple(values), None))


@cache
def kind_of(shape: Shape) -> ContractSaves:
    """One kind per shape, so that consecutive saves of a shape are one run (driver_sql groups by kind)."""
    return ContractSaves(shape)


def arguments(shape: Shape, saves: list[Save]) -> list:
    """The statement's arguments, in the order of its parts: one array per column."""
    args: list = []
    if shape.new_contract:  # every one, a contract twice included: its second claim is not made, and seen
        args += _columns([s.contract for s in saves], CONTRACT_FIELDS)
    if shape.contract_changed:
        args += _columns(_last({s.contract["contract_id"]: s.contract for s in saves}), CONTRACT_FIELDS)
    if shape.milestones_changed:
        args += _columns(_last({m["milestone_id"]: m for s in saves for m in s.changed}), _OWNED)
        args += _columns([{**m, "event": s.event, "at": s.at} for s in saves for m in s.changed if m["moved"]],
                         _HISTORY_FIELDS)
    if shape.milestones_new:
        args += _columns([m for s in saves for m in s.new], _OWNED)
        args += _columns([{**m, "event": s.event, "at": s.at} for s in saves for m in s.new], _HISTORY_FIELDS)
    if shape.saga:
        saga_id = Saga.FIELDS.index("saga_id")
        args += list(map(list, zip(*_last({s.saga[saga_id]: s.saga for s in saves}))))
    if shape.entries:
        args += [sum((s.entries[i] for s in saves), []) for i in range(len(ENTRY_FIELDS))]
    return args


def _last(by_key: dict) -> list:
    """The rows as saved last (a dict keeps the last value of a key), in key order: the order rows are locked in."""
    return [by_key[k] for k in sorted(by_key)]


def _columns(rows: list[dict], columns: list[str]) -> list[list]:
    return [[r[c] for r in rows] for c in columns]


_HISTORY = ("{name} AS (INSERT INTO milestone_history (milestone_id, status, event, at) "
            "SELECT h.milestone_id, h.status, h.event, h.at "
            "FROM unnest($?::varchar[], $?::varchar[], $?::varchar[], $?::timestamptz[]) "
            "WITH ORDINALITY AS h (milestone_id, status, event, at, n) "
            "WHERE h.milestone_id IN (SELECT milestone_id FROM {written}) ORDER BY n)")


@cache
def _statement(shape: Shape) -> str:
    parts = []
    if shape.new_contract:
        parts.append(f"new_contract AS (INSERT INTO contracts ({names(CONTRACT_FIELDS)}) "
                     f"SELECT * FROM {unnest(contracts, CONTRACT_FIELDS, 'n')} "
                     f"ON CONFLICT DO NOTHING RETURNING contract_id)")
    if shape.contract_changed:
        parts.append(f"contract_changed AS (UPDATE contracts c SET "
                     f"{', '.join(f'{k} = u.{k}' for k in CONTRACT_FIELDS if k != 'contract_id')} "
                     f"FROM {unnest(contracts, CONTRACT_FIELDS, 'u')} WHERE c.contract_id = u.contract_id "
                     f"RETURNING 1)")
    if shape.milestones_changed:
        # Only ever a contract's own milestones (the contract's id in the WHERE), as a save alone writes them.
        parts.append(f"milestones_changed AS (UPDATE milestones m SET "
                     f"{', '.join(f'{k} = c.{k}' for k in MILESTONE_FIELDS if k != 'milestone_id')} "
                     f"FROM {unnest(milestones, _OWNED, 'c')} "
                     f"WHERE m.milestone_id = c.milestone_id AND m.contract_id = c.contract_id "
                     f"RETURNING m.milestone_id)")
        parts.append(_HISTORY.format(name="moved_history", written="milestones_changed"))
    if shape.milestones_new:
        guard = "WHERE n.contract_id IN (SELECT contract_id FROM new_contract) " if shape.new_contract else ""
        parts.append(f"claimed AS (INSERT INTO milestones ({names(_OWNED)}) "
                     f"SELECT * FROM {unnest(milestones, _OWNED, 'n')} {guard}"
                     f"ON CONFLICT DO NOTHING RETURNING milestone_id)")
        parts.append(_HISTORY.format(name="new_history", written="claimed"))
    if shape.saga:
        parts.append(f"saga_saved AS (INSERT INTO sagas ({names(list(Saga.FIELDS))}) "
                     f"SELECT * FROM {unnest(sagas, list(Saga.FIELDS), 's')} ON CONFLICT (saga_id) DO UPDATE SET "
                     f"{', '.join(f'{k} = EXCLUDED.{k}' for k in Saga.FIELDS if k != 'saga_id')} RETURNING 1)")
    if shape.entries:
        parts.append(f"entries AS (INSERT INTO statement_entries ({names(ENTRY_FIELDS)}) "
                     f"SELECT * FROM {unnest(statement_entries, ENTRY_FIELDS, 'e')} ON CONFLICT DO NOTHING "
                     f"RETURNING 1)")
    answers = []
    if shape.new_contract:
        answers.append("(SELECT count(*) FROM new_contract) AS contracts")
    if shape.milestones_new:
        answers.append("(SELECT count(*) FROM claimed) AS milestones")
    return compose(tuple(parts), "SELECT " + (", ".join(answers) or "1"))
