"""The one-service CPU tools on the real server: `python -m bench.contracts_cpu` (contracts' own CPU per fund saga),
`python -m bench.escrow_cpu` (escrow's per hold), `bench.notifications_cpu` (notifications' per offer) and
`bench.billing_cpu` (billing's per charge step), each with, where the server's backends are processes of this
machine, theirs for the same work (the server's side of a change to a statement, measured without the whole
platform's noise; issue 10, thirty-fourth step)."""

import os
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from bench import billing_cpu, contracts_cpu, escrow_cpu, notifications_cpu
from bench.one_service import backends_cpu_seconds, empty_transaction, round_trip
from contracts.bootstrap import definition as contracts_definition
from contracts.settings import ContractsSettings
from platform_runtime.clock import FrozenClock
from platform_runtime.relay import asyncpg_dsn
from platform_runtime.service import build_runtime
from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration


async def server_here(url: str) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return os.path.exists(f"/proc/{await conn.fetchval('SELECT pg_backend_pid()')}")
    finally:
        await conn.close()


async def test_the_sagas_and_the_servers_share_of_them_are_counted(infra, capsys):
    name = f"{DB_PREFIX}it_contracts_cpu_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        here = await server_here(url)
        await contracts_cpu._measure(url, sagas=6, batch=3)  # asserts that every saga ended in OfferSent
    finally:
        await drop_database(infra.postgres_url, name)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("contracts, 6 fund sagas, 3 message(s) a transaction: ")
    backends = [line for line in lines if line.startswith("  its database's backends: ")]
    if not here:
        assert not backends  # a server elsewhere: nothing to read, nothing made up
        return
    assert len(backends) == 1
    per_saga = float(backends[0].split(": ", 1)[1].split(" ms", 1)[0])
    assert per_saga >= 0  # the kernel counts CPU in ticks of 10 ms: a few sagas may read as none
    assert all(step in backends[0] for step in ("SendOffer", "ClientCharged", "EscrowFunded"))
    [empty] = [line for line in lines if line.startswith("  an empty transaction: ")]
    assert " us of this process through a unit of work, " in empty and "(1.00 transactions a saga)" in empty
    counted = [line for line in lines if line.endswith(" statements per saga (BEGIN/COMMIT included)")]
    if counted:  # pg_stat_statements is loaded: the statements' count, and a bare round trip beside it
        [floor] = [line for line in lines if line.startswith("  a bare round trip here (a prepared SELECT 1): ")]
        assert " us of this process, " in floor and " us of its backend; times " in floor


async def test_an_empty_transaction_is_measured_through_a_unit_of_work_and_on_asyncpg(infra):
    name = f"{DB_PREFIX}it_empty_transaction_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    runtime = build_runtime(contracts_definition, ContractsSettings(database_url=url, http_port=0),
                            FrozenClock(datetime.now(timezone.utc)))
    try:
        measured = await empty_transaction(runtime.new_uow, asyncpg_dsn(url), transactions=100)
    finally:
        await runtime.engine.dispose()
        await drop_database(infra.postgres_url, name)
    assert measured.unit_of_work_us > 0 and measured.asyncpg_us > 0


async def test_a_bare_round_trip_is_measured_on_both_sides(infra):
    name = f"{DB_PREFIX}it_round_trip_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        here = await server_here(url)
        measured = await round_trip(asyncpg_dsn(url), trips=200)
    finally:
        await drop_database(infra.postgres_url, name)
    assert measured.client_us > 0  # a round trip costs this process something, however fast the machine
    assert (measured.server_us is not None) == here  # the backend's side only where it is a process of this machine
    if here:
        assert measured.server_us >= 0  # counted in ticks of 10 ms: 200 trips may read as none


@pytest.mark.parametrize("batch", [1, 4])
async def test_each_hold_and_the_servers_share_of_it_are_counted(infra, capsys, batch):
    name = f"{DB_PREFIX}it_escrow_cpu_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        here = await server_here(url)
        measured = await escrow_cpu.measure(url, holds=8, batch=batch)
    finally:
        await drop_database(infra.postgres_url, name)
    assert measured["funded"] == 8 and measured["dead_lettered"] == 0  # every hold answered, each once
    assert measured["escrow"] > 0
    assert (measured["database"] >= 0) if here else measured["database"] is None  # in ticks of 10 ms
    escrow_cpu.report(measured, holds=8, batch=batch)
    line, machinery = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"escrow, 8 holds, {batch} a batch: ") and ("its database's backends" in line) == here
    assert machinery.startswith("  an empty transaction: ") and f"({1 / batch:.2f} transactions a hold)" in machinery


@pytest.mark.parametrize("tool, done, line", [
    (notifications_cpu, "told", "notifications, 8 offers, {batch} a batch: "),
    (billing_cpu, "recorded", "billing, 8 charge steps, {batch} a batch: ")])
@pytest.mark.parametrize("batch", [1, 4])
async def test_each_offer_told_and_each_charge_step_recorded_are_counted(infra, capsys, tool, done, line, batch):
    name = f"{DB_PREFIX}it_{tool.__name__.split('.')[-1]}_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        here = await server_here(url)
        measured = await tool.measure(url, 8, batch)
    finally:
        await drop_database(infra.postgres_url, name)
    assert measured[done] == 8 and measured["dead_lettered"] == 0 and measured["redone"] == 0
    assert (measured["database"] >= 0) if here else measured["database"] is None  # in ticks of 10 ms
    tool.report(measured, 8, batch)
    printed, machinery = capsys.readouterr().out.strip().splitlines()
    assert printed.startswith(line.format(batch=batch)) and ("its database's backends" in printed) == here
    assert machinery.startswith("  an empty transaction: ") and f"({1 / batch:.2f} transactions " in machinery


async def test_a_backends_cpu_is_what_it_spent(infra):
    """The reader both tools share: a backend of the database that works for a while reads as that much more."""
    name = f"{DB_PREFIX}it_backends_cpu_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        if not await server_here(url):
            pytest.skip("the server runs elsewhere: its backends are not processes here")
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            before = await backends_cpu_seconds(asyncpg_dsn(url))
            await conn.fetchval("SELECT count(*) FROM generate_series(1, 5000000)")  # about a second of a core
            after = await backends_cpu_seconds(asyncpg_dsn(url))
        finally:
            await conn.close()
    finally:
        await drop_database(infra.postgres_url, name)
    assert after - before >= 0.1
