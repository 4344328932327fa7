"""driver_sql.planned_once: every array parameter read through a scalar subquery, nothing else touched."""

import re

import pytest
from billing.adapters.gateway_work_repository import _SETTLE_CHARGES
from contracts.adapters import repositories as contracts_sql
from contracts.adapters.statement_repository import _RECORD
from platform_runtime import driver_sql, relay
from platform_runtime.driver_sql import planned_once

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("written, planned", [
    ("SELECT * FROM unnest($1::varchar[])", "SELECT * FROM unnest((SELECT $1::varchar[])::varchar[])"),
    ("WHERE seq = ANY($12::bigint[])", "WHERE seq = ANY((SELECT $12::bigint[])::bigint[])"),
    ("unnest($3::VARCHAR[], $4::TIMESTAMP WITH TIME ZONE[])",
     "unnest((SELECT $3::VARCHAR[])::VARCHAR[], (SELECT $4::TIMESTAMP WITH TIME ZONE[])::TIMESTAMP WITH TIME ZONE[])"),
    ("unnest($1::VARCHAR(64)[], $2::NUMERIC(12, 2)[], $3::INTEGER[])",  # types as SQLAlchemy writes them
     "unnest((SELECT $1::VARCHAR(64)[])::VARCHAR(64)[], (SELECT $2::NUMERIC(12, 2)[])::NUMERIC(12, 2)[], "
     "(SELECT $3::INTEGER[])::INTEGER[])"),
    ("VALUES ($1, $2::varchar, $3::timestamptz)", "VALUES ($1, $2::varchar, $3::timestamptz)"),  # no array: as is
    ("SELECT pg_notify($18, '')", "SELECT pg_notify($18, '')"),
    ("key <> ALL($2::text[]) OR seq = ANY($3::bigint[])",
     "key <> ALL((SELECT $2::text[])::text[]) OR seq = ANY((SELECT $3::bigint[])::bigint[])"),
])
def test_each_array_parameter_is_read_through_a_scalar_subquery(written, planned):
    assert planned_once(written) == planned


def _statements() -> dict[str, str]:
    at_commit = {f"write_at_commit{flags}": driver_sql.write_at_commit(*flags)
                 for flags in driver_sql._WRITE_AT_COMMIT}
    return {"claim_all": driver_sql.CLAIM_ALL, "recorded": driver_sql.RECORDED, "relay pass": relay._DELETE_AND_FETCH,
            "relay delete": relay._DELETE, "billing settles charges": _SETTLE_CHARGES.sql,
            "contracts locks sagas": contracts_sql._LOCK_SAGAS_AND_CONTRACTS,
            "contracts reads milestones": contracts_sql._MILESTONES_OF_MANY,
            "contracts saves a new contract": contracts_sql.compose(
                (contracts_sql._NEW_CONTRACT, contracts_sql._CLAIM_IN_NEW, contracts_sql._NEW_HISTORY,
                 contracts_sql._SAGA_SAVED, contracts_sql._ENTRIES), contracts_sql._SAVED_NEW),
            "contracts saves a changed contract": contracts_sql.compose(
                (contracts_sql._CONTRACT_CHANGED, contracts_sql._MILESTONES_CHANGED, contracts_sql._MOVED_HISTORY),
                contracts_sql._SAVED_NOTHING_NEW),
            "contracts records a statement": _RECORD, **at_commit}


@pytest.mark.parametrize("name", list(_statements()))
def test_the_hot_statements_leave_no_array_parameter_in_sight_of_the_planner(name):
    """Every array parameter is inside its scalar subquery: with those taken out, none is left."""
    outside = re.sub(r"\(SELECT \$\d+::[\w (),]+?\[\]\)", "", _statements()[name])
    assert driver_sql._ARRAY_PARAMETER.findall(outside) == [], name
