"""PostgreSQL keeps one generic plan for the hot statements with array parameters (driver_sql.planned_once).

A lone message's statements carry one-element arrays. Written plainly (`unnest($1::varchar[])`), PostgreSQL
estimates a plan for those values cheaper than the generic plan and plans the statement again at every execution.
Read through `planned_once`, it keeps the generic plan after its fifth execution, and that plan still probes the
indexes, whatever the arrays' lengths and the statistics.
"""

import json
import uuid
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import asyncpg
import pytest
import pytest_asyncio
from billing.adapters.gateway_work_repository import _SETTLE_CHARGES, _SETTLED
from billing.adapters.history_rows import HISTORY_COLUMNS
from billing.bootstrap import definition as billing
from contracts.adapters import repositories as contracts_sql
from contracts.adapters import saves_together
from contracts.adapters import sql as contracts_adapters_sql
from contracts.bootstrap import definition as contracts
from contracts.domain.contracts import Contract, Milestone
from platform_runtime import driver_sql
from platform_runtime.relay import _DELETE, _DELETE_AND_FETCH, asyncpg_dsn

from tests.support.probe_service import migrated_engine, runtime_tables_engine

pytestmark = pytest.mark.integration

EXECUTIONS = 8  # PostgreSQL makes five custom plans before it weighs the generic one
ROWS = 20000  # analysed: with few rows every plan costs about the same, and PostgreSQL may keep any


@pytest_asyncio.fixture(loop_scope="session")
async def runtime_db(infra):
    """The runtime's tables with many rows, analysed when nearly every timer was cancelled (a burst then leaves
    thousands pending, as in test_outbox_inbox's cancellation test)."""
    async with runtime_tables_engine(infra.postgres_url, "plans") as (url, _engine, _metadata):
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            due = _now() + timedelta(minutes=5)
            await conn.execute("INSERT INTO processed_messages (message_id, type, subject, actor, fingerprint, status,"
                               " processed_at) SELECT 'm-' || n, 'T', 's', 'a', 'f', 'accepted', now()"
                               " FROM generate_series(1, $1) AS n", ROWS)
            await conn.execute("INSERT INTO timers (timer_id, kind, subject, due_at, payload, cancelled_at)"
                               " SELECT 'old-' || n, 'deadline', 'old-' || n, $1, '{}', $1"
                               " FROM generate_series(1, $2) AS n", due, ROWS)
            await conn.execute("ANALYZE processed_messages")
            await conn.execute("ANALYZE timers")
            yield conn
        finally:
            await conn.close()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _id() -> str:
    return uuid.uuid4().hex


def _at_commit_args(cancel: bool, schedule: bool, statuses: bool, outbox: bool) -> list:
    """One message's arguments for write_at_commit(...), in its order."""
    args: list = []
    if cancel:
        args += [_now(), [_id()], ["deadline"]]
    if schedule:
        args += [[_id()], ["deadline"], [_id()], [_now() + timedelta(hours=1)], ["{}"], [_id()]]
    if statuses:
        args += [[_id()], ["accepted"], ["{}"]]
    if outbox:
        args += [[_id()], ["it.topic"], [_id()], ["ItHappened"], [b"{}"], "it_channel"]
    return args


def _runtime_statements() -> list:
    """The runtime's hot statements with array parameters, each with one message's arguments, named by its id."""
    statements = [
        pytest.param(driver_sql.CLAIM_ALL,
                     lambda: [[_id()], ["T"], ["s"], ["a"], ["f"], "accepted", _now(), [f"{_id()}:hold"]],
                     id="claim_all"),
        pytest.param(driver_sql.RECORDED, lambda: [[_id()]], id="recorded"),
        pytest.param(_DELETE_AND_FETCH, lambda: [100, [], [], [1]], id="relay pass"),
        pytest.param(_DELETE, lambda: [[1]], id="relay delete"),
    ]
    for flags in [(True, True, True, True), (True, False, False, True), (False, True, False, True),
                  (True, False, False, False), (False, False, True, True), (False, False, False, True)]:
        statements.append(pytest.param(driver_sql.write_at_commit(*flags),
                                       lambda flags=flags: _at_commit_args(*flags), id=f"write_at_commit{flags}"))
    return statements


async def _plans(conn: asyncpg.Connection, sql: str, arguments) -> asyncpg.Record:
    """Run `sql` EXECUTIONS times as a prepared statement, each with fresh one-element arrays, in a transaction
    rolled back; its plans as PostgreSQL counted them."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        statement = await conn.prepare(sql)
        for _ in range(EXECUTIONS):
            await statement.fetch(*arguments())
        return await conn.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                   " WHERE statement = $1", sql)
    finally:
        await transaction.rollback()


@pytest.mark.parametrize("sql, arguments", _runtime_statements())
async def test_a_hot_statement_is_planned_once_not_at_every_execution(runtime_db, sql, arguments):
    plans = await _plans(runtime_db, sql, arguments)
    assert plans["generic_plans"] >= EXECUTIONS - 5, dict(plans)


async def test_written_plainly_the_same_statement_is_planned_at_every_execution(runtime_db):
    """What planned_once is for: the plain statement gets a custom plan each time (so the test above can fail)."""
    plain = "SELECT message_id, outcome FROM processed_messages WHERE message_id = ANY($1::varchar[])"
    assert driver_sql.planned_once(plain) == driver_sql.RECORDED
    plans = await _plans(runtime_db, plain, lambda: [[_id()]])
    assert (plans["generic_plans"], plans["custom_plans"]) == (0, EXECUTIONS)


def _nodes(node: dict):
    """A plan node (EXPLAIN's JSON) and every node under it."""
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _reads(plan: dict, table: str) -> set[str]:
    """How the plan reads `table`: the indexes it probes (a bitmap scan's among them), and "Seq Scan" if it reads
    the whole table."""
    reads = set()
    for node in _nodes(plan["Plan"]):
        if node.get("Relation Name") != table or node["Node Type"] == "ModifyTable":
            continue
        if node["Node Type"] == "Seq Scan":
            reads.add("Seq Scan")
        reads |= {n["Index Name"] for n in _nodes(node) if "Index Name" in n}
    return reads


async def _generic_plan(conn: asyncpg.Connection, sql: str, *args) -> dict:
    """The generic plan of `sql` (the one PostgreSQL keeps), as EXPLAIN gives it."""
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        [plan] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    return plan


async def test_the_generic_plan_of_a_claim_probes_the_inbox_by_id(runtime_db):
    """With many messages processed and analysed, a batch's claim and the answers kept are index probes, not a
    read of the whole inbox: the plan does not depend on how many messages the batch has."""
    ids = [f"new-{n}" for n in range(500)]
    plan = await _generic_plan(runtime_db, driver_sql.CLAIM_ALL, ids, ["T"] * 500, ["s"] * 500, ["a"] * 500,
                               ["f"] * 500, "accepted", _now(), [f"m-{n}" for n in range(500)])
    assert _reads(plan, "processed_messages") == {"processed_messages_pkey"}


async def test_the_generic_plan_of_a_commit_probes_timers_by_subject_and_commands_by_id(runtime_db):
    """The statistics were taken when every timer was cancelled; the generic plan still looks each (subject, kind)
    up in timers_pending_by_subject, and each command's status up by its id."""
    await runtime_db.execute("INSERT INTO timers (timer_id, kind, subject, due_at, payload)"
                             " SELECT 'new-' || n, 'deadline', 'saga-' || n, $1, '{}' FROM generate_series(1, 3000) AS n",
                             _now() + timedelta(minutes=5))
    plan = await _generic_plan(runtime_db, driver_sql.write_at_commit(True, False, True, False),
                               *_at_commit_args(True, False, True, False))
    timers = _reads(plan, "timers")
    assert "timers_pending_by_subject" in timers and timers <= {"timers_pending_by_subject", "timers_pkey"}, timers
    assert _reads(plan, "processed_messages") == {"processed_messages_pkey"}


async def test_billing_settles_its_charges_with_one_plan_that_probes_them_by_id(infra):
    async with migrated_engine(infra.postgres_url, "plans_billing", billing.migrations_dir) as engine:
        conn = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
        try:
            await conn.execute("INSERT INTO charges (charge_id, saga_id, contract_id, client_id, amount, currency,"
                               " purpose, status, created_at) SELECT 'c-' || n, 's-' || n, 'k-' || n, 'client-' || n,"
                               " 100, 'USD', 'fixed_price', 'succeeded', now() FROM generate_series(1, $1) AS n", ROWS)
            await conn.execute("ANALYZE charges")

            def one_charge() -> list:
                return _SETTLE_CHARGES.args({
                    "cleared_clients": [_id()], "occurred_at": _now(),
                    **{f"s_{c}": [None] for c in _SETTLED}, "s_charge_id": [_id()], "s_attempts": [1],
                    **{f"h_{c}": [] for c in HISTORY_COLUMNS}})

            plans = await _plans(conn, _SETTLE_CHARGES.sql, one_charge)
            assert plans["generic_plans"] >= EXECUTIONS - 5, dict(plans)
            plan = await _generic_plan(conn, _SETTLE_CHARGES.sql, *one_charge())
            assert _reads(plan, "charges") == {"charges_pkey"}
        finally:
            await conn.close()



async def test_the_generic_plan_of_a_relay_pass_leaves_the_rows_just_published_out_with_a_hash(runtime_db):
    """The pass's read leaves out the rows its own DELETE removes with a hashed subplan, not by comparing each row
    with the whole array (relay.py: 14 ms against 43-57 ms for a full pass of 2,000)."""
    plan = await _generic_plan(runtime_db, _DELETE_AND_FETCH, 2000, [], [], list(range(2000)))
    filters = [n.get("Filter", "") for n in _nodes(plan["Plan"]) if n.get("Relation Name") == "outbox"]
    assert any("NOT (hashed SubPlan" in f for f in filters), filters


@pytest_asyncio.fixture(loop_scope="session")
async def contracts_db(infra):
    """Contracts' own tables with many analysed rows: accounts, contracts with two milestones each, their sagas."""
    async with migrated_engine(infra.postgres_url, "plans_contracts", contracts.migrations_dir) as engine:
        conn = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
        try:
            await conn.execute("INSERT INTO accounts (account_id, role, name, email, status) SELECT 'a-' || n,"
                               " 'client', 'A', 'a@example.com', 'active' FROM generate_series(1, $1) AS n", ROWS)
            await conn.execute("INSERT INTO contracts (contract_id, client_id, freelancer_id, title, currency, deposit,"
                               " status, created_at) SELECT 'k-' || n, 'a-' || n, 'a-' || (n % $1 + 1), 'T', 'USD',"
                               " 'upfront', 'active', now() FROM generate_series(1, $1) AS n", ROWS)
            await conn.execute("INSERT INTO milestones (milestone_id, contract_id, position, title, amount, status)"
                               " SELECT 'm-' || n || '-' || p, 'k-' || n, p, 'M', 100, 'funded'"
                               " FROM generate_series(1, $1) AS n, generate_series(1, 2) AS p", ROWS)
            await conn.execute("INSERT INTO sagas (saga_id, kind, contract_id, status, step, data, step_log,"
                               " created_at, updated_at) SELECT 's-' || n, 'fund', 'k-' || n, 'running', 'charge',"
                               " '{}', '[]', now(), now() FROM generate_series(1, $1) AS n", ROWS)
            for table in ("accounts", "contracts", "milestones", "sagas"):
                await conn.execute(f"ANALYZE {table}")
            yield conn
        finally:
            await conn.close()


async def _new_contract_saves(count: int) -> tuple[str, list[list]]:
    """What ContractRepository.save sends for `count` new contracts of two milestones each (as the benchmark's
    offers): its one statement and each save's arguments, caught where the repository hands the save to
    `sql.write_together`."""
    sent = []

    async def caught(_connection, _kind, save):
        statement, args, _expect = save.alone  # the save's own statement, as run at once or in a short run
        sent.append((statement, list(args)))  # None: as if left for later, the repository reads no answer

    with patch.object(contracts_adapters_sql, "write_together", caught):
        for _ in range(count):
            contract = Contract.offer(_id(), "a-1", "a-2", "T", "USD", "first_milestone",
                                      [Milestone(_id(), "M", 100, 1), Milestone(_id(), "N", 200, 2)], _now())
            await contracts_sql.ContractRepository(None).save(contract, "MilestoneAdded", _now())
    [statement] = {statement for statement, _ in sent}
    return statement, [args for _, args in sent]


async def test_contracts_statements_with_arrays_are_planned_once_and_probe_by_key(contracts_db):
    """The batch lock of sagas with their contracts and the milestones read after it take arrays; written plainly,
    a lone reply's one-element arrays made PostgreSQL plan them at every execution (here: 8 custom plans of 8). Each
    is now kept as one generic plan, which finds its rows by key. A new contract's save, taken from the repository
    itself, is kept generic too; on this database it was also before its arrays were hidden (its plans in the
    benchmark came from elsewhere, likely the plans discarded at each ANALYZE)."""
    lock, milestones = contracts_sql._LOCK_SAGAS_AND_CONTRACTS, contracts_sql._MILESTONES_OF_MANY
    save, saves = await _new_contract_saves(EXECUTIONS)
    kept = {name: dict(await _plans(contracts_db, sql, arguments)) for name, sql, arguments in [
        ("lock", lock, lambda: [[f"s-{uuid.uuid4().int % ROWS + 1}"]]),
        ("milestones", milestones, lambda: [[f"k-{uuid.uuid4().int % ROWS + 1}"]]),
        ("new contract", save, iter(saves).__next__)]}
    assert all(plans["generic_plans"] >= EXECUTIONS - 5 for plans in kept.values()), kept
    plan = await _generic_plan(contracts_db, lock, [f"s-{n}" for n in range(1, 201)])
    assert _reads(plan, "sagas") == {"sagas_pkey"} and _reads(plan, "contracts") == {"contracts_pkey"}
    assert _reads(plan, "accounts") == {"accounts_pkey"}
    plan = await _generic_plan(contracts_db, milestones, [f"k-{n}" for n in range(1, 201)])
    assert "Seq Scan" not in _reads(plan, "milestones"), _reads(plan, "milestones")


def _fund_saga_runs() -> dict[str, tuple]:
    """The set-based statements of the fund saga's runs of saves (saves_together), each with the arguments of a
    run of one save on the rows of contracts_db: an offer's (a new contract, its milestones, its saga), a funded
    contract's (the contract and a milestone changed, its saga, its entries), a saga's alone."""
    saga = ["s-{n}", "fund", "k-{n}", None, "running", "hold", "{{}}", "[]", _now(), _now()]

    def contract(n: str) -> dict:
        return {**{k: None for k in saves_together.CONTRACT_FIELDS}, "contract_id": f"k-{n}", "client_id": "a-1",
                "freelancer_id": "a-2", "title": "T", "currency": "USD", "deposit": "upfront", "status": "active",
                "created_at": _now()}

    def milestone(n: str, p: int, **more) -> dict:
        return {**{k: None for k in saves_together.MILESTONE_FIELDS}, "milestone_id": f"m-{n}-{p}", "position": p,
                "title": "M", "amount": 100, "status": "funded", "released_amount": 0, "refunded_amount": 0,
                "removed": False, "contract_id": f"k-{n}", **more}

    def one(shape, new: bool):
        def arguments() -> list:
            n = f"new-{_id()}" if new else str(uuid.uuid4().int % ROWS + 1)
            save = saves_together.Save(
                shape, contract(n) if shape.new_contract or shape.contract_changed else None,
                [milestone(n, 1, moved=True)] if shape.milestones_changed else [],
                [milestone(n, p) for p in (1, 2)] if shape.milestones_new else [],
                [v.format(n=n) if isinstance(v, str) else v for v in saga],
                [[f"e-{_id()}"], [f"k-{n}"], ["milestone"], [f"m-{n}-1"], ["funded"], [100], [_now()], [None]]
                if shape.entries else [], "EscrowFunded", _now(), alone=())
            return saves_together.arguments(shape, [save])
        return saves_together.kind_of(shape).sql, arguments

    Shape = saves_together.Shape
    return {"offer": one(Shape(True, False, False, True, True, False), new=True),
            "funded": one(Shape(False, True, True, False, True, True), new=False),
            "saga alone": one(saves_together.SAGA_ALONE, new=False)}


async def test_the_fund_sagas_runs_of_saves_keep_one_plan_that_finds_rows_by_key(contracts_db):
    """A run of saves is one statement over arrays (thirty-fifth step): PostgreSQL keeps one generic plan for each
    of the fund saga's shapes, and that plan finds the contracts, milestones and sagas it changes by key, whatever
    the run's length."""
    for name, (sql, arguments) in _fund_saga_runs().items():
        plans = dict(await _plans(contracts_db, sql, arguments))
        assert plans["generic_plans"] >= EXECUTIONS - 5, (name, plans)
        plan = await _generic_plan(contracts_db, sql, *arguments())
        for table in ("contracts", "milestones", "sagas"):
            assert "Seq Scan" not in _reads(plan, table), (name, table, _reads(plan, table))
