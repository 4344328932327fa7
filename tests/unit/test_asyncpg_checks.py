"""asyncpg's container checks as tuples answer exactly as the ABCs they replace, for any object (asyncpg_checks)."""

import array
import collections
import decimal
import uuid
from collections import abc
from datetime import datetime, timezone

import asyncpg.protocol.protocol as protocol
import pytest
from hypothesis import given
from hypothesis import strategies as st
from platform_runtime.asyncpg_checks import CHECKS, use_builtin_container_checks

pytestmark = pytest.mark.unit


class Text(str):
    __iter__ = None  # a str that says it cannot be iterated: the ABC still counts it (str is registered)


class Rows(abc.Sequence):
    def __getitem__(self, i):
        return [1, 2][i]

    def __len__(self):
        return 2


class Lookup(abc.Mapping):
    def __getitem__(self, key):
        raise KeyError(key)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


class Sized:
    def __len__(self):
        return 1


OBJECTS = [
    "", "text", b"bytes", bytearray(b"x"), memoryview(b"x"), [], [1, "a"], (), (1,), {}, {"a": 1}, set(), {1},
    frozenset({1}), range(3), (i for i in range(2)), iter([1]), 0, 1.5, True, None, decimal.Decimal("1.10"),
    uuid.uuid4(), datetime.now(timezone.utc), Text("x"), Rows(), Lookup(), Sized(), collections.OrderedDict(),
    collections.deque([1]), collections.Counter("ab"), array.array("i", [1]), object(), type, str,
]


@pytest.mark.parametrize("name", CHECKS)
@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: type(o).__name__)
def test_every_object_gets_the_abcs_answer(name, obj):
    checks = CHECKS[name]
    assert isinstance(obj, checks) == isinstance(obj, checks[-1])


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
                    lambda inner: st.lists(inner) | st.tuples(inner) | st.dictionaries(st.text(), inner)
                    | st.frozensets(st.integers())))
def test_any_value_a_statement_may_be_given_gets_the_abcs_answer(obj):
    for checks in CHECKS.values():
        assert isinstance(obj, checks) == isinstance(obj, checks[-1])


def test_installed_and_removed_in_asyncpgs_module():
    use_builtin_container_checks(True)
    try:
        assert protocol.IterableABC == (list, tuple, str, bytes, abc.Iterable)
        assert protocol.SizedABC == (list, tuple, str, bytes, abc.Sized)
        assert protocol.MappingABC == (dict, abc.Mapping)
        use_builtin_container_checks(True)  # twice is once
    finally:
        use_builtin_container_checks(False)
    assert (protocol.IterableABC, protocol.SizedABC, protocol.MappingABC) == (abc.Iterable, abc.Sized, abc.Mapping)


def test_an_unknown_value_in_asyncpgs_module_is_refused_loudly(monkeypatch):
    monkeypatch.setattr(protocol, "SizedABC", abc.Collection)
    iterable_before = protocol.IterableABC  # the ABC, or the tuple if a runtime built earlier installed it
    with pytest.raises(RuntimeError, match="SizedABC"):
        use_builtin_container_checks(True)
    assert protocol.IterableABC is iterable_before  # nothing changed: every global is checked before any is set


def test_every_runtime_built_has_them():
    """Installed where a service's runtime is built, so what runs no lifespan (the one-service CPU tools) has them
    too."""
    from escrow.bootstrap import EscrowSettings, definition
    from platform_runtime.service import build_runtime

    use_builtin_container_checks(False)
    try:
        build_runtime(definition, EscrowSettings(database_url="postgresql+asyncpg://u@127.0.0.1:1/none", http_port=0))
        assert (protocol.IterableABC, protocol.SizedABC, protocol.MappingABC) == tuple(CHECKS.values())
    finally:
        use_builtin_container_checks(False)
