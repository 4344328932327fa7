"""`driver_sql.Fixed`: a SQLAlchemy statement compiled once for the asyncpg connection sends what SQLAlchemy would.

Escrow's ledger and billing's charge row run their statements this way on the hot path; their behaviour on real
PostgreSQL is tested where they are used (tests/integration/test_ledger_*.py, the end-to-end sagas). Here: the
parameters' order, the statement's own values, and the types' conversions.
"""

import json

import pytest
from platform_runtime.driver_sql import Fixed
from sqlalchemy import BigInteger, Column, MetaData, String, Table, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert

pytestmark = pytest.mark.unit

_T = Table("t", MetaData(), Column("id", String), Column("doc", JSONB), Column("n", BigInteger))


def test_a_named_parameter_used_twice_is_sent_once_in_the_order_of_the_text():
    fixed = Fixed.of(text("SELECT :b, :a, :b").bindparams(bindparam("a", type_=String), bindparam("b", type_=BigInteger)))
    assert fixed.sql == "SELECT $1::BIGINT, $2::VARCHAR, $1::BIGINT"
    assert fixed.args({"a": "x", "b": 7}) == [7, "x"]


def test_values_the_statement_holds_itself_are_sent_with_it_and_json_as_text():
    # As billing's charge row: an insert in a CTE with a JSON column, and a NOTIFY whose arguments are literals.
    new = insert(_T).values(id=bindparam("id"), doc=bindparam("doc", type_=JSONB), n=bindparam("n")).returning(_T.c.id).cte("new")
    fixed = Fixed.of(select(new.c.id, func.pg_notify("channel", "payload")))
    args = dict(zip(fixed.names, fixed.args({"id": "c-1", "doc": [{"milestone_id": "m-1", "amount": 5}], "n": 3})))
    assert [args[n] for n in ("id", "n")] == ["c-1", 3]
    assert sorted(v for k, v in args.items() if k.startswith("pg_notify")) == ["channel", "payload"]
    assert json.loads(args["doc"]) == [{"milestone_id": "m-1", "amount": 5}]


def test_arrays_go_as_lists():
    fixed = Fixed.of(text("SELECT * FROM unnest(:ids)").bindparams(bindparam("ids", type_=ARRAY(String))))
    assert fixed.sql == "SELECT * FROM unnest($1::VARCHAR[])"
    assert list(fixed.args({"ids": ["a", "b"]})[0]) == ["a", "b"]
