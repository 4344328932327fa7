"""asyncpg's container checks answered in C for the built-in containers, with the same answers.

asyncpg encodes an array parameter by asking, of the array and of every element, whether it is itself an array:
`isinstance(x, collections.abc.Iterable)`, then `Sized`, then `Mapping` (asyncpg/protocol/codecs/array.pyx, which
reads them as the module globals `IterableABC`, `SizedABC`, `MappingABC`). An ABC's isinstance is a Python call,
about 0.24 us on the benchmark machine, twice for every text element; the hot statements pass their rows as one
array per column (a batch's claims, its outbox rows, a ledger's postings): 655 checks a fund saga across the four
services, counted by cProfile in a burst (147 with the tuples below). Measured on a statement of five arrays
(issue 10, thirty-third step): 97-107 -> 72-97 us of the client's CPU at 10 elements an array, 314-391 -> 208-232
us at 100.

Each global becomes a tuple of the built-in containers followed by the ABC itself. isinstance over a tuple tries
each in turn, the built-ins by their type in C, and the ABC last, so the answer for every object is the ABC's own:
each built-in listed is registered with that ABC by the standard library (`Sequence.register(str)`, `tuple`,
`bytes`; `MutableSequence.register(list)`; `MutableMapping.register(dict)`), so an object one of them accepts the
ABC accepts too. Nothing asyncpg accepts or refuses changes (tests/unit/test_asyncpg_checks.py holds every answer
to the ABC's, tests/integration/test_asyncpg_checks_live.py asyncpg's encodings and refusals to those without it).
"""

from collections import abc

import asyncpg.protocol.protocol as _protocol

# Each global's tuple: the built-ins first, the ABC asyncpg had there last (`checks[-1]`).
CHECKS = {
    "IterableABC": (list, tuple, str, bytes, abc.Iterable),
    "SizedABC": (list, tuple, str, bytes, abc.Sized),
    "MappingABC": (dict, abc.Mapping),
}


def use_builtin_container_checks(on: bool = True) -> None:
    """Install the tuples in asyncpg's module (on) or its ABCs again (off). Fails loudly when asyncpg no longer has
    the globals (an upgrade that renamed them would otherwise keep the slow checks silently)."""
    for name, checks in CHECKS.items():  # all checked before any is changed
        current = getattr(_protocol, name)  # AttributeError: asyncpg changed; see the module's docstring
        if current is not checks[-1] and current != checks:
            raise RuntimeError(f"asyncpg's {name} is {current!r}, neither {checks[-1]!r} nor this module's tuple")
    for name, checks in CHECKS.items():
        setattr(_protocol, name, checks if on else checks[-1])
