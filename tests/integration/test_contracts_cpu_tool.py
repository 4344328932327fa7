"""`python -m bench.contracts_cpu` on the real server: contracts' own CPU per fund saga, and, where the server's
backends are processes of this machine, theirs for the same sagas (the server's side of a change to a statement,
measured without the whole platform's noise; issue 10, thirty-fourth step)."""

import os
import uuid

import asyncpg
import pytest

from bench import contracts_cpu
from platform_runtime.relay import asyncpg_dsn
from tests.support.probe_service import drop_database, scratch_database
from tests.support.processes import DB_PREFIX

pytestmark = pytest.mark.integration


async def test_the_sagas_and_the_servers_share_of_them_are_counted(infra, capsys):
    name = f"{DB_PREFIX}it_contracts_cpu_{uuid.uuid4().hex[:8]}"
    url = await scratch_database(infra.postgres_url, name)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            server_here = os.path.exists(f"/proc/{await conn.fetchval('SELECT pg_backend_pid()')}")
        finally:
            await conn.close()
        await contracts_cpu._measure(url, sagas=6, batch=3)  # asserts that every saga ended in OfferSent
    finally:
        await drop_database(infra.postgres_url, name)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("contracts, 6 fund sagas, 3 message(s) a transaction: ")
    backends = [line for line in lines if line.startswith("  its database's backends: ")]
    if not server_here:
        assert not backends  # a server elsewhere: nothing to read, nothing made up
        return
    assert len(backends) == 1
    per_saga = float(backends[0].split(": ", 1)[1].split(" ms", 1)[0])
    assert per_saga > 0
    assert all(step in backends[0] for step in ("SendOffer", "ClientCharged", "EscrowFunded"))
