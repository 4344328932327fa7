"""On the real server: with asyncpg's container checks answered in C (asyncpg_checks), every parameter is encoded,
or refused with the same error, as without them: arrays of every kind of container and element, nested arrays, a
composite given as a mapping, and the values asyncpg refuses as arrays (a str, a dict, a generator, a number)."""

import collections
import decimal
import uuid
from collections import abc

import asyncpg
import pytest
from platform_runtime.asyncpg_checks import use_builtin_container_checks
from platform_runtime.relay import asyncpg_dsn

pytestmark = pytest.mark.integration


class Rows(abc.Sequence):
    def __init__(self, *items):
        self.items = items

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)


class Fields(abc.Mapping):
    def __init__(self, **values):
        self.values = values

    def __getitem__(self, key):
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
PARAMETERS = [
    ("text[]", ["a", "b", None, ""]), ("text[]", ("a", "b")), ("text[]", Rows("a", "b")), ("text[]", {"a"}),
    ("text[]", frozenset({"z"})), ("text[]", collections.deque(["a"])), ("text[]", []),
    ("text[][]", [["a", "b"], ["c", "d"]]), ("text[][]", [("a",), ("b",)]), ("text[][]", [["a"], ["b", "c"]]),
    ("bigint[]", [1, 2, None]), ("bigint[]", range(3)), ("bigint[][]", [[1], [2]]), ("uuid[]", [ID, str(ID)]),
    ("numeric[]", [decimal.Decimal("1.10")]), ("bytea[]", [b"x", bytearray(b"y"), memoryview(b"z")]),
    ("jsonb[]", ['{"a": 1}']), ("text[]", "abc"), ("text[]", b"abc"), ("text[]", {"a": 1}), ("text[]", Fields(a=1)),
    ("text[]", (c for c in "ab")), ("bigint[]", 5), ("bigint[]", [[1], 2]), ("text[]", [{"a": 1}]),
    ("bigint[]", ["x"]), ("pair", ("a", 1)), ("pair", {"name": "a", "n": 1}), ("pair", Fields(name="a", n=1)),
    ("pair[]", [("a", 1), {"name": "b", "n": 2}]), ("pair", ["a", 1]), ("pair", {"nope": 1}),
]


async def outcome(conn, pg_type: str, value) -> tuple:
    try:
        return "value", await conn.fetchval(f"SELECT $1::{pg_type}::text", value)
    except Exception as error:  # noqa: BLE001 - the refusal itself is what is compared
        return "refused", type(error).__name__, str(error)


async def test_every_parameter_is_encoded_or_refused_as_without_the_checks(infra):
    conn = await asyncpg.connect(asyncpg_dsn(infra.postgres_url))
    try:
        await conn.execute("CREATE TYPE pg_temp.pair AS (name text, n int)")
        await conn.execute("SET search_path = pg_temp, public")
        use_builtin_container_checks(False)
        without = [await outcome(conn, t, v) for t, v in PARAMETERS]
        use_builtin_container_checks(True)
        try:
            assert [await outcome(conn, t, v) for t, v in PARAMETERS] == without
        finally:
            use_builtin_container_checks(False)
    finally:
        await conn.close()
    assert ("value", "{a,b,NULL,\"\"}") == without[0]
    assert sum(o[0] == "refused" for o in without) >= 8  # the refusals are compared too, not only the encodings
